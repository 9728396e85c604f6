// The token pipeline through the command line: tokenize, train-transformer (AR and NAR), sample,
// visualize and a two-tokenizer reconstruct, on tiny models.
#include <gtest/gtest.h>

#include <filesystem>
#include <sstream>

#include "remove_tree.h"
#include "cli_capture.h"
#include "seqgan/cli.h"
#include "tiny.h"
#include "features/classifier.h"
#include "io/npz.h"
#include "python_fixtures.h"
#include "seqgan/evaluate.h"
#include "seqgan/image.h"
#include "seqgan/models.h"
#include "seqgan/safetensors.h"
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
  // An evaluation network of another architecture than the loss network, with random weights:
  // tests of the commands, not of the numbers.
  static std::string eval_network() {
    const std::string path = *dir + "/eval-net.safetensors";
    if (!std::filesystem::exists(path)) {
      ClassifierArch arch;
      arch.kind = "resnet";
      arch.width = 4;
      arch.resolution = 16;
      torch::manual_seed(7);
      save_classifier(path, Classifier(arch), "{}", {{"role", "eval"}});
    }
    return path;
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
             "--per-class", "2", "--out", out + "-again", "--threads", "2", "--seed", "5", "--npz"});
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_TRUE(at::equal(load_tokens(out + "-again/tokens.safetensors").indices, sampled.indices)) << kind;
    // --npz: ADM's sample batch holds the same pixels as the PNGs (grey repeated to RGB) and the labels.
    const auto batch = npz::load(out + "-again/samples.npz");
    ASSERT_TRUE(batch.count("arr_0") && batch.count("arr_1"));
    EXPECT_EQ(batch.at("arr_0").sizes(), (std::vector<int64_t>{4, 16, 16, 3}));
    EXPECT_TRUE(at::equal(batch.at("arr_1"), at::tensor({0, 0, 3, 3}, at::kLong)));
    const Image png = read_image(out + "-again/images/000003.png", 1);
    const at::Tensor grey = at::from_blob(const_cast<uint8_t*>(png.pixels.data()), {16, 16}, at::kByte);
    for (int c = 0; c < 3; ++c) EXPECT_TRUE(at::equal(batch.at("arr_0")[3].select(2, c), grey)) << kind << " channel " << c;
    EXPECT_FALSE(std::filesystem::exists(out + "/samples.npz"));  // only when asked

    // The embedding API (seqgan/models.h) gives the command's codes and pixels.
    const auto generator = GeneratorModel::load(run + "/transformer.safetensors");
    SampleRequest request;
    request.classes = {0, 0, 3, 3};
    request.seed = 5;
    EXPECT_TRUE(at::equal(generator.sample(request), sampled.indices)) << kind;
    EXPECT_EQ(generator.autoregressive(), kind == "ar");
    const auto tok = TokenizerModel::load(tokenizer());
    EXPECT_EQ(tok.decode(sampled.indices)[3].pixels, png.pixels) << kind;
    EXPECT_EQ(tok.encode({png}).sizes(), (std::vector<int64_t>{1, 8, 8}));
    request.classes = {12};
    EXPECT_THROW(generator.sample(request), Error);
  }

  // The example program, built against the public headers only, runs on these models.
  // The build tree's, and those that scripts/test.sh built against the installed package (with
  // find_package(seqgan) and with pkg-config), named in SEQGAN_INSTALLED_EMBED_EXAMPLES.
  std::vector<std::string> examples{SEQGAN_EMBED_EXAMPLE};
  if (const char* installed = std::getenv("SEQGAN_INSTALLED_EMBED_EXAMPLES")) {
    std::stringstream list(installed);
    for (std::string path; std::getline(list, path, ':');)
      if (!path.empty()) examples.push_back(path);
  }
  for (size_t i = 0; i < examples.size(); ++i) {
    ASSERT_TRUE(std::filesystem::exists(examples[i])) << examples[i];
    const std::string embed_out = *dir + "/embed-" + std::to_string(i);
    std::filesystem::create_directories(embed_out);
    const std::string cmd = examples[i] + " " + tokenizer() + " " + *dir + "/ar/transformer.safetensors " + *dir +
                            "/samples-ar/images/000001.png " + embed_out + " > " + embed_out + "/log.txt 2>&1";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << examples[i] << "\n" << test::read_file_text(embed_out + "/log.txt");
    EXPECT_TRUE(contains(test::read_file_text(embed_out + "/log.txt"), "into 8x8 codes of 16")) << examples[i];
    for (const char* f : {"reconstruction.png", "sample-0.png", "sample-3.png"})
      EXPECT_TRUE(std::filesystem::exists(embed_out + "/" + f)) << examples[i] << ": " << f;
  }

  // The tokenizer metrics in one command, on a folder of images (the AR samples).
  const std::vector<std::string> net{"--threads", "2", "--set", "data.resolution=16", "--set",
                                     "eval.feature_network=classifier", "--set", "eval.feature_weights=" + eval_network()};
  r = cli(std::vector<std::string>{"evaluate", "tokenizer", "--tokenizer", tokenizer(), "--images", *dir + "/samples-ar/images",
           "--json"} + net);
  ASSERT_EQ(r.code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["count"], 4);
  for (const char* k : {"psnr_db", "ssim", "rfid", "codebook_usage", "perplexity"}) EXPECT_TRUE(j[k].is_number()) << k << r.out;
  EXPECT_TRUE(j["lpips"].is_null()) << r.out;  // no eval.lpips_weights
  EXPECT_LE(j["ssim"].get<double>(), 1.0);
  {
    // The public API measures the same.
    Config c = make_preset("fmnist");
    c.eval.feature_network = "classifier";
    c.eval.feature_weights = eval_network();
    const TokenizerEvaluation e = evaluate_tokenizer(c, tokenizer(), *dir + "/samples-ar/images");
    EXPECT_EQ(e.count, 4);
    EXPECT_DOUBLE_EQ(e.psnr, j["psnr_db"].get<double>());
    EXPECT_DOUBLE_EQ(e.ssim, j["ssim"].get<double>());
    EXPECT_DOUBLE_EQ(e.rfid, j["rfid"].get<double>());
    EXPECT_DOUBLE_EQ(e.perplexity, j["perplexity"].get<double>());
    EXPECT_EQ(e.codes_used, j["codes_used"].get<int64_t>());
    EXPECT_EQ(e.lpips, -1.0);
  }
  r = cli(std::vector<std::string>{"evaluate", "tokenizer", "--tokenizer", tokenizer(), "--count", "8"} + net);
  ASSERT_EQ(r.code, 0) << r.err;
  for (const char* part : {"rFID: ", "PSNR: ", "SSIM: ", "LPIPS: not measured", "codebook usage: ", "weights sha256:",
                           "images: 8 of data:test"})
    EXPECT_TRUE(contains(r.out, part)) << part << "\n" << r.out;

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
  EXPECT_TRUE(contains(r.out, "IS: ")) << r.out;
  EXPECT_TRUE(contains(r.out, "network: classifier resnet")) << r.out;

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

