// The report of a `seqgan experiment`: DIR/report.html (tables, curves, figures, commands) and
// the same tables in DIR/results.md and DIR/results.json, built from the runs' result.json files.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace seqgan::report {

// One variant of an experiment: a name (its directory), a label for tables, the config settings
// that make it, and its position on the experiment's axis (alpha for the sweep, else its order).
struct ExperimentArm {
  ExperimentArm() = default;
  ExperimentArm(std::string name, std::string label, std::vector<std::string> settings, double x,
                std::string phase2_of = "")
      : name(std::move(name)), label(std::move(label)), settings(std::move(settings)), x(x), phase2_of(std::move(phase2_of)) {}

  std::string name, label;
  std::vector<std::string> settings;
  double x = 0;
  // Non-empty: the arm is phase 2 on the phase-1 tokenizer of the arm named so (same seed). The
  // encoder and codebook stay as they were, so are the codes: the arm shares that arm's tokens
  // and transformers and differs only by its decoder.
  std::string phase2_of;
};

// What the paper reports about an experiment, at the top of its report: a title, and the
// paper's findings with their numbers.
struct ExperimentClaim {
  std::string title, paper;
};

// One of the paper's claims as a comparison of two arms on one metric of result.json: arm
// `better` has the lower value (or the higher, when !lower_is_better) than arm `worse`.
struct ClaimCheck {
  std::string claim;  // the paper's claim, with its figures
  std::string metric;
  std::string better, worse;
  bool lower_is_better = true;
};

struct ExperimentInfo {
  std::string name;  // alpha-sweep, decoder, codebook, perceptual-layers
  ExperimentClaim claim;
  std::string dir;   // the experiment's directory
  std::string preset;
  std::vector<ExperimentArm> arms;
  std::vector<std::string> budget;    // settings of every run
  std::vector<std::string> settings;  // the user's --set of every run
  std::string train_images, samples_per_class;
  int64_t eval_images = 0;
  // Claims checked on the seeds both arms finished: "holds" when every seed's difference goes
  // the claimed way, "does not hold" when every seed's goes the other way, else "within the seed
  // spread".
  std::vector<ClaimCheck> checks;
};

// The settings of every run on top of the preset, as one line: the budget, then the user's --set;
// a key set twice appears once, with its last value.
std::string run_settings(const ExperimentInfo& info);

// Writes the three files from whatever runs have finished; returns the report's path.
std::string write_experiment_report(const ExperimentInfo& info);

}  // namespace seqgan::report
