// The paper-scale path as a user walks it, on tiny models: the command line's data settings over a
// model file's stored ones, classes taken from the data, validation folders labelled by the
// training classes (ImageNet's flat layout included), and exact sample counts with a plan.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "cli_capture.h"
#include "data/open.h"
#include "remove_tree.h"
#include "seqgan/checkpoint.h"
#include "seqgan/data.h"
#include "seqgan/image.h"
#include "tiny.h"
#include "tokenizer/tokens.h"
#include "train/tokenizer_trainer.h"

using namespace seqgan;
namespace fs = std::filesystem;

namespace {

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// A PNG of side x side grey pixels of one value.
void png(const std::string& path, int value, int side = 16, int channels = 1) {
  fs::create_directories(fs::path(path).parent_path());
  Image img(side, side, channels, static_cast<uint8_t>(value));
  write_png(path, img);
}

class PaperPath : public ::testing::Test {
 protected:
  void SetUp() override { dir = test::temp_dir(::testing::UnitTest::GetInstance()->current_test_info()->name()); }
  void TearDown() override { test::remove_tree(dir); }
  std::string tokenizer() {
    TokenizerTrainOptions o;
    o.config = test::tiny_tokenizer_config(test::stand_in_loss_network(dir));
    o.config.train_tokenizer.iterations = 1;
    o.run_dir = dir + "/tok";
    train_tokenizer(o);
    return dir + "/tok/tokenizer.safetensors";
  }
  std::vector<std::string> tiny_ar(const std::string& tokens, const std::string& out) {
    return {"train-transformer", "--kind", "ar", "--tokens", tokens, "--out", out, "--threads", "2", "--set",
            "transformer.layers=1", "--set", "transformer.width=32", "--set", "transformer.heads=2", "--set",
            "transformer.mlp=64", "--set", "train_ar.iterations=2", "--set", "train_ar.batch_size=8", "--set",
            "train_ar.val_fraction=0.25"};
  }
  std::string dir;
};

}  // namespace

