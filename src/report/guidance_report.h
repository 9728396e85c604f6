// `seqgan experiment guidance`: sampling as the field does it, measured on one class-conditional
// model pair (AR and NAR, trained with class dropout and an EMA) per seed. Every sample set is a
// (transformer, weights, guidance scale, acceptance fraction); result.json of each run lists
// their FID, IS and acceptance rates, and DIR/report.html, results.md and results.json gather
// them over the seeds: tables, the FID/IS trade-off curves and the sample grids.
#pragma once

#include <string>
#include <vector>

#include "report/experiment_report.h"

namespace seqgan::report {

struct GuidanceSet {
  std::string kind;     // ar | nar
  std::string weights;  // ema | raw
  double guidance = 1;
  double accept_fraction = 1;
  // The run's folder of this set: "samples-ar-ema-g1.5", "samples-nar-ema-g1-accept0.25".
  std::string folder() const;
};

// The guidance scales, each for both transformers and both weights, then the acceptance
// fractions (EMA weights, guidance 1).
const std::vector<double>& guidance_scales();
const std::vector<double>& acceptance_fractions();
std::vector<GuidanceSet> guidance_sets();

// Writes the report from whatever runs have finished; returns the report's path.
std::string write_guidance_report(const ExperimentInfo& info);

}  // namespace seqgan::report