namespace {

// The SHA-256 of a file as coreutils' sha256sum prints it.
std::string sha256sum(const std::string& path) {
  const std::string out = path + ".sha256";
  EXPECT_EQ(std::system(("sha256sum '" + path + "' > '" + out + "'").c_str()), 0);
  return test::read_file_text(out).substr(0, 64);
}

}  // namespace

TEST_F(Pipeline, AdmEvaluationNamesWhatItMeasured) {
  ClassifierArch arch;
  arch.kind = "resnet";
  arch.width = 4;
  arch.resolution = 16;
  torch::manual_seed(7);
  const std::string weights = *dir + "/adm-eval-net.safetensors";
  save_classifier(weights, Classifier(arch), "{}", {{"role", "eval"}});
  const std::vector<std::string> net{"--threads", "2", "--set", "data.resolution=16", "--set",
                                     "eval.feature_network=classifier", "--set", "eval.feature_weights=" + weights};
  // A reference batch in ADM's layout, and a sample batch of other images.
  const std::string ref = *dir + "/ref.npz", gen = *dir + "/gen.npz";
  auto r = cli(std::vector<std::string>{"fid-stats", "data:test", "--count", "30", "--out", ref} + net);
  ASSERT_EQ(r.code, 0) << r.err;
  const auto arrays = npz::load(ref);
  for (const char* k : {"mu", "sigma", "mu_s", "sigma_s", "arr_0", "seqgan_provenance"}) EXPECT_TRUE(arrays.count(k)) << k;
  EXPECT_EQ(arrays.at("arr_0").sizes(), (std::vector<int64_t>{30, 16, 16, 3}));
  EXPECT_EQ(arrays.at("arr_0").scalar_type(), at::kByte);
  EXPECT_EQ(arrays.at("mu").size(0), 32);  // the classifier's pooled features: 8 x width
  EXPECT_EQ(arrays.at("mu_s").size(0), 7 * 4 * 4);  // relu3_3 of 16 px images: 7 channels of 4x4
  r = cli(std::vector<std::string>{"fid-stats", "data:train", "--count", "30", "--out", gen} + net);
  ASSERT_EQ(r.code, 0) << r.err;

  r = cli(std::vector<std::string>{"evaluate", "adm", "--ref", ref, "--gen", gen, "--json"} + net);
  ASSERT_EQ(r.code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_GT(j["fid"].get<double>(), 0.0);
  EXPECT_GT(j["sfid"].get<double>(), 0.0);
  for (const char* k : {"precision", "recall"}) EXPECT_TRUE(j[k].get<double>() >= 0 && j[k].get<double>() <= 1) << k;
  EXPECT_GE(j["inception_score"].get<double>(), 1.0);
  EXPECT_EQ(j["network_sha256"], sha256sum(weights));
  EXPECT_EQ(j["ref"]["file_sha256"], sha256sum(ref));
  EXPECT_EQ(j["ref"]["count"], 30);
  EXPECT_TRUE(contains(j["network"].get<std::string>(), "classifier resnet")) << r.out;
  EXPECT_TRUE(j["warnings"].empty()) << r.out;
  {
    // The public API measures the same.
    Config c = make_preset("fmnist");
    for (const std::string s : {"data.resolution=16", "eval.feature_network=classifier"}) config_apply_override(c, s);
    c.eval.feature_weights = weights;
    const SampleScores s = evaluate_samples(c, ref, gen);
    EXPECT_DOUBLE_EQ(s.fid, j["fid"].get<double>());
    EXPECT_DOUBLE_EQ(s.sfid, j["sfid"].get<double>());
    EXPECT_DOUBLE_EQ(s.inception_score, j["inception_score"].get<double>());
    EXPECT_DOUBLE_EQ(s.precision, j["precision"].get<double>());
    EXPECT_DOUBLE_EQ(s.recall, j["recall"].get<double>());
    EXPECT_EQ(s.network_sha256, sha256sum(weights));
    EXPECT_EQ(s.reference_count, 30);
    EXPECT_TRUE(s.warnings.empty());
  }

  // The reference against itself: distances 0, every feature inside the other set's balls.
  r = cli(std::vector<std::string>{"evaluate", "adm", "--ref", ref, "--gen", ref, "--json"} + net);
  ASSERT_EQ(r.code, 0) << r.err;
  j = nlohmann::json::parse(r.out);
  EXPECT_NEAR(j["fid"].get<double>(), 0.0, 1e-6);
  EXPECT_NEAR(j["sfid"].get<double>(), 0.0, 1e-6);
  EXPECT_EQ(j["precision"], 1.0);
  EXPECT_EQ(j["recall"], 1.0);

  // The text names the network, its hash, both sources and their preprocessing.
  r = cli(std::vector<std::string>{"evaluate", "adm", "--ref", ref, "--gen", "data:train", "--count", "30"} + net);
  ASSERT_EQ(r.code, 0) << r.err;
  for (const char* part : {"Inception Score:", "FID:", "sFID:", "Precision:", "Recall:", "network: classifier resnet",
                           "weights sha256:", "ref: ", "gen: data:train", "preprocessing: as stored"})
    EXPECT_TRUE(contains(r.out, part)) << part << "\n" << r.out;
  // The reference's images went in as stored; the split's were padded/resized: a warning says so.
  EXPECT_TRUE(contains(r.err, "the images were prepared differently")) << r.err;

  // Stand-alone metrics on stored statistics and features.
  r = cli(std::vector<std::string>{"evaluate", "sfid", "--ref", ref, "--gen", gen, "--json"} + net);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_GT(nlohmann::json::parse(r.out)["frechet_distance"].get<double>(), 0.0);

  // Bad batches: clear errors naming the array and the fix.
  npz::save(*dir + "/float.npz", {{"arr_0", at::rand({2, 8, 8, 3})}}, false);
  r = cli(std::vector<std::string>{"evaluate", "adm", "--ref", ref, "--gen", *dir + "/float.npz"} + net);
  EXPECT_NE(r.code, 0);
  EXPECT_TRUE(contains(r.err, "arr_0 holds Float values; ADM batches hold uint8 images")) << r.err;
  npz::save(*dir + "/five.npz", {{"arr_0", at::zeros({2, 8, 8, 5}, at::kByte)}}, false);
  r = cli(std::vector<std::string>{"evaluate", "adm", "--ref", ref, "--gen", *dir + "/five.npz"} + net);
  EXPECT_NE(r.code, 0);
  EXPECT_TRUE(contains(r.err, "expected images [N, H, W, 3]")) << r.err;
  npz::save(*dir + "/tiny.npz", {{"arr_0", at::zeros({2, 1, 1, 3}, at::kByte)}}, false);
  r = cli(std::vector<std::string>{"evaluate", "adm", "--ref", ref, "--gen", *dir + "/tiny.npz"} + net);
  EXPECT_NE(r.code, 0);
  EXPECT_TRUE(contains(r.err, "arr_0 has shape [2, 1, 1, 3], which holds no usable images")) << r.err;
  // Images of another size than the reference's are measured, with a warning that says so.
  npz::save(*dir + "/big.npz", {{"arr_0", arrays.at("arr_0").repeat_interleave(2, 1).repeat_interleave(2, 2).contiguous()}}, false);
  r = cli(std::vector<std::string>{"evaluate", "adm", "--ref", ref, "--gen", *dir + "/big.npz"} + net);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(contains(r.err, "the images differ in size: reference 16x16, generated 32x32")) << r.err;
  npz::save(*dir + "/empty.npz", {{"labels", at::zeros({2}, at::kLong)}}, false);
  r = cli(std::vector<std::string>{"evaluate", "adm", "--ref", ref, "--gen", *dir + "/empty.npz"} + net);
  EXPECT_NE(r.code, 0);
  EXPECT_TRUE(contains(r.err, "holds neither arr_0 images nor `features` (members: labels)")) << r.err;
  // A safetensors file that is not seqgan's statistics says what it lacks, not "train a classifier".
  r = cli(std::vector<std::string>{"evaluate", "fid", "--ref", weights, "--gen", gen} + net);
  EXPECT_NE(r.code, 0);
  EXPECT_TRUE(contains(r.err, "is a safetensors file but not seqgan feature statistics: its metadata says kind 'classifier'"))
      << r.err;
  EXPECT_FALSE(contains(r.err, "train-classifier")) << r.err;
}

TEST_F(Pipeline, PairedMetricsAndFeatureFilesMatchPythonReferences) {
  const std::string fx =
      test::python_fixture_dir("adm-metrics", {"adm_metric_fixtures.py", "weights_io.py"});
  ASSERT_FALSE(fx.empty());
  const auto t = safetensors::load(fx + "/expected.safetensors").tensors;
  // Precision and recall of feature files (np.savez) need no network at all.
  auto r = cli({"evaluate", "pr", "--ref", fx + "/features.npz", "--gen", fx + "/samples.npz", "--json", "--threads", "2"});
  ASSERT_EQ(r.code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_DOUBLE_EQ(j["precision"].get<double>(), t.at("pr.precision").item<double>());
  EXPECT_DOUBLE_EQ(j["recall"].get<double>(), t.at("pr.recall").item<double>());
  // FID of the same feature files against numpy's fit.
  r = cli({"evaluate", "fid", "--ref", fx + "/features.npz", "--gen", fx + "/samples.npz", "--json", "--threads", "2"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_GT(nlohmann::json::parse(r.out)["frechet_distance"].get<double>(), 0.0);
  EXPECT_TRUE(contains(r.err, "does not name its feature network")) << r.err;

  // Paired SSIM and PSNR of PNG folders (pairs 1 and 2 of the grey images).
  r = cli({"evaluate", "ssim", "--ref", fx + "/pairs/ref", "--gen", fx + "/pairs/gen", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["count"], 2);
  EXPECT_NEAR(j["ssim"].get<double>(), t.at("ssim.grey").slice(0, 1).mean().item<double>(), 1e-10);
  r = cli({"evaluate", "psnr", "--ref", fx + "/pairs/ref", "--gen", fx + "/pairs/gen", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NEAR(nlohmann::json::parse(r.out)["psnr"].get<double>(), t.at("psnr.grey").slice(0, 1).mean().item<double>(), 1e-4);
  // A generated folder without one of the reference's files is refused by name.
  const std::string partial = *dir + "/partial";
  std::filesystem::create_directories(partial);
  std::filesystem::copy_file(fx + "/pairs/gen/1.png", partial + "/1.png", std::filesystem::copy_options::overwrite_existing);
  r = cli({"evaluate", "ssim", "--ref", fx + "/pairs/ref", "--gen", partial});
  EXPECT_NE(r.code, 0);
  EXPECT_TRUE(contains(r.err, "lacks 1 of the 2 images")) << r.err;
  EXPECT_TRUE(contains(r.err, "2.png")) << r.err;
}
