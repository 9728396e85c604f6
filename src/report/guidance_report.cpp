#include "report/guidance_report.h"

#include <algorithm>
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

std::string number(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

std::string set_key(const std::string& kind, const std::string& weights, double guidance, double accept) {
  return kind + "/" + weights + "/" + number(guidance) + "/" + number(accept);
}

// The finished runs' result.json, seed order.
std::vector<json> finished_runs(const ExperimentInfo& info) {
  std::vector<std::pair<int64_t, json>> found;
  for (const auto& arm : info.arms) {
    const std::string dir = info.dir + "/" + arm.name;
    if (!fs::is_directory(dir)) continue;
    for (const auto& e : fs::directory_iterator(dir)) {
      json r = read_json_file(e.path().string() + "/result.json");
      if (r.empty()) continue;
      r["dir"] = e.path().string();
      found.emplace_back(r.value("seed", int64_t{0}), r);
    }
  }
  std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<json> out;
  for (auto& f : found) out.push_back(f.second);
  return out;
}

// Per sample set and metric: the values over the seeds.
struct Table {
  std::map<std::string, std::map<std::string, std::vector<double>>> values;
  const std::vector<double>& of(const GuidanceSet& s, const std::string& metric) {
    return values[set_key(s.kind, s.weights, s.guidance, s.accept_fraction)][metric];
  }
};

Table gather(const std::vector<json>& runs) {
  Table t;
  for (const auto& r : runs)
    for (const auto& s : r.value("sets", json::array())) {
      auto& v = t.values[set_key(s.value("kind", ""), s.value("weights", ""), s.value("guidance", 0.0),
                                 s.value("accept_fraction", 0.0))];
      for (const char* m : {"fid", "is", "acceptance_rate"})
        if (s.contains(m) && s[m].is_number()) v[m].push_back(s[m].get<double>());
    }
  return t;
}

std::string label(const GuidanceSet& s) {
  return (s.kind == "ar" ? std::string("AR") : std::string("NAR")) + ", " + s.weights + " weights";
}

std::string model_name(const std::string& kind) { return kind == "ar" ? "AR" : "NAR"; }

// The feature network of the runs' FID and IS (the last run's that names one).
std::string feature_network(const std::vector<json>& runs) {
  std::string network = "(not evaluated)";
  for (const auto& r : runs) network = r.value("feature_network", network);
  return network;
}

// results.json: every finished run's result.json, without its directory.
void write_results_json(const ExperimentInfo& info, const std::vector<json>& runs) {
  json all = json::array();
  for (const auto& r : runs) {
    json rr = r;
    rr.erase("dir");
    all.push_back(rr);
  }
  write_text_atomic(info.dir + "/results.json", all.dump(2) + "\n");
}

// What ran and how it is measured (Markdown: `code` marks).
std::string description(const ExperimentInfo& info, size_t seeds, const std::string& network) {
  return "Preset `" + info.preset + "`; " + std::to_string(seeds) + " seed(s), each its own tokenizer and AR and NAR "
         "transformers trained with class dropout and an EMA of the weights (settings below); " + info.samples_per_class +
         " samples per class per set. FID and IS use the feature network `" + network +
         "` (a classifier trained on the data set's labels, not InceptionV3); rejection sampling scores with the "
         "perceptual-loss classifier, another network. Mean +- sample standard deviation over the seeds.";
}

// results.md: FID and IS against the guidance scale per model, the rejection sampling table, the
// settings.
void write_markdown(const ExperimentInfo& info, Table& t, const std::string& what, const std::string& budget) {
  std::ostringstream md;
  md << "# seqgan experiment guidance: classifier-free guidance, EMA weights and rejection sampling\n\n" << what << "\n\n";
  for (const char* kind : {"ar", "nar"}) {
    md << "## " << model_name(kind) << " against the guidance scale\n\n"
       << "| guidance | FID (EMA) | IS (EMA) | FID (raw) | IS (raw) |\n|---|---|---|---|---|\n";
    for (const double g : guidance_scales()) {
      md << "| " << number(g) << " |";
      for (const char* w : {"ema", "raw"}) {
        const GuidanceSet s{kind, w, g, 1.0};
        md << " " << mean_sd(t.of(s, "fid"), 2, "+-") << " | " << mean_sd(t.of(s, "is"), 3, "+-") << " |";
      }
      md << "\n";
    }
    md << "\n";
  }
  md << "## Rejection sampling (EMA weights, guidance 1)\n\n| model | accept fraction | acceptance rate | FID | IS |\n"
     << "|---|---|---|---|---|\n";
  for (const char* kind : {"ar", "nar"})
    for (const double f : acceptance_fractions()) {
      const GuidanceSet s{kind, "ema", 1.0, f};
      md << "| " << model_name(kind) << " | " << number(f) << " | " << mean_sd(t.of(s, "acceptance_rate"), 3, "+-")
         << " | " << mean_sd(t.of(s, "fid"), 2, "+-") << " | " << mean_sd(t.of(s, "is"), 3, "+-") << " |\n";
    }
  md << "\nSettings of every run on top of the preset: `" << budget << "`.\n";
  write_text_atomic(info.dir + "/results.md", md.str());
}

// The page's head and title, what ran, where and on what machine.
void html_heading(std::ostream& h, const ExperimentInfo& info, const std::string& what) {
  h << "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>seqgan experiment guidance</title><style>"
    << page_style() << "</style></head><body>";
  h << "<h1>seqgan experiment guidance: classifier-free guidance, EMA weights and rejection sampling</h1>";
  std::string plain = what;  // the Markdown's `code` marks, dropped for the page
  plain.erase(std::remove(plain.begin(), plain.end(), '`'), plain.end());
  h << "<p class='note'>" << escape(plain) << " Directory <code>" << escape(info.dir) << "</code>. Machine: "
    << escape(read_json_file(info.dir + "/stages.json").value("machine", std::string("unknown"))) << ".</p>";
}

// Per model, FID and IS of the EMA and raw weights against the guidance scale.
void html_guidance_tables(std::ostream& h, Table& t) {
  for (const char* kind : {"ar", "nar"}) {
    h << "<h2>" << model_name(kind) << " against the guidance scale</h2><table><tr><th>guidance</th><th>FID (EMA)</th>"
      << "<th>IS (EMA)</th><th>FID (raw)</th><th>IS (raw)</th></tr>";
    for (const double g : guidance_scales()) {
      h << "<tr><td class='n'>" << number(g) << "</td>";
      for (const char* w : {"ema", "raw"}) {
        const GuidanceSet s{kind, w, g, 1.0};
        h << "<td class='n'>" << mean_sd(t.of(s, "fid"), 2, "&plusmn;") << "</td><td class='n'>"
          << mean_sd(t.of(s, "is"), 3, "&plusmn;") << "</td>";
      }
      h << "</tr>";
    }
    h << "</table>";
  }
}

// The curves: FID and IS against the scale, and the trade-off (IS on x, FID on y, one point per
// scale); FID and IS against the acceptance fraction.
void html_curves(std::ostream& h, Table& t) {
  std::vector<Series> fid, is, tradeoff;
  for (const char* kind : {"ar", "nar"})
    for (const char* w : {"ema", "raw"}) {
      Series f{label({kind, w, 1, 1}), {}}, i{f.name, {}}, tr{f.name, {}};
      for (const double g : guidance_scales()) {
        const GuidanceSet s{kind, w, g, 1.0};
        const auto& fv = t.of(s, "fid");
        const auto& iv = t.of(s, "is");
        if (!fv.empty()) f.points.emplace_back(g, mean(fv));
        if (!iv.empty()) i.points.emplace_back(g, mean(iv));
        if (!fv.empty() && !iv.empty()) tr.points.emplace_back(mean(iv), mean(fv));
      }
      fid.push_back(f);
      is.push_back(i);
      tradeoff.push_back(tr);
    }
  h << "<h2>Curves</h2><div class='figs'>" << line_chart("FID against the guidance scale", fid, "guidance scale", "FID")
    << line_chart("IS against the guidance scale", is, "guidance scale", "IS")
    << line_chart("FID/IS trade-off (a point per scale, 1 to 5)", tradeoff, "IS", "FID");
  std::vector<Series> accept_fid, accept_is;
  for (const char* kind : {"ar", "nar"}) {
    Series f{model_name(kind), {}}, i{f.name, {}};
    for (const double fr : acceptance_fractions()) {
      const GuidanceSet s{kind, "ema", 1.0, fr};
      if (!t.of(s, "fid").empty()) f.points.emplace_back(fr, mean(t.of(s, "fid")));
      if (!t.of(s, "is").empty()) i.points.emplace_back(fr, mean(t.of(s, "is")));
    }
    accept_fid.push_back(f);
    accept_is.push_back(i);
  }
  h << line_chart("FID against the acceptance fraction", accept_fid, "fraction kept", "FID")
    << line_chart("IS against the acceptance fraction", accept_is, "fraction kept", "IS") << "</div>";
}

// Per model and acceptance fraction: the acceptance rate, FID and IS (EMA weights, guidance 1).
void html_rejection_table(std::ostream& h, Table& t) {
  h << "<h2>Rejection sampling (EMA weights, guidance 1)</h2><table><tr><th>model</th><th>accept fraction</th>"
    << "<th>acceptance rate</th><th>FID</th><th>IS</th></tr>";
  for (const char* kind : {"ar", "nar"})
    for (const double f : acceptance_fractions()) {
      const GuidanceSet s{kind, "ema", 1.0, f};
      h << "<tr><td>" << model_name(kind) << "</td><td class='n'>" << number(f) << "</td><td class='n'>"
        << mean_sd(t.of(s, "acceptance_rate"), 3, "&plusmn;") << "</td><td class='n'>"
        << mean_sd(t.of(s, "fid"), 2, "&plusmn;") << "</td><td class='n'>" << mean_sd(t.of(s, "is"), 3, "&plusmn;")
        << "</td></tr>";
    }
  h << "</table>";
}

// The first seed's sample grids (EMA weights): guidance 1, 2 and 5, and the best 25% of
// rejection sampling, per model.
void html_grids(std::ostream& h, const std::vector<json>& runs) {
  if (runs.empty()) return;
  const std::string dir = runs.front()["dir"].get<std::string>();
  h << "<h2>Sample grids of seed " << runs.front().value("seed", 0) << " (EMA weights), a row per class</h2>";
  for (const char* kind : {"ar", "nar"}) {
    h << "<div class='figs'>";
    for (const double g : {1.0, 2.0, 5.0}) {
      const GuidanceSet s{kind, "ema", g, 1.0};
      h << "<div class='fig'><b>" << model_name(kind) << ", guidance " << number(g) << "</b><br>"
        << embed_png(dir + "/" + s.folder() + "/grid.png", s.folder(), 1) << "</div>";
    }
    const GuidanceSet r{kind, "ema", 1.0, 0.25};
    h << "<div class='fig'><b>" << model_name(kind) << ", rejection (best 25%)</b><br>"
      << embed_png(dir + "/" + r.folder() + "/grid.png", r.folder(), 1) << "</div></div>";
  }
}

}  // namespace

