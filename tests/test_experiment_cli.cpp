// `seqgan experiment` end to end on tiny models: every arm of the codebook experiment (the two
// extra quantisers included) trains, samples and is measured; the results and the report are
// written; a second invocation skips every finished stage.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "remove_tree.h"
#include "cli_capture.h"
#include "seqgan/checkpoint.h"
#include "seqgan/cli.h"
#include "tiny.h"

using namespace seqgan;

namespace {

test::CliResult cli(const std::vector<std::string>& args) { return test::run_cli_captured(args); }

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

size_t count(const std::string& text, const std::string& part) {
  size_t n = 0;
  for (auto p = text.find(part); p != std::string::npos; p = text.find(part, p + 1)) ++n;
  return n;
}

// The tiny tokenizer of tiny.h and a one-layer transformer, as --set arguments.
std::vector<std::string> tiny_settings() {
  std::vector<std::string> sets{"data.resolution=16",         "data.num_workers=1",
                                "tokenizer.base_channels=8",  "tokenizer.channel_mult=[1,2]",
                                "tokenizer.num_res_blocks=1", "tokenizer.mid_res_blocks=1",
                                "tokenizer.norm_groups=4",    "tokenizer.code_dim=8",
                                "tokenizer.codebook_size=16", "discriminator.base_channels=8",
                                "discriminator.max_channels=16", "train_tokenizer.batch_size=8",
                                "train_tokenizer.iterations=4", "discriminator.start_iter=2",
                                "transformer.layers=1",
                                "transformer.width=32",       "transformer.heads=2",
                                "transformer.mlp=64",         "eval.batch_size=50"};
  for (const std::string t : {"train_ar", "train_nar"})
    for (const std::string s : {".iterations=3", ".batch_size=8", ".warmup=0", ".val_every=2", ".checkpoint_every=3"})
      sets.push_back(t + s);
  std::vector<std::string> args;
  for (const auto& s : sets) args.insert(args.end(), {"--set", s});
  return args;
}

// Stand-in loss and evaluation networks where an experiment in DIR looks for its classifiers.
void stand_in_classifiers(const std::string& dir) {
  for (const std::string role : {"loss", "eval"}) {
    std::filesystem::create_directories(dir + "/classifiers/classifier-" + role);
    std::filesystem::rename(test::stand_in_loss_network(dir), dir + "/classifiers/classifier-" + role + "/classifier.safetensors");
  }
}

}  // namespace

TEST(ExperimentCli, CodebookArmsRunReportAndResume) {
  const std::string dir = test::temp_dir("experiment");
  stand_in_classifiers(dir);
  std::vector<std::string> args{"experiment", "codebook", "--out", dir, "--seeds", "3", "--train-images", "64",
                                "--samples-per-class", "2", "--eval-images", "100", "--threads", "1"};
  const auto tiny = tiny_settings();
  args.insert(args.end(), tiny.begin(), tiny.end());
  auto r = cli(args);
  ASSERT_EQ(r.code, 0) << r.out << r.err;

  const std::string exp = dir + "/codebook";
  const auto results = nlohmann::json::parse(slurp(exp + "/results.json"));
  ASSERT_EQ(results.size(), 4u);
  std::map<std::string, nlohmann::json> by_arm;
  for (const auto& x : results) by_arm[x["arm"].get<std::string>()] = x;
  for (const std::string arm : {"plain", "factorized", "kmeans", "entropy"}) {
    ASSERT_TRUE(by_arm.count(arm)) << arm;
    const auto& x = by_arm[arm];
    EXPECT_EQ(x["seed"].get<int64_t>(), 3);
    for (const char* key : {"rfid", "psnr_db", "ar_fid", "nar_fid", "ar_is", "nar_is", "ar_val_loss", "nar_val_loss"})
      EXPECT_TRUE(std::isfinite(x[key].get<double>()) && x[key].get<double>() >= 0) << arm << " " << key;
    EXPECT_GT(x["codebook_usage"].get<double>(), 0.0) << arm;
    EXPECT_LE(x["codebook_usage"].get<double>(), 1.0) << arm;
    EXPECT_EQ(x["eval_images"].get<int64_t>(), 100);
    EXPECT_EQ(x["ar_samples"].get<int64_t>(), 20);  // 2 per class, 10 classes
    EXPECT_GE(x["ar_top1"].get<double>(), 0.0);
  }
  // The F&N arm has the codebook K x 8 of the base config; the others keep K.
  EXPECT_EQ(by_arm["factorized"]["codebook_size"].get<int64_t>(), 128);
  EXPECT_EQ(by_arm["plain"]["codebook_size"].get<int64_t>(), 16);
  // The k-means arm re-estimated its codebook (logged by the trainer).
  EXPECT_NE(slurp(exp + "/kmeans/seed-3/tokenizer/metrics.jsonl").find("kmeans_moved"), std::string::npos);
  EXPECT_EQ(slurp(exp + "/plain/seed-3/tokenizer/metrics.jsonl").find("kmeans_moved"), std::string::npos);

  const std::string html = slurp(exp + "/report.html");
  for (const char* label : {"no regulariser (VQGAN)", "+ F&amp;N", "+ k-means", "+ H(D) entropy regulariser"})
    EXPECT_NE(html.find(label), std::string::npos) << label;
  EXPECT_EQ(count(html, "data:image/png;base64,"), 8u);  // a visualisation and a sample grid per arm
  EXPECT_EQ(html.find("class='missing'"), std::string::npos);
  EXPECT_NE(slurp(exp + "/results.md").find("| + F&N (dim / 8, K x 8) | 1 |"), std::string::npos);

  // Again: every stage finished before, nothing is trained, the results stay.
  r = cli(args);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(count(r.out, "finished before, skipped"), 4u * 7u + 1u) << r.out;
  EXPECT_EQ(nlohmann::json::parse(slurp(exp + "/results.json")), results);
  seqgan::test::remove_tree(dir);
}

