// `seqgan demo`: the whole system on Fashion-MNIST in one command (classifiers, tokenizer phases
// 1 and 2, tokens, AR and NAR transformers, samples, visualisation, evaluation, report), and
// `seqgan report`, which rebuilds the report of a demo directory.
//
// Stages record themselves in DIR/demo.json when they finish; a re-run skips finished stages and
// resumes an interrupted training stage from its checkpoint.
#include <chrono>
#include <ctime>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/cli.h"
#include "cli/stages.h"
#include "eval/evaluate.h"
#include "report/demo_report.h"
#include "report/scores_json.h"
#include "seqgan/error.h"
#include "seqgan/log.h"
#include "seqgan/runtime.h"
#include "train/run.h"

namespace seqgan::cli {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

// The demo's budget on top of the fmnist preset: sized so that the whole run takes about 23
// minutes on a 2-core CPU. The preset's own budget (train-tokenizer --preset fmnist) is larger.
const std::vector<std::string> kBudget{
    "train_tokenizer.iterations=1000", "discriminator.start_iter=500", "phase2.iterations=200",
    "train_ar.iterations=400",         "train_ar.decay_start=200",    "train_nar.iterations=400",
    "train_nar.decay_start=200"};

// The demo's evaluation, run in-process: rFID/PSNR/usage of both tokenizer phases, FID and IS of
// the AR and NAR samples, and the real-data floor, into DIR/metrics.json.
void evaluate_demo(const std::string& dir, const std::vector<std::string>& common) {
  const auto d = [&](const std::string& rel) { return dir + "/" + rel; };
  // The config every command ran with, for the data set and the evaluation network.
  Command c;
  c.config_options("fmnist");
  const Config config = load_config(c.parse(common));
  const auto device = to_device(resolve_device(config.device));
  EvalNetwork net(config.eval, device);
  const int64_t batch = config.eval.batch_size;
  const ImageSource test = open_image_source("data:test", config.data);
  json m{{"feature_network", net.name()}, {"feature_weights", net.weights()}, {"feature_weights_sha256", net.weights_sha256()},
         {"resize", net.resize()}, {"spatial_tap", net.spatial()}, {"preprocess", test.preprocess},
         {"tokenizers", json::array()}, {"generation", json::array()}};
  // The test images go through the network once: their statistics serve the rFIDs, the FIDs
  // and the floor, their logits the test set's IS.
  const FeatureSet test_features = extract_features(net, test, -1, batch, "features (test)");
  const FeatureStats test_stats = feature_stats(net, test_features, test.name, test.preprocess);
  const FeatureStats test_spatial = feature_stats(net, test_features, test.name, test.preprocess, /*spatial=*/true);
  const at::Tensor test_radii = manifold_radii(test_features.features);  // shared by every precision/recall below
  save_feature_stats(d("test-stats.safetensors"), test_stats);
  for (const auto& [name, run] : std::vector<std::pair<std::string, std::string>>{{"phase 1", "tokenizer-phase1"},
                                                                                  {"phase 2", "tokenizer-phase2"}}) {
    auto tok = load_tokenizer(d(run + "/tokenizer.safetensors"), device);
    const TokenizerScores s = score_tokenizer(tok.model, test, -1, batch, &net, &test_stats);
    json t{{"name", name}, {"path", d(run + "/tokenizer.safetensors")}, {"ssim", s.ssim}, {"count", s.count}};
    t.update(report::tokenizer_scores_json(s));
    m["tokenizers"].push_back(t);
    if (name == "phase 2") {
      std::vector<int64_t> hist(s.histogram.data_ptr<int64_t>(), s.histogram.data_ptr<int64_t>() + s.histogram.size(0));
      m["usage_histogram"] = hist;
    }
  }
  const int splits = config.eval.is_splits;
  for (const auto& [name, folder] : std::vector<std::pair<std::string, std::string>>{
           {"AR samples", "samples-ar/images"}, {"NAR samples", "samples-nar/images"}}) {
    const ImageSource gen = open_image_source(d(folder), config.data);
    const FeatureSet f = extract_features(net, gen, -1, batch, "features (" + name + ")");
    const InceptionScore is = inception_score(f.logits, splits);
    const PrecisionRecall pr = precision_recall_given_radii(test_features.features, test_radii, f.features);
    m["generation"].push_back({{"name", name}, {"fid", frechet_distance(test_stats, feature_stats(net, f, gen.name))},
                               {"sfid", frechet_distance(test_spatial, feature_stats(net, f, gen.name, "", true))},
                               {"precision", pr.precision}, {"recall", pr.recall},
                               {"is", is.mean}, {"is_std", is.std}, {"count", f.features.size(0)}});
  }
  // The floor: as many real training images as the test set holds, and the test set's own IS.
  const ImageSource train = open_image_source("data:train", config.data);
  const FeatureSet train_features = extract_features(net, train, test.data->size(), batch, "features (train)");
  const InceptionScore test_is = inception_score(test_features.logits, splits);
  const PrecisionRecall floor_pr = precision_recall_given_radii(test_features.features, test_radii, train_features.features);
  m["generation"].push_back({{"name", "real: train vs test (floor)"},
                             {"fid", frechet_distance(test_stats, feature_stats(net, train_features, train.name))},
                             {"sfid", frechet_distance(test_spatial, feature_stats(net, train_features, train.name, "", true))},
                             {"precision", floor_pr.precision}, {"recall", floor_pr.recall},
                             {"is", test_is.mean}, {"is_std", test_is.std}, {"count", train_features.features.size(0)}});
  write_text_atomic(d("metrics.json"), m.dump(2));
  std::cout << m.dump(2) << "\n";
}

int run_demo(const Args& args) {
  const std::string dir = args.get("--out");
  std::vector<std::string> common{"--preset", "fmnist", "--threads", args.get("--threads"), "--device", args.get("--device"),
                                  "--set", "perceptual.weights=" + dir + "/classifier-loss/classifier.safetensors",
                                  "--set", "eval.feature_weights=" + dir + "/classifier-eval/classifier.safetensors"};
  for (const auto& s : kBudget) common.insert(common.end(), {"--set", s});
  for (const auto& s : args.all("--set")) common.insert(common.end(), {"--set", s});
  set_threads(static_cast<int>(args.get_int("--threads")));
  StageRunner demo(dir + "/demo.json", common, "demo");
  auto& st = demo.state();
  st["common_arguments"] = join_args(common);
  if (!st.contains("started")) st["started"] = now_text();
  st["machine"] = machine_summary();
  st["dataset"] = "Fashion-MNIST";
  std::string settings;
  for (const auto& s : kBudget) settings += (settings.empty() ? "" : " ") + s;
  for (const auto& s : args.all("--set")) settings += " " + s;
  st["settings"] = settings;
  demo.save();
  const auto t = [&](const std::string& rel) { return dir + "/" + rel; };
  const std::string per_class = args.get("--samples-per-class");
  try {
    demo.stage("classifier (loss network)",
               {{"train-classifier", "--role", "loss", "--out", t("classifier-loss/classifier.safetensors")}});
    demo.stage("classifier (evaluation network)",
               {{"train-classifier", "--role", "eval", "--out", t("classifier-eval/classifier.safetensors")}});
    demo.stage("tokenizer phase 1",
               {demo.resumable({"train-tokenizer", "--phase", "1", "--out", t("tokenizer-phase1")}, t("tokenizer-phase1"))});
    demo.stage("tokenizer phase 2", {demo.resumable({"train-tokenizer", "--phase", "2", "--init",
                                                     t("tokenizer-phase1/tokenizer.safetensors"), "--out", t("tokenizer-phase2")},
                                                    t("tokenizer-phase2"))});
    const std::string tok = t("tokenizer-phase2/tokenizer.safetensors");
    // The transformers see 400 x 64 = 25,600 sequences: half of the training set is tokenised,
    // and 2,000 test images serve as their validation set.
    demo.stage("tokens", {{"tokenize", "--tokenizer", tok, "--split", "train", "--limit", "30000", "--out",
                           t("tokens-train.safetensors")},
                          {"tokenize", "--tokenizer", tok, "--split", "test", "--limit", "2000", "--out",
                           t("tokens-test.safetensors")}});
    for (const std::string kind : {"ar", "nar"})
      demo.stage(kind == "ar" ? "AR transformer" : "NAR transformer",
                 {demo.resumable({"train-transformer", "--kind", kind, "--tokens", t("tokens-train.safetensors"),
                                  "--val-tokens", t("tokens-test.safetensors"), "--out", t(kind)},
                                 t(kind))});
    demo.stage("samples", {{"sample", "--model", t("ar/transformer.safetensors"), "--tokenizer", tok, "--per-class",
                            per_class, "--batch-size", "250", "--grid-columns", "12", "--npz", "--out", t("samples-ar")},
                           {"sample", "--model", t("nar/transformer.safetensors"), "--tokenizer", tok, "--per-class",
                            per_class, "--batch-size", "250", "--grid-columns", "12", "--npz", "--out", t("samples-nar")}});
    demo.stage("visualisation and reconstructions",
               {{"visualize", "--model", t("ar/transformer.safetensors"), "--tokenizer", tok, "--out", t("visualization.png")},
                {"reconstruct", "--tokenizer", t("tokenizer-phase1/tokenizer.safetensors"), "--tokenizer", tok, "--show",
                 "8", "--out", t("reconstructions.png")}});
    const std::string stats = t("test-stats.safetensors");
    demo.stage("evaluation", {},
               {"seqgan evaluate rfid --tokenizer " + t("tokenizer-phase1/tokenizer.safetensors"),
                "seqgan evaluate rfid --tokenizer " + tok, "seqgan fid-stats data:test --count -1 --out " + stats,
                "seqgan evaluate fid --ref " + stats + " --gen " + t("samples-ar/images") + " --count -1",
                "seqgan evaluate is --gen " + t("samples-ar/images") + " --count -1",
                "seqgan evaluate fid --ref " + stats + " --gen " + t("samples-nar/images") + " --count -1",
                "seqgan evaluate is --gen " + t("samples-nar/images") + " --count -1",
                "seqgan evaluate fid --ref " + stats + " --gen data:train --count 10000",
                "seqgan evaluate is --gen data:test --count -1"},
               [&] { evaluate_demo(dir, common); });
  } catch (const StageRunner::Interrupted& e) {
    std::cout << "demo: interrupted; run `seqgan demo --out " << dir << "` again to resume\n";
    return e.exit_code();
  }
  st["finished"] = "finished " + now_text();
  demo.save();
  const std::string report = report::write_demo_report(dir);
  std::cout << "demo: done; open " << report << "\n";
  return 0;
}

int run_report(const Args& args) {
  const std::string dir = args.positionals().at(0);
  SEQGAN_CHECK_HINT(fs::is_directory(dir), "pass the directory of a `seqgan demo` run", "'", dir, "' is not a directory");
  std::cout << "wrote " << report::write_demo_report(dir) << "\n";
  return 0;
}

}  // namespace

Command demo_command() {
  Command c;
  c.info.name = "demo";
  c.info.brief = "Train and show the whole system on Fashion-MNIST, with a report (about 23 minutes)";
  c.info.summary =
      "Train and show the whole system on Fashion-MNIST (about 23 minutes on 2 CPU cores): classifiers,\n"
      "tokenizer phases 1 and 2, AR and NAR transformers, samples, visualisation, evaluation and DIR/report.html.\n"
      "Interrupted (Ctrl-C), it resumes where it stopped when run again with the same --out.";
  c.option("--out", "DIR", "runs/demo", "run directory");
  c.option("--samples-per-class", "N", "100", "samples per class for the generation metrics");
  c.option("--set", "KEY=VALUE", "", "override one configuration value of every stage", true);
  c.option("--threads", "N", "0", "CPU threads (0: all cores)");
  c.option("--device", "DEV", "auto", "auto, cpu or cuda");
  c.run = run_demo;
  return c;
}

Command report_command() {
  Command c;
  c.info.name = "report";
  c.info.summary = "Rebuild DIR/report.html of a `seqgan demo` run from the files it holds";
  c.positional("DIR");
  c.run = run_report;
  return c;
}

}  // namespace seqgan::cli