TEST_F(PaperPath, TheCommandLinesDataSettingsApplyToATrainedTokenizer) {
  const std::string tok = tokenizer();  // trained on Fashion-MNIST
  for (int i = 0; i < 5; ++i) png(dir + "/other/img" + std::to_string(i) + ".png", 40 * i);
  const auto r = test::run_cli_captured({"tokenize", "--tokenizer", tok, "--set", "data.dataset=image-folder", "--set",
                                         "data.root=" + dir + "/other", "--out", dir + "/other.safetensors", "--threads", "2"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(load_tokens(dir + "/other.safetensors").indices.size(0), 5) << "the tokenizer's own data were encoded";
  // Measured on another held-out folder, though the tokenizer was trained without data.val_root.
  const auto e = test::run_cli_captured({"evaluate", "psnr", "--tokenizer", tok, "--set", "data.dataset=image-folder", "--set",
                                         "data.root=" + dir + "/other", "--set", "data.val_root=" + dir + "/other", "--threads", "2"});
  ASSERT_EQ(e.code, 0) << e.err;
  EXPECT_TRUE(contains(e.out, "images: 5 of data:test")) << e.out;
  // What the model fixes cannot change.
  const auto bad = test::run_cli_captured({"tokenize", "--tokenizer", tok, "--set", "data.resolution=32", "--out", dir + "/x.safetensors"});
  EXPECT_EQ(bad.code, 2);
  EXPECT_TRUE(contains(bad.err, "data.resolution and data.channels are the model's")) << bad.err;
}

TEST_F(PaperPath, StoredDataPathsAreAbsolute) {
  for (int i = 0; i < 8; ++i) png(dir + "/data/c" + std::to_string(i % 2) + "/img" + std::to_string(i) + ".png", 30 * i);
  const fs::path before = fs::current_path();
  fs::current_path(dir);
  TokenizerTrainOptions o;
  o.config = test::tiny_tokenizer_config(test::stand_in_loss_network(dir));
  o.config.data.dataset = "image-folder";
  o.config.data.root = "data";  // relative to the folder the run starts in
  o.config.train_tokenizer.iterations = 1;
  o.run_dir = dir + "/tok";
  train_tokenizer(o);
  fs::current_path(before);
  const Config stored = config_from_json(read_checkpoint_meta(dir + "/tok/tokenizer.safetensors").config_json);
  EXPECT_EQ(stored.data.root, dir + "/data");
}

TEST_F(PaperPath, ValidationFoldersAreLabelledByTheTrainingClasses) {
  for (const char* c : {"n01", "n02", "n03"}) png(dir + "/train/" + c + "/a.png", 10);
  png(dir + "/val/n02/b.png", 20);  // a subset of the classes
  DataConfig d;
  d.dataset = "image-folder";
  d.root = dir + "/train";
  d.val_root = dir + "/val";
  d.channels = 1;
  const auto val = open_dataset(d, "test");
  EXPECT_EQ(val->class_names(), (std::vector<std::string>{"n01", "n02", "n03"}));
  EXPECT_EQ(val->load(0).label, 1) << "n02 is class 1 in training";
  png(dir + "/val/n09/c.png", 30);
  EXPECT_THROW(open_dataset(d, "test"), Error);
  fs::remove_all(dir + "/val/n09");

  // ImageNet's flat layout: recognised, and labelled through data.val_labels.
  for (int i = 1; i <= 3; ++i) png(dir + "/flat/ILSVRC2012_val_0000000" + std::to_string(i) + ".png", 40 * i);
  d.val_root = dir + "/flat";
  try {
    open_dataset(d, "test");
    FAIL() << "a flat validation folder of a class-folder training set was taken as unlabeled";
  } catch (const Error& e) {
    EXPECT_TRUE(contains(e.what(), "flat validation layout")) << e.what();
    EXPECT_TRUE(contains(e.what(), "data.val_labels")) << e.what();
  }
  std::ofstream(dir + "/LOC_val_solution.csv") << "ImageId,PredictionString\n"
                                               << "ILSVRC2012_val_00000001,n03 1 2 3 4 n03 5 6 7 8\n"
                                               << "ILSVRC2012_val_00000002,n01 1 2 3 4\n"
                                               << "ILSVRC2012_val_00000003,n02 1 2 3 4\n";
  d.val_labels = dir + "/LOC_val_solution.csv";
  const auto flat = open_dataset(d, "test");
  EXPECT_EQ(flat->load(0).label, 2);
  EXPECT_EQ(flat->load(1).label, 0);
  EXPECT_EQ(flat->load(2).label, 1);
  EXPECT_EQ(flat->num_classes(), 3);
}

TEST_F(PaperPath, ImageLabelFilesAreParsedStrictly) {
  const auto l = parse_image_labels("a.JPEG n01\r\nb n02 extra\n\nc,n03\n", "labels");
  EXPECT_EQ(l, (std::map<std::string, std::string>{{"a", "n01"}, {"b", "n02"}, {"c", "n03"}}));
  EXPECT_THROW(parse_image_labels("a n01\na n02\n", "labels"), Error);
  EXPECT_THROW(parse_image_labels("a\n", "labels"), Error);
}

TEST_F(PaperPath, ATransformerTakesItsClassesFromTheTokensAndSamplesExactlyWhatIsAsked) {
  const std::string tok = tokenizer();
  // Two named classes, where the fmnist preset says 10.
  TokenFile f;
  torch::manual_seed(3);
  f.labels = at::randint(2, {48}, at::kLong);
  f.indices = at::randint(16, {48, 8, 8}, at::kLong);
  f.codebook_size = 16;
  f.class_names = {"church", "tower"};
  save_tokens(dir + "/two.safetensors", f);
  auto r = test::run_cli_captured(tiny_ar(dir + "/two.safetensors", dir + "/ar2"));
  ASSERT_EQ(r.code, 0) << r.err;
  const auto meta = read_checkpoint_meta(dir + "/ar2/transformer.safetensors");
  EXPECT_EQ(meta.extra.at("num_classes"), "2");
  r = test::run_cli_captured({"sample", "--model", dir + "/ar2/transformer.safetensors", "--tokenizer", tok, "--per-class",
                              "3", "--out", dir + "/s2", "--threads", "2"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "plan: 6 images (2 of the model's 2 classes x 3)")) << r.out;
  EXPECT_EQ(load_tokens(dir + "/s2/tokens.safetensors").indices.size(0), 6);

  // Unlabeled tokens: an unconditional model, and --count is exact.
  f.labels = at::full({48}, -1, at::kLong);
  f.class_names = {};
  save_tokens(dir + "/none.safetensors", f);
  r = test::run_cli_captured(tiny_ar(dir + "/none.safetensors", dir + "/ar0"));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(read_checkpoint_meta(dir + "/ar0/transformer.safetensors").extra.at("num_classes"), "0");
  r = test::run_cli_captured({"sample", "--model", dir + "/ar0/transformer.safetensors", "--tokenizer", tok, "--count", "2",
                              "--per-class", "8", "--batch-size", "1", "--out", dir + "/s0", "--threads", "2"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "plan: 2 images (unconditional), 2 batches of up to 1")) << r.out;
  EXPECT_TRUE(contains(r.out, "estimated time:")) << r.out;
  int images = 0;
  for (const auto& e : fs::directory_iterator(dir + "/s0/images")) images += e.is_regular_file();
  EXPECT_EQ(images, 2);
}