// The guidance study on tiny models: every sample set (5 scales x 2 weights x 2 transformers,
// and rejection at 50% and 25%) is drawn and measured, the report shows the grids, and a second
// invocation trains and samples nothing.
TEST(ExperimentCli, GuidanceSetsRunReportAndResume) {
  const std::string dir = test::temp_dir("experiment-guidance");
  stand_in_classifiers(dir);
  std::vector<std::string> args{"experiment", "guidance", "--out", dir, "--seeds", "3", "--train-images", "64",
                                "--samples-per-class", "2", "--eval-images", "100", "--threads", "1"};
  const auto tiny = tiny_settings();
  args.insert(args.end(), tiny.begin(), tiny.end());
  auto r = cli(args);
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  const std::string exp = dir + "/guidance";
  const auto results = nlohmann::json::parse(slurp(exp + "/results.json"));
  ASSERT_EQ(results.size(), 1u);
  const auto& sets = results[0]["sets"];
  ASSERT_EQ(sets.size(), 24u);
  std::map<double, int> rejection;
  for (const auto& x : sets) {
    EXPECT_TRUE(std::isfinite(x["fid"].get<double>()) && x["fid"].get<double>() >= 0) << x;
    EXPECT_GE(x["is"].get<double>(), 1.0 - 1e-9) << x;
    EXPECT_EQ(x["samples"].get<int64_t>(), 20) << x;
    const double f = x["accept_fraction"].get<double>();
    EXPECT_DOUBLE_EQ(x["acceptance_rate"].get<double>(), f) << x;  // 20 of 40, 20 of 80
    ++rejection[f];
  }
  EXPECT_EQ(rejection[1.0], 20);
  EXPECT_EQ(rejection[0.5], 2);
  EXPECT_EQ(rejection[0.25], 2);
  // The models carry the null condition and the average; rejection drew 4 times the count.
  const std::string run = exp + "/cfg/seed-3";
  for (const std::string kind : {"ar", "nar"}) {
    const auto meta = read_checkpoint_meta(run + "/" + kind + "/transformer.safetensors");
    EXPECT_EQ(meta.extra.count("null_class"), 1u) << kind;
    EXPECT_EQ(meta.extra.count("ema_decay"), 1u) << kind;
  }
  EXPECT_EQ(nlohmann::json::parse(slurp(run + "/samples-ar-ema-g1-accept0.25/rejection.json"))["drawn"], 80);
  const std::string html = slurp(exp + "/report.html");
  EXPECT_EQ(count(html, "data:image/png;base64,"), 8u);  // 4 grids per transformer
  EXPECT_EQ(html.find("class='missing'"), std::string::npos);
  const std::string md = slurp(exp + "/results.md");
  EXPECT_NE(md.find("## AR against the guidance scale"), std::string::npos);
  EXPECT_NE(md.find("| NAR | 0.25 | 0.250 |"), std::string::npos) << md;

  r = cli(args);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(count(r.out, "finished before, skipped"), 1u + 4u + 24u + 1u) << r.out;  // statistics, training, sets, evaluation
  EXPECT_EQ(nlohmann::json::parse(slurp(exp + "/results.json")), results);
  seqgan::test::remove_tree(dir);
}

