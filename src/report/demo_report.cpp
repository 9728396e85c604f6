#include "report/demo_report.h"

#include <filesystem>
#include <fstream>
#include <iomanip>
#include <nlohmann/json.hpp>
#include <sstream>

#include "report/html.h"
#include "train/run.h"

namespace seqgan::report {
namespace {

using nlohmann::json;

std::string cell(const json& j, const char* key, int digits, const std::string& suffix = "") {
  return j.contains(key) && j[key].is_number() ? fixed(j[key].get<double>(), digits) + suffix : "&ndash;";
}

// The page's head and title, where and on what it ran, and what the demo trains.
void html_heading(std::ostream& h, const std::string& dir, const json& demo) {
  h << "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>seqgan demo report</title><style>" << page_style()
    << "</style></head><body>";
  h << "<h1>seqgan demo: SeQ-GAN on " << escape(demo.value("dataset", std::string("Fashion-MNIST"))) << "</h1>";
  h << "<p class='note'>Run directory <code>" << escape(dir) << "</code>; " << escape(demo.value("finished", std::string("not finished")))
    << ". Machine: " << escape(demo.value("machine", std::string("unknown"))) << ".</p>";
  h << "<p>Tokenizer phase 1 (semantic perceptual loss, alpha = 1, entropy-regularised codebook, GAN), phase 2 "
       "(frozen encoder and codebook, decoder with B&amp;D attention fine-tuned), then class-conditional AR and "
       "NAR (MaskGIT) transformers on its tokens.</p>";
}

// The network every metric is measured with, and how the images reach it.
void html_metrics_note(std::ostream& h, const json& metrics, const std::string& network) {
  h << "<h2>Metrics</h2><p class='note'>Every FID, sFID, precision/recall, rFID and IS below uses the feature "
       "network <b>" << escape(network)
    << "</b> (<code>" << escape(metrics.value("feature_weights", std::string())) << "</code>"
    << (metrics.contains("feature_weights_sha256")
            ? ", sha256 <code>" + escape(metrics["feature_weights_sha256"].get<std::string>().substr(0, 12)) + "</code>"
            : std::string())
    << "), a classifier trained on the data set's labels, not the perceptual-loss network and not InceptionV3: the "
       "numbers compare runs of this data set, not papers.";
  if (metrics.contains("preprocess"))
    h << " Test images: " << escape(metrics.value("preprocess", std::string())) << "; samples as written; the network "
      << "resizes " << escape(metrics.value("resize", std::string())) << "; sFID taps "
      << escape(metrics.value("spatial_tap", std::string())) << "; precision and recall with k = 3 against the test set.";
  h << "</p>";
}

// The tokenizers' reconstruction scores and codebook usage.
void html_tokenizer_table(std::ostream& h, const json& metrics, const std::string& network) {
  h << "<table><tr><th>tokenizer</th><th>rFID [" << escape(network) << "]</th><th>PSNR</th><th>SSIM</th><th>codebook usage</th>"
       "<th>perplexity</th><th>images</th></tr>";
  for (const auto& t : metrics.value("tokenizers", json::array()))
    h << "<tr><td>" << escape(t.value("name", std::string())) << "</td><td class='n'>" << cell(t, "rfid", 3)
      << "</td><td class='n'>" << cell(t, "psnr_db", 2, " dB") << "</td><td class='n'>" << cell(t, "ssim", 4)
      << "</td><td class='n'>"
      << (t.contains("codebook_usage") ? fixed(100 * t["codebook_usage"].get<double>(), 1) + "% (" +
                                             std::to_string(t.value("codes_used", 0)) + " of " +
                                             std::to_string(t.value("codebook_size", 0)) + ")"
                                       : "&ndash;")
      << "</td><td class='n'>" << cell(t, "perplexity", 1) << "</td><td class='n'>" << t.value("count", 0) << "</td></tr>";
  h << "</table>";
}

// Every image set's generation scores against the test set; the last row is the real images' floor.
void html_generation_table(std::ostream& h, const json& metrics, const std::string& network) {
  h << "<table><tr><th>images</th><th>FID vs test set [" << escape(network) << "]</th><th>sFID</th><th>precision</th>"
       "<th>recall</th><th>IS [" << escape(network) << "]</th><th>images</th></tr>";
  for (const auto& g : metrics.value("generation", json::array()))
    h << "<tr><td>" << escape(g.value("name", std::string())) << "</td><td class='n'>" << cell(g, "fid", 3)
      << "</td><td class='n'>" << cell(g, "sfid", 3) << "</td><td class='n'>" << cell(g, "precision", 3)
      << "</td><td class='n'>" << cell(g, "recall", 3) << "</td><td class='n'>" << cell(g, "is", 3) << (g.contains("is_std") ? " &plusmn; " + fixed(g["is_std"].get<double>(), 3) : "")
      << "</td><td class='n'>" << g.value("count", 0) << "</td></tr>";
  h << "</table><p class='note'>The last row is the floor: real training images against the test set (FID) and the "
       "test images themselves (IS).</p>";
}

// The tokenizer phases' and the transformers' training curves, and the test set's codebook usage.
void html_curves(std::ostream& h, const std::string& dir, const json& metrics) {
  const std::string p1 = dir + "/tokenizer-phase1/metrics.jsonl", p2 = dir + "/tokenizer-phase2/metrics.jsonl";
  h << "<h2>Training curves</h2><div class='charts'>";
  h << line_chart("Tokenizer reconstruction", {read_series(p1, "tokenizer_phase1", "l1", "phase 1 L1"),
                                                read_series(p2, "tokenizer_phase2", "l1", "phase 2 L1")},
                  "step", "L1");
  h << line_chart("Perceptual loss", {read_series(p1, "tokenizer_phase1", "perceptual", "phase 1"),
                                      read_series(p2, "tokenizer_phase2", "perceptual", "phase 2")},
                  "step", "loss");
  h << line_chart("Codebook usage (phase 1)", {read_series(p1, "tokenizer_phase1", "codes_in_batch", "codes in batch"),
                                               read_series(p1, "tokenizer_phase1", "perplexity", "perplexity")},
                  "step", "codes");
  h << line_chart("Transformers", {read_series(dir + "/ar/metrics.jsonl", "train", "loss", "AR train"),
                                   read_series(dir + "/ar/metrics.jsonl", "val", "loss", "AR val"),
                                   read_series(dir + "/nar/metrics.jsonl", "train", "loss", "NAR train"),
                                   read_series(dir + "/nar/metrics.jsonl", "val", "loss", "NAR val")},
                  "step", "cross-entropy");
  std::vector<double> hist;
  for (const auto& v : metrics.value("usage_histogram", json::array())) hist.push_back(v.get<double>());
  std::sort(hist.rbegin(), hist.rend());
  h << bar_chart("Codebook usage on the test set (phase 2, sorted)", hist, "code (by rank)", "tokens");
  h << "</div>";
}

// The reconstructions of both phases, the sample grids, the AR model's visualisation.
void html_figures(std::ostream& h, const std::string& dir) {
  h << "<h2>Reconstructions: phase 1 vs phase 2</h2><div class='fig'>"
    << embed_png(dir + "/reconstructions.png", "test images over phase-1 and phase-2 reconstructions", 2) << "</div>";
  h << "<p class='note'>Rows: test images, phase-1 reconstructions, phase-2 reconstructions (same codes, the "
       "fine-tuned decoder).</p>";
  h << "<h2>Samples, a row per class</h2><h3>AR</h3><div class='fig'>"
    << embed_png(dir + "/samples-ar/grid.png", "AR samples per class", 2) << "</div><h3>NAR (MaskGIT)</h3><div class='fig'>"
    << embed_png(dir + "/samples-nar/grid.png", "NAR samples per class", 2) << "</div>";
  h << "<h2>Visualisation of the AR model (paper Fig. 5)</h2><div class='fig'>"
    << embed_png(dir + "/visualization.png", "input, reconstruction and teacher-forced AR prediction", 2) << "</div>"
    << "<p class='note'>Per row: the input, its reconstruction, and the image decoded from the AR model's "
       "teacher-forced predictions of every token.</p>";
}

// Every stage's time and commands with the total, and what every command also received.
void html_stages(std::ostream& h, const json& demo) {
  h << "<h2>Stages</h2><table><tr><th>stage</th><th>time</th><th>command</th></tr>";
  double total = 0;
  for (const auto& s : demo.value("stages", json::array())) {
    const double secs = s.value("seconds", 0.0);
    total += secs;
    std::string cmds;
    for (const auto& c : s.value("commands", json::array())) cmds += "<code>" + escape(c.get<std::string>()) + "</code><br>";
    h << "<tr><td>" << escape(s.value("name", std::string())) << "</td><td class='n'>" << duration(secs) << "</td><td>"
      << cmds << "</td></tr>";
  }
  h << "<tr><th>total</th><th class='n'>" << duration(total) << "</th><th></th></tr></table>";
  h << "<p class='note'>Every command also received <code>" << escape(demo.value("common_arguments", std::string()))
    << "</code>. Settings on top of the fmnist preset: <code>" << escape(demo.value("settings", std::string("(none)")))
    << "</code></p>";
}

}  // namespace

std::string write_demo_report(const std::string& dir) {
  const json demo = read_json_file(dir + "/demo.json");
  const json metrics = read_json_file(dir + "/metrics.json");
  const std::string network = metrics.value("feature_network", std::string("(not evaluated)"));
  std::ostringstream h;
  html_heading(h, dir, demo);
  html_metrics_note(h, metrics, network);
  html_tokenizer_table(h, metrics, network);
  html_generation_table(h, metrics, network);
  html_curves(h, dir, metrics);
  html_figures(h, dir);
  html_stages(h, demo);
  h << images_loaded_script();
  h << "</body></html>\n";
  const std::string path = dir + "/report.html";
  write_text_atomic(path, h.str());
  return path;
}

}  // namespace seqgan::report