std::string GuidanceSet::folder() const {
  std::string f = "samples-" + kind + "-" + weights + "-g" + number(guidance);
  if (accept_fraction < 1) f += "-accept" + number(accept_fraction);
  return f;
}

const std::vector<double>& guidance_scales() {
  static const std::vector<double> v{1, 1.5, 2, 3, 5};
  return v;
}

const std::vector<double>& acceptance_fractions() {
  static const std::vector<double> v{1, 0.5, 0.25};
  return v;
}

std::vector<GuidanceSet> guidance_sets() {
  std::vector<GuidanceSet> out;
  for (const char* kind : {"ar", "nar"})
    for (const char* w : {"ema", "raw"})
      for (const double g : guidance_scales()) out.push_back({kind, w, g, 1.0});
  for (const char* kind : {"ar", "nar"})
    for (const double f : acceptance_fractions())
      if (f < 1) out.push_back({kind, "ema", 1.0, f});
  return out;
}

std::string write_guidance_report(const ExperimentInfo& info) {
  const auto runs = finished_runs(info);
  Table t = gather(runs);
  write_results_json(info, runs);
  const std::string budget = run_settings(info);
  const std::string what = description(info, runs.size(), feature_network(runs));
  write_markdown(info, t, what, budget);

  // report.html: the same tables, the curves, the grids.
  std::ostringstream h;
  html_heading(h, info, what);
  html_guidance_tables(h, t);
  html_curves(h, t);
  html_rejection_table(h, t);
  html_grids(h, runs);
  h << "<h2>Settings</h2><p>Every run on top of the preset: <code>" << escape(budget) << "</code></p>";
  h << images_loaded_script() << "</body></html>\n";
  const std::string path = info.dir + "/report.html";
  write_text_atomic(path, h.str());
  return path;
}

}  // namespace seqgan::report