TEST(ExperimentCli, UnknownExperimentAndBadSeedsAreUsageErrors) {
  auto r = cli({"experiment", "alpha", "--out", "/nonexistent"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("alpha-sweep, decoder, codebook, perceptual-layers, method, budget or guidance"), std::string::npos)
      << r.err;
  r = cli({"experiment", "decoder", "--seeds", "1,x", "--out", "/nonexistent"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("'x' is not an integer"), std::string::npos) << r.err;
}

// The method experiment on tiny models: the two phase-2 arms continue the phase-1 tokenizers of
// their arms (encoder and codebook unchanged, checked by a stage), share those arms' tokens and
// transformers, and the report marks each of the paper's claims.
TEST(ExperimentCli, MethodArmsContinuePhase1AndMarkTheClaims) {
  const std::string dir = test::temp_dir("experiment-method");
  stand_in_classifiers(dir);
  std::vector<std::string> args{"experiment", "method", "--out", dir, "--seeds", "3", "--train-images", "64",
                                "--samples-per-class", "2", "--eval-images", "100", "--threads", "1"};
  const auto tiny = tiny_settings();
  args.insert(args.end(), tiny.begin(), tiny.end());
  for (const std::string s : {"phase2.batch_size=8", "phase2.iterations=2", "phase2.checkpoint_every=2", "phase2.image_every=2"})
    args.insert(args.end(), {"--set", s});
  auto r = cli(args);
  ASSERT_EQ(r.code, 0) << r.out << r.err;

  const std::string exp = dir + "/method";
  std::map<std::string, nlohmann::json> by_arm;
  for (const auto& x : nlohmann::json::parse(slurp(exp + "/results.json"))) by_arm[x["arm"].get<std::string>()] = x;
  ASSERT_EQ(by_arm.size(), 5u);
  // Phase 2 on phase 1's codes: the same transformers, hence the same validation losses; another decoder.
  for (const auto& [two, one] : std::vector<std::pair<std::string, std::string>>{{"seqgan", "phase1"}, {"control", "alpha0-reg"}}) {
    EXPECT_EQ(by_arm[two]["ar_val_loss"], by_arm[one]["ar_val_loss"]) << two;
    EXPECT_EQ(by_arm[two]["nar_val_loss"], by_arm[one]["nar_val_loss"]) << two;
    EXPECT_NE(by_arm[two]["psnr_db"], by_arm[one]["psnr_db"]) << two;
    EXPECT_FALSE(std::filesystem::exists(exp + "/" + two + "/seed-3/ar")) << two;
    const auto meta = nlohmann::json::parse(slurp(exp + "/" + two + "/seed-3/stages.json"));
    EXPECT_NE(meta.dump().find("--phase 2 --init " + exp + "/" + one + "/seed-3/tokenizer/tokenizer.safetensors"),
              std::string::npos)
        << meta.dump();
    EXPECT_NE(meta.dump().find("codes unchanged"), std::string::npos);
  }
  const std::string md = slurp(exp + "/results.md");
  EXPECT_NE(md.find("## The paper's claims"), std::string::npos);
  EXPECT_EQ(count(md, "(one seed)**") + count(md, "within the seed spread**"), 16u) << md;
  // The budget line names each key once, with the value the runs took (the test's, after the method's).
  EXPECT_EQ(count(md, "train_tokenizer.iterations="), 1u) << md;
  EXPECT_NE(md.find("train_tokenizer.iterations=4 "), std::string::npos) << md;
  EXPECT_EQ(count(md, "phase2.iterations="), 1u) << md;
  EXPECT_NE(md.find("phase2.iterations=2 "), std::string::npos) << md;
  EXPECT_NE(slurp(exp + "/report.html").find("The paper's claims"), std::string::npos);

  // An arm the experiment lacks is refused before anything is trained.
  const std::string fresh = test::temp_dir("experiment-method-arms");
  r = cli({"experiment", "method", "--arms", "seqgan,vqgan2", "--out", fresh});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("no arm 'vqgan2' (its arms: vqgan, alpha0-reg, phase1, seqgan, control)"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(fresh + "/classifiers"));
  seqgan::test::remove_tree(fresh);
  seqgan::test::remove_tree(dir);
}
