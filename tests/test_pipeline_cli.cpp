// The token pipeline through the command line: tokenize, train-transformer (AR and NAR), sample,
// visualize and a two-tokenizer reconstruct, on tiny models.
#include <gtest/gtest.h>

#include <filesystem>

#include "remove_tree.h"
#include "cli_capture.h"
#include "seqgan/cli.h"
#include "tiny.h"
#include "eval/classifier.h"
#include "tokenizer/tokens.h"
#include "train/tokenizer_trainer.h"

using namespace seqgan;

namespace {

test::CliResult cli(const std::vector<std::string>& args) { return test::run_cli_captured(args); }

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

class Pipeline : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir = new std::string(test::temp_dir("pipeline"));
    TokenizerTrainOptions o;
    o.config = test::tiny_tokenizer_config(test::stand_in_loss_network(*dir));
    o.config.train_tokenizer.iterations = 2;
    o.run_dir = *dir + "/tok";
    train_tokenizer(o);
  }
  static void TearDownTestSuite() {
    seqgan::test::remove_tree(*dir);
    delete dir;
  }
  static std::string tokenizer() { return *dir + "/tok/tokenizer.safetensors"; }
  static std::vector<std::string> tiny_transformer(const std::string& kind) {
    const std::string t = "train_" + kind;
    return {"--threads", "2", "--set", "transformer.layers=1", "--set", "transformer.width=32", "--set",
            "transformer.heads=2", "--set", "transformer.mlp=64", "--set", t + ".iterations=3", "--set",
            t + ".batch_size=8", "--set", t + ".val_fraction=0.25", "--set", t + ".log_every=1"};
  }
  static std::string* dir;
};
std::string* Pipeline::dir = nullptr;

std::vector<std::string> operator+(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

}  // namespace

TEST_F(Pipeline, TokenizeTrainSampleVisualize) {
  const std::string tokens = *dir + "/tokens.safetensors";
  auto r = cli({"tokenize", "--tokenizer", tokenizer(), "--split", "test", "--limit", "48", "--out", tokens, "--threads", "2"});
  ASSERT_EQ(r.code, 0) << r.err;
  const auto file = load_tokens(tokens);
  EXPECT_EQ(file.indices.sizes(), (std::vector<int64_t>{48, 8, 8}));

  for (const std::string kind : {"ar", "nar"}) {
    const std::string run = *dir + "/" + kind;
    r = cli(std::vector<std::string>{"train-transformer", "--kind", kind, "--tokens", tokens, "--out", run} + tiny_transformer(kind));
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_TRUE(contains(r.out, "finished at step 3")) << r.out;
    const std::string out = *dir + "/samples-" + kind;
    r = cli({"sample", "--model", run + "/transformer.safetensors", "--tokenizer", tokenizer(), "--classes", "0,3",
             "--per-class", "2", "--out", out, "--threads", "2", "--seed", "5"});
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_TRUE(std::filesystem::exists(out + "/grid.png"));
    EXPECT_TRUE(std::filesystem::exists(out + "/images/000003.png"));
    const auto sampled = load_tokens(out + "/tokens.safetensors");
    EXPECT_TRUE(at::equal(sampled.labels, at::tensor({0, 0, 3, 3}, at::kLong)));
    EXPECT_EQ(sampled.indices.sizes(), (std::vector<int64_t>{4, 8, 8}));
    // The same seed gives the same tokens.
    r = cli({"sample", "--model", run + "/transformer.safetensors", "--tokenizer", tokenizer(), "--classes", "0,3",
             "--per-class", "2", "--out", out + "-again", "--threads", "2", "--seed", "5"});
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_TRUE(at::equal(load_tokens(out + "-again/tokens.safetensors").indices, sampled.indices)) << kind;
  }

  r = cli({"visualize", "--model", *dir + "/ar/transformer.safetensors", "--tokenizer", tokenizer(), "--count", "16",
           "--show", "2", "--out", *dir + "/vis.png", "--threads", "2"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "top-1 accuracy")) << r.out;
  EXPECT_TRUE(std::filesystem::exists(*dir + "/vis.png"));

  // Mistakes name the problem.
  r = cli({"visualize", "--model", *dir + "/nar/transformer.safetensors", "--tokenizer", tokenizer(), "--out",
           *dir + "/x.png", "--threads", "2"});
  EXPECT_NE(r.code, 0);
  EXPECT_TRUE(contains(r.err, "NAR")) << r.err;
  r = cli({"sample", "--model", *dir + "/ar/transformer.safetensors", "--tokenizer", tokenizer(), "--classes", "12",
           "--out", *dir + "/bad", "--threads", "2"});
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(contains(r.err, "out of range")) << r.err;
  r = cli({"sample", "--model", tokenizer(), "--tokenizer", tokenizer(), "--out", *dir + "/bad", "--threads", "2"});
  EXPECT_NE(r.code, 0);
  EXPECT_TRUE(contains(r.err, "not a transformer")) << r.err;
}

