#include "report/experiment_report.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "report/html.h"
#include "train/run.h"

namespace seqgan::report {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

// The metrics of the tables: result.json key, column title, digits, scale (100: percent).
struct Metric {
  const char* key;
  const char* title;
  int digits;
  double scale;
};
const std::vector<Metric> kMetrics{{"codebook_usage", "usage %", 1, 100}, {"rfid", "rFID", 3, 1},
                                   {"psnr_db", "PSNR dB", 2, 1},          {"ar_fid", "AR FID", 3, 1},
                                   {"nar_fid", "NAR FID", 3, 1},          {"ar_is", "AR IS", 3, 1},
                                   {"nar_is", "NAR IS", 3, 1},            {"ar_top1", "AR top-1 %", 2, 100},
                                   {"ar_val_loss", "AR val loss", 4, 1},  {"nar_val_loss", "NAR val loss", 4, 1}};

struct ArmResults {
  std::vector<json> runs;  // result.json of each finished seed, seed order
  std::vector<double> values(const char* key, double scale) const {
    std::vector<double> v;
    for (const auto& r : runs)
      if (r.contains(key) && r[key].is_number()) v.push_back(r[key].get<double>() * scale);
    return v;
  }
};

// One run's value of a metric, or "-" when the run has none.
std::string run_cell(const json& run, const Metric& m) {
  return run.contains(m.key) && run[m.key].is_number() ? fixed(run[m.key].get<double>() * m.scale, m.digits) : "-";
}

std::string first_existing(const std::string& exp, const std::string& arm, const std::vector<json>& runs,
                           const std::string& rel) {
  for (const auto& r : runs) {
    const std::string p = exp + "/" + arm + "/seed-" + std::to_string(r.value("seed", 0)) + "/" + rel;
    if (fs::exists(p)) return p;
  }
  return exp + "/" + arm + "/(no finished run)/" + rel;
}

// The finished runs of every arm, the feature network they were measured with, and all runs as
// results.json lists them.
struct Results {
  std::map<std::string, ArmResults> arms;  // an entry for every arm, finished or not
  json all = json::array();
  std::string network = "(not evaluated)";
  const ArmResults& of(const ExperimentArm& arm) const { return arms.at(arm.name); }
};

// RUN/result.json with "seconds", the wall time of the run's stages, added; empty without a result.
json read_run(const std::string& run) {
  json r = read_json_file(run + "/result.json");
  if (r.empty()) return r;
  r["seconds"] = 0.0;
  for (const auto& s : read_json_file(run + "/stages.json").value("stages", json::array()))
    r["seconds"] = r["seconds"].get<double>() + s.value("seconds", 0.0);
  return r;
}

Results collect_results(const ExperimentInfo& info) {
  Results results;
  for (const auto& arm : info.arms) {
    auto& runs = results.arms[arm.name].runs;
    const std::string dir = info.dir + "/" + arm.name;
    std::vector<std::pair<int64_t, json>> found;
    if (fs::is_directory(dir))
      for (const auto& e : fs::directory_iterator(dir)) {
        const json r = read_run(e.path().string());
        if (r.empty()) continue;
        found.emplace_back(r.value("seed", int64_t{0}), r);
        results.network = r.value("feature_network", results.network);
      }
    std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    for (auto& [seed, r] : found) {
      runs.push_back(r);
      results.all.push_back(r);
    }
  }
  return results;
}

// A claim against the runs: the per-seed differences better - worse (sign-flipped when higher is
// better, so that a negative difference always favours `better`) and the verdict.
struct Verdict {
  const ClaimCheck* check;
  const Metric* metric;
  std::vector<double> diffs;  // one per seed both arms finished, in the metric's unit
  std::string verdict;
};

const Metric* metric_named(const std::string& key) {
  for (const auto& m : kMetrics)
    if (key == m.key) return &m;
  return nullptr;
}

std::vector<Verdict> verdicts(const ExperimentInfo& info, const Results& results) {
  std::vector<Verdict> out;
  for (const auto& c : info.checks) {
    Verdict v{&c, metric_named(c.metric), {}, "not run"};
    if (!v.metric || !results.arms.count(c.better) || !results.arms.count(c.worse)) continue;
    std::map<int64_t, double> worse;
    for (const auto& r : results.arms.at(c.worse).runs)
      if (r.contains(c.metric) && r[c.metric].is_number()) worse[r.value("seed", int64_t{0})] = r[c.metric].get<double>();
    for (const auto& r : results.arms.at(c.better).runs) {
      const auto w = worse.find(r.value("seed", int64_t{0}));
      if (w == worse.end() || !r.contains(c.metric) || !r[c.metric].is_number()) continue;
      const double d = (r[c.metric].get<double>() - w->second) * v.metric->scale;
      v.diffs.push_back(c.lower_is_better ? d : -d);
    }
    if (!v.diffs.empty()) {
      const bool all_for = std::all_of(v.diffs.begin(), v.diffs.end(), [](double d) { return d < 0; });
      const bool all_against = std::all_of(v.diffs.begin(), v.diffs.end(), [](double d) { return d > 0; });
      v.verdict = all_for ? "holds" : all_against ? "does not hold" : "within the seed spread";
      if (v.diffs.size() == 1 && v.verdict != "within the seed spread") v.verdict += " (one seed)";
    }
    out.push_back(std::move(v));
  }
  return out;
}

// The label of the arm called `name`.
std::string arm_label(const ExperimentInfo& info, const std::string& name) {
  for (const auto& a : info.arms)
    if (a.name == name) return a.label;
  return name;
}

// The claims as table rows: claim, comparison, difference (better - worse, mean +- sd over the
// seeds, in the metric's own direction), seeds, verdict. `esc` escapes text for the format.
template <typename Escape>
std::vector<std::vector<std::string>> claim_rows(const ExperimentInfo& info, const Results& results, const std::string& pm,
                                                 Escape esc) {
  std::vector<std::vector<std::string>> rows;
  for (const auto& v : verdicts(info, results)) {
    const ClaimCheck& c = *v.check;
    std::vector<double> signed_diffs;  // better - worse as measured
    for (double d : v.diffs) signed_diffs.push_back(c.lower_is_better ? d : -d);
    rows.push_back({esc(c.claim),
                    esc(v.metric->title + std::string(": ") + arm_label(info, c.better) + (c.lower_is_better ? " < " : " > ") +
                        arm_label(info, c.worse)),
                    signed_diffs.empty() ? "-" : mean_sd(signed_diffs, v.metric->digits, pm), std::to_string(v.diffs.size()),
                    v.verdict});
  }
  return rows;
}

const char* kClaimRule =
    "Each claim compares two arms seed by seed (the same seed trains both): it holds when every seed's difference goes "
    "the claimed way, does not hold when every seed's goes the other way, and is within the seed spread otherwise. "
    "The difference is the first arm's value minus the second's, mean and standard deviation over the seeds.";

// results.md: the claim, the table of means and the table of seeds, the budget.
void write_markdown(const ExperimentInfo& info, const Results& results) {
  std::ostringstream md;
  md << "# seqgan experiment " << info.name << ": " << info.claim.title << "\n\n" << info.claim.paper << "\n\n";
  md << "Preset `" << info.preset << "`; every FID, rFID and IS uses the feature network `" << results.network
     << "` (a classifier trained on the data set's labels, not InceptionV3): numbers compare the arms of this "
        "experiment, not papers. Mean +- sample standard deviation over the seeds.\n\n";
  md << "| arm | seeds |";
  for (const auto& m : kMetrics) md << " " << m.title << " |";
  md << " minutes per run |\n|---|---|";
  for (size_t i = 0; i <= kMetrics.size(); ++i) md << "---|";
  md << "\n";
  for (const auto& arm : info.arms) {
    const auto& a = results.of(arm);
    md << "| " << arm.label << " | " << a.runs.size() << " |";
    for (const auto& m : kMetrics) md << " " << mean_sd(a.values(m.key, m.scale), m.digits, "+-") << " |";
    md << " " << mean_sd(a.values("seconds", 1.0 / 60), 1, "+-") << " |\n";
  }
  md << "\nPer seed:\n\n| arm | seed |";
  for (const auto& m : kMetrics) md << " " << m.title << " |";
  md << "\n|---|---|";
  for (size_t i = 0; i < kMetrics.size(); ++i) md << "---|";
  md << "\n";
  for (const auto& arm : info.arms)
    for (const auto& r : results.of(arm).runs) {
      md << "| " << arm.label << " | " << r.value("seed", 0) << " |";
      for (const auto& m : kMetrics) md << " " << run_cell(r, m) << " |";
      md << "\n";
    }
  if (!info.checks.empty()) {
    md << "\n## The paper's claims\n\n" << kClaimRule << "\n\n| claim | comparison | difference | seeds | verdict |\n|---|---|---|---|---|\n";
    for (const auto& row : claim_rows(info, results, "+-", [](const std::string& t) { return t; }))
      md << "| " << row[0] << " | " << row[1] << " | " << row[2] << " | " << row[3] << " | **" << row[4] << "** |\n";
  }
  md << "\nBudget of every run on top of the preset: `" << run_settings(info) << "`; " << info.train_images
     << " training images tokenised for the transformers; " << info.samples_per_class
     << " samples per class from each transformer; " << info.eval_images
     << " test images for rFID, PSNR, usage and as the FID reference.\n";
  write_text_atomic(info.dir + "/results.md", md.str());
}

// The page's head, title and claim, and where and on what it ran.
void html_heading(std::ostream& h, const ExperimentInfo& info) {
  h << "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>seqgan experiment " << escape(info.name)
    << "</title><style>" << page_style() << "</style></head><body>";
  h << "<h1>seqgan experiment " << escape(info.name) << ": " << escape(info.claim.title) << "</h1>";
  h << "<p><b>What the paper reports.</b> " << escape(info.claim.paper) << "</p>";
  h << "<p class='note'>Directory <code>" << escape(info.dir) << "</code>, preset <code>" << escape(info.preset)
    << "</code>. Machine: " << escape(read_json_file(info.dir + "/stages.json").value("machine", std::string("unknown")))
    << ".</p>";
}

// The table of means over the seeds, and the table of seeds under it (folded).
void html_results(std::ostream& h, const ExperimentInfo& info, const Results& results) {
  h << "<h2>Results</h2><p class='note'>Every FID, rFID and IS uses the feature network <b>" << escape(results.network)
    << "</b>, a classifier trained on the data set's labels (neither InceptionV3 nor the perceptual-loss network): "
       "the numbers compare the arms of this experiment, not papers. FIDs of a few hundred samples are biased "
       "upwards; all arms share the sample count. Mean &plusmn; sample standard deviation over the seeds.</p>";
  h << "<div class='wide'><table><tr><th>arm</th><th>seeds</th>";
  for (const auto& m : kMetrics) h << "<th>" << escape(m.title) << "</th>";
  h << "<th>time per run</th></tr>";
  for (const auto& arm : info.arms) {
    const auto& a = results.of(arm);
    h << "<tr><td>" << escape(arm.label) << "</td><td class='n'>" << a.runs.size() << "</td>";
    for (const auto& m : kMetrics) h << "<td class='n'>" << mean_sd(a.values(m.key, m.scale), m.digits, "&plusmn;") << "</td>";
    const auto secs = a.values("seconds", 1.0);
    h << "<td class='n'>" << (secs.empty() ? "-" : duration(mean(secs))) << "</td></tr>";
  }
  h << "</table></div><details><summary>Per seed</summary><div class='wide'><table><tr><th>arm</th><th>seed</th>";
  for (const auto& m : kMetrics) h << "<th>" << escape(m.title) << "</th>";
  h << "</tr>";
  for (const auto& arm : info.arms)
    for (const auto& r : results.of(arm).runs) {
      h << "<tr><td>" << escape(arm.label) << "</td><td class='n'>" << r.value("seed", 0) << "</td>";
      for (const auto& m : kMetrics) h << "<td class='n'>" << run_cell(r, m) << "</td>";
      h << "</tr>";
    }
  h << "</table></div></details>";
}

// The paper's claims, each with its verdict.
void html_claims(std::ostream& h, const ExperimentInfo& info, const Results& results) {
  if (info.checks.empty()) return;
  h << "<h2>The paper's claims</h2><p class='note'>" << escape(kClaimRule)
    << "</p><div class='wide'><table><tr><th>claim</th><th>comparison</th><th>difference</th><th>seeds</th><th>verdict</th></tr>";
  for (const auto& row : claim_rows(info, results, "&plusmn;", [](const std::string& t) { return escape(t); }))
    h << "<tr><td>" << row[0] << "</td><td>" << row[1] << "</td><td class='n'>" << row[2] << "</td><td class='n'>" << row[3]
      << "</td><td><b>" << row[4] << "</b></td></tr>";
  h << "</table></div>";
}

// The mean of a metric over each arm's seeds against the arm's position.
Series over_arms(const ExperimentInfo& info, const Results& results, const char* key, double scale, const std::string& name) {
  Series s{name, {}};
  for (const auto& arm : info.arms) {
    const auto v = results.of(arm).values(key, scale);
    if (!v.empty()) s.points.emplace_back(arm.x, mean(v));
  }
  return s;
}

// Charts of the metrics against the arm's position (alpha for the sweep).
void html_metric_charts(std::ostream& h, const ExperimentInfo& info, const Results& results) {
  const bool sweep = info.name == "alpha-sweep";
  const std::string axis = sweep ? "alpha" : "arm (table order)";
  const std::string& network = results.network;
  const auto series = [&](const char* key, double scale, const std::string& name) {
    return over_arms(info, results, key, scale, name);
  };
  h << "<h2>Reconstruction against generation</h2><div class='charts'>";
  h << line_chart("rFID [" + network + "]", {series("rfid", 1, "rFID (mean)")}, axis, "rFID");
  h << line_chart("Generation FID [" + network + "]", {series("ar_fid", 1, "AR"), series("nar_fid", 1, "NAR")}, axis, "FID");
  h << line_chart("Codebook usage and AR top-1", {series("codebook_usage", 100, "usage %"), series("ar_top1", 100, "AR top-1 %")},
                  axis, "%");
  h << line_chart("Final validation loss", {series("ar_val_loss", 1, "AR"), series("nar_val_loss", 1, "NAR")}, axis,
                  "cross-entropy");
  h << "</div>";
  if (!sweep) {
    h << "<p class='note'>Arms on the x axis: ";
    for (const auto& arm : info.arms) h << fixed(arm.x, 0) << " = " << escape(arm.label) << "; ";
    h << "</p>";
  }
}

// The transformers' validation curves of each arm's first finished seed.
void html_validation_curves(std::ostream& h, const ExperimentInfo& info, const Results& results) {
  h << "<h2>Transformer validation loss (first finished seed)</h2><div class='charts'>";
  for (const std::string kind : {"ar", "nar"}) {
    std::vector<Series> curves;
    for (const auto& arm : info.arms) {
      const auto& runs = results.of(arm).runs;
      if (runs.empty()) continue;
      curves.push_back(read_series(first_existing(info.dir, arm.name, runs, kind + "/metrics.jsonl"), "val", "loss", arm.label));
    }
    h << line_chart(kind == "ar" ? "AR validation loss" : "NAR validation loss", curves, "step", "cross-entropy");
  }
  h << "</div>";
}

// One figure of each arm's first finished seed: RUN/`rel`, embedded at `scale`.
void html_arm_figures(std::ostream& h, const ExperimentInfo& info, const Results& results, const std::string& rel,
                      const std::string& alt, double scale) {
  for (const auto& arm : info.arms) {
    const auto& runs = results.of(arm).runs;
    if (runs.empty()) continue;
    h << "<div class='fig'><b>" << escape(arm.label) << "</b><br>"
      << embed_png(first_existing(info.dir, arm.name, runs, rel), alt + ", " + arm.label, scale) << "</div>";
  }
}

// The teacher-forced AR predictions and the AR samples of every arm.
void html_figures(std::ostream& h, const ExperimentInfo& info, const Results& results) {
  h << "<h2>Teacher-forced AR predictions (paper Fig. 6a; first finished seed)</h2><p class='note'>Per row: the test "
       "image, its reconstruction, the image decoded from the AR model's top-1 prediction of every token given the true "
       "tokens before it; the caption is that image's top-1 accuracy.</p><div class='figs'>";
  html_arm_figures(h, info, results, "visualization.png", "visualisation", 2);
  h << "</div><h2>AR samples, a row per class (first finished seed)</h2><div class='figs'>";
  html_arm_figures(h, info, results, "samples-ar/grid.png", "AR samples", 1);
  h << "</div>";
}

// How it was made: the budget, each arm's settings and wall times, and the commands of its
// first finished seed.
void html_runs(std::ostream& h, const ExperimentInfo& info, const Results& results) {
  h << "<h2>Runs and commands</h2><p>Budget of every run on top of the preset: <code>" << escape(run_settings(info)) << "</code>; "
    << escape(info.train_images) << " training images tokenised for the transformers, " << escape(info.samples_per_class)
    << " samples per class from each transformer, " << info.eval_images
    << " test images for rFID, PSNR, usage and as the FID reference.</p><table><tr><th>arm</th><th>settings</th><th>seeds and wall time</th></tr>";
  for (const auto& arm : info.arms) {
    std::string settings, times;
    for (const auto& s : arm.settings) settings += "<code>" + escape(s) + "</code> ";
    for (const auto& r : results.of(arm).runs)
      times += "seed " + std::to_string(r.value("seed", 0)) + ": " + duration(r.value("seconds", 0.0)) + "<br>";
    h << "<tr><td>" << escape(arm.label) << "</td><td>" << settings << "</td><td>" << (times.empty() ? "-" : times) << "</td></tr>";
  }
  h << "</table>";
  for (const auto& arm : info.arms) {
    const auto& runs = results.of(arm).runs;
    if (runs.empty()) continue;
    const std::string stages_path = first_existing(info.dir, arm.name, runs, "stages.json");
    const json st = read_json_file(stages_path);
    h << "<details><summary>Commands of " << escape(arm.label) << " (" << escape(stages_path) << ")</summary><p class='note'>Every "
      << "command also received <code>" << escape(st.value("arguments", std::string())) << "</code></p><table>";
    for (const auto& s : st.value("stages", json::array())) {
      std::string cmds;
      for (const auto& c : s.value("commands", json::array())) cmds += "<code>" + escape(c.get<std::string>()) + "</code><br>";
      h << "<tr><td>" << escape(s.value("name", std::string())) << "</td><td class='n'>" << duration(s.value("seconds", 0.0))
        << "</td><td>" << cmds << "</td></tr>";
    }
    h << "</table></details>";
  }
}

}  // namespace

std::string run_settings(const ExperimentInfo& info) {
  // Each key once, where it first appears, with the value the runs take: its last.
  std::vector<std::string> all = info.budget;
  all.insert(all.end(), info.settings.begin(), info.settings.end());
  std::string settings;
  for (const auto& assignment : last_assignments(all)) settings += (settings.empty() ? "" : " ") + assignment;
  return settings;
}

std::string write_experiment_report(const ExperimentInfo& info) {
  const Results results = collect_results(info);
  write_text_atomic(info.dir + "/results.json", results.all.dump(2) + "\n");
  write_markdown(info, results);
  std::ostringstream h;
  html_heading(h, info);
  html_results(h, info, results);
  html_claims(h, info, results);
  html_metric_charts(h, info, results);
  html_validation_curves(h, info, results);
  html_figures(h, info, results);
  html_runs(h, info, results);
  h << images_loaded_script() << "</body></html>\n";
  const std::string path = info.dir + "/report.html";
  write_text_atomic(path, h.str());
  return path;
}

}  // namespace seqgan::report