TEST_F(Pipeline, ReconstructComparesTokenizers) {
  const auto r = cli({"reconstruct", "--tokenizer", tokenizer(), "--tokenizer", tokenizer(), "--count", "20", "--show",
                      "8", "--out", *dir + "/recon.png", "--threads", "2"});
  ASSERT_EQ(r.code, 0) << r.err;
  // One line per tokenizer with the same figures, since it is the same file twice.
  const auto first = r.out.find("PSNR"), second = r.out.find("PSNR", first + 1);
  ASSERT_NE(second, std::string::npos) << r.out;
  EXPECT_TRUE(contains(r.out, "codebook usage")) << r.out;
  const auto line = [&](size_t at) { return r.out.substr(at, r.out.find('\n', at) - at); };
  EXPECT_EQ(line(first), line(second));
  EXPECT_TRUE(contains(r.out, "measured on 20 test images")) << r.out;
  EXPECT_TRUE(std::filesystem::exists(*dir + "/recon.png"));
}

TEST_F(Pipeline, EvaluateNamesItsNetwork) {
  // An evaluation network of another architecture than the loss network (random weights: this
  // checks the commands, not the numbers).
  ClassifierArch arch;
  arch.kind = "resnet";
  arch.width = 4;
  arch.resolution = 16;
  torch::manual_seed(7);
  save_classifier(*dir + "/eval-net.safetensors", Classifier(arch), "{}", {{"role", "eval"}});
  const std::vector<std::string> net{"--threads", "2", "--set", "data.resolution=16", "--set",
                                     "eval.feature_network=classifier", "--set",
                                     "eval.feature_weights=" + *dir + "/eval-net.safetensors"};
  auto r = cli(std::vector<std::string>{"evaluate", "rfid", "--tokenizer", tokenizer(), "--count", "24", "--json"} + net);
  ASSERT_EQ(r.code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["count"], 24);
  EXPECT_TRUE(contains(j["network"].get<std::string>(), "classifier resnet")) << r.out;
  EXPECT_GE(j["rfid"].get<double>(), 0.0);
  EXPECT_GT(j["psnr_db"].get<double>(), 0.0);
  EXPECT_EQ(j["codebook_size"], 16);

  r = cli(std::vector<std::string>{"evaluate", "usage", "--tokenizer", tokenizer(), "--count", "24", "--json"} + net);
  ASSERT_EQ(r.code, 0) << r.err;
  j = nlohmann::json::parse(r.out);
  int64_t total = 0;
  for (const auto& v : j["histogram"]) total += v.get<int64_t>();
  EXPECT_EQ(total, 24 * 8 * 8);  // one code per token of every image (8x8 tokens)
  EXPECT_FALSE(j.contains("rfid"));

  // Statistics of the test images against the same images: distance 0.
  const std::string stats = *dir + "/test-stats.safetensors";
  r = cli(std::vector<std::string>{"fid-stats", "data:test", "--count", "30", "--out", stats} + net);
  ASSERT_EQ(r.code, 0) << r.err;
  r = cli(std::vector<std::string>{"evaluate", "fid", "--ref", stats, "--gen", "data:test", "--count", "30", "--json"} + net);
  ASSERT_EQ(r.code, 0) << r.err;
  j = nlohmann::json::parse(r.out);
  EXPECT_NEAR(j["frechet_distance"].get<double>(), 0.0, 1e-6);
  EXPECT_EQ(j["gen"]["count"], 30);
  EXPECT_TRUE(contains(j["network"].get<std::string>(), "classifier resnet")) << r.out;
  r = cli(std::vector<std::string>{"evaluate", "fid", "--ref", "data:train", "--gen", stats, "--count", "30", "--json"} + net);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_GT(nlohmann::json::parse(r.out)["frechet_distance"].get<double>(), 0.0);

  r = cli(std::vector<std::string>{"evaluate", "is", "--gen", "data:test", "--count", "20", "--splits", "2"} + net);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "IS [classifier resnet")) << r.out;

  // The perceptual-loss network is refused as the evaluation network.
  save_classifier(*dir + "/loss-role.safetensors", Classifier(arch), "{}", {{"role", "loss"}});
  r = cli({"evaluate", "is", "--gen", "data:test", "--count", "20", "--threads", "2", "--set",
           "eval.feature_network=classifier", "--set", "eval.feature_weights=" + *dir + "/loss-role.safetensors"});
  EXPECT_NE(r.code, 0);
  EXPECT_TRUE(contains(r.err, "perceptual-loss network")) << r.err;
  // Missing Inception weights name the converter.
  r = cli({"evaluate", "is", "--gen", "data:test", "--count", "20", "--threads", "2", "--set",
           "eval.feature_network=inception", "--set", "eval.feature_weights=" + *dir + "/none.safetensors"});
  EXPECT_NE(r.code, 0);
  EXPECT_TRUE(contains(r.err, "convert_inception.py")) << r.err;
  r = cli(std::vector<std::string>{"evaluate", "fidd"} + net);
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(contains(r.err, "unknown metric")) << r.err;
}
