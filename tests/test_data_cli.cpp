// The data sources from the command line: train-tokenizer on an LMDB in LSUN's layout and on tar
// shards (tiny configurations), `seqgan pack-shards`, `seqgan dataset inspect` (counts, classes,
// sizes, failures named by file) and `seqgan dataset export` (the evaluation view, named by
// index). The LMDB and shards are written by python3-lmdb and Python's tarfile
// (tools/lmdb_shard_fixtures.py).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cli_capture.h"
#include "python_fixtures.h"
#include "seqgan/config.h"
#include "seqgan/data.h"
#include "tiny.h"

namespace fs = std::filesystem;
using seqgan::test::run_cli_captured;

namespace {

std::string fixtures() {
  return seqgan::test::python_fixture_dir("lmdb_shards", {"lmdb_shard_fixtures.py", "weights_io.py"});
}

class DataCli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = seqgan::test::temp_dir(::testing::UnitTest::GetInstance()->current_test_info()->name());
    fx = fixtures();
    ASSERT_FALSE(fx.empty());
  }
  void TearDown() override {
    if (!HasFailure()) seqgan::test::remove_tree(dir);
  }

  // The tiny tokenizer of the loop tests on `dataset` at `root` (grey 16x16 crops of the colour
  // images), written as a config file.
  std::string config(const std::string& dataset, const std::string& root) {
    seqgan::Config c = seqgan::test::tiny_tokenizer_config(seqgan::test::stand_in_loss_network(dir));
    c.data.dataset = dataset;
    c.data.root = root;
    c.data.val_root = "";
    c.data.pad = 0;
    c.data.random_crop = true;
    c.data.hflip = true;
    c.data.resize_filter = "bicubic";
    c.train_tokenizer.batch_size = 4;
    c.train_tokenizer.iterations = 3;
    const std::string path = dir + "/" + dataset + ".json";
    std::ofstream(path) << seqgan::config_to_json(c);
    return path;
  }

  std::string dir, fx;
};

int64_t logged_steps(const std::string& run) {
  std::ifstream in(run + "/metrics.jsonl");
  int64_t steps = 0;
  for (std::string line; std::getline(in, line);) {
    const auto j = nlohmann::json::parse(line);
    if (j.value("kind", "") == "tokenizer_phase1") steps = std::max<int64_t>(steps, j.at("step").get<int64_t>());
  }
  return steps;
}

}  // namespace

TEST_F(DataCli, TrainTokenizerOnAnLmdbAndOnShards) {
  for (const auto& [dataset, root] : {std::pair<std::string, std::string>{"lmdb", fx + "/lmdb"}, {"shards", fx + "/shards"}}) {
    const std::string run = dir + "/run-" + dataset;
    const auto r = run_cli_captured({"train-tokenizer", "--config", config(dataset, root), "--out", run});
    ASSERT_EQ(r.code, 0) << dataset << ":\n" << r.err;
    EXPECT_TRUE(fs::exists(run + "/tokenizer.safetensors")) << dataset;
    EXPECT_EQ(logged_steps(run), 3) << dataset;
    EXPECT_NE(r.err.find(root), std::string::npos) << "the log names the data source:\n" << r.err;
  }
}

TEST_F(DataCli, PackShardsThenInspectAndExport) {
  const std::string shards = dir + "/packed";
  auto r = run_cli_captured({"pack-shards", "--preset", "lsun-church", "--set", "data.root=" + fx + "/lmdb", "--out", shards,
                             "--per-shard", "5"});
  ASSERT_EQ(r.code, 0) << r.err;
  const seqgan::LmdbDataset lmdb(fx + "/lmdb");
  const seqgan::ShardDataset packed(shards);
  EXPECT_EQ(packed.size(), lmdb.size());
  EXPECT_EQ(static_cast<int64_t>(packed.shards().size()), (lmdb.size() + 4) / 5);

  r = run_cli_captured({"dataset", "inspect", "--preset", "lsun-church", "--set", "data.dataset=shards", "--set",
                        "data.root=" + shards, "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j.at("size").get<int64_t>(), lmdb.size());
  EXPECT_EQ(j.at("decoded").get<int64_t>(), lmdb.size());
  EXPECT_EQ(j.at("shards").get<int64_t>(), static_cast<int64_t>(packed.shards().size()));
  EXPECT_EQ(j.at("num_classes").get<int64_t>(), 0);
  int64_t sized = 0;
  for (const auto& s : j.at("sizes")) sized += s.at("images").get<int64_t>();
  EXPECT_EQ(sized, lmdb.size());
  EXPECT_TRUE(j.at("failures").empty());

  // export: the first 3 images in data-set order, exactly the evaluation transform's output.
  r = run_cli_captured({"dataset", "export", "--preset", "lsun-church", "--set", "data.root=" + fx + "/lmdb", "--set",
                        "data.resolution=32", "--set", "data.resize_filter=lanczos", "--count", "3", "--out", dir + "/view"});
  ASSERT_EQ(r.code, 0) << r.err;
  seqgan::TransformOptions t;
  t.resolution = 32;
  t.filter = seqgan::ResizeFilter::kLanczos;
  t.channels = 3;
  const seqgan::Transform eval(t);
  std::mt19937_64 rng(0);
  for (int i = 0; i < 3; ++i) {
    const std::string png = dir + "/view/00000" + std::to_string(i) + ".png";
    ASSERT_TRUE(fs::exists(png)) << png;
    EXPECT_EQ(seqgan::read_image(png, 3).pixels, eval.apply(lmdb.load(i).image, rng).pixels) << png;
  }
  EXPECT_FALSE(fs::exists(dir + "/view/000003.png"));
}

TEST_F(DataCli, InspectNamesEveryImageThatFails) {
  const std::string folder = dir + "/images";
  fs::create_directories(folder + "/cats");
  fs::create_directories(folder + "/dogs");
  seqgan::write_png(folder + "/cats/a.png", seqgan::Image(12, 10, 3, 90));
  seqgan::write_png(folder + "/cats/b.png", seqgan::Image(30, 20, 3, 40));
  seqgan::write_png(folder + "/dogs/c.png", seqgan::Image(12, 10, 1, 200));
  std::ofstream(folder + "/dogs/broken.jpg") << "\xFF\xD8\xFF\xE0 not really a JPEG";
  const auto r = run_cli_captured({"dataset", "inspect", "--preset", "paper", "--set", "data.root=" + folder, "--json"});
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_NE(r.err.find("1 of 4 images cannot be decoded"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("data.skip_bad_files=true"), std::string::npos) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j.at("num_classes").get<int64_t>(), 2);
  EXPECT_EQ(j.at("decoded").get<int64_t>(), 3);
  ASSERT_EQ(j.at("failures").size(), 1u);
  EXPECT_EQ(j.at("failures")[0].at("item").get<std::string>(), folder + "/dogs/broken.jpg");
  EXPECT_EQ(j.at("classes")[0].at("name"), "cats");
  EXPECT_EQ(j.at("classes")[0].at("images").get<int64_t>(), 2);
  EXPECT_EQ(j.at("sizes")[0].at("width").get<int>(), 12);  // the most common size first
  EXPECT_EQ(j.at("sizes")[0].at("images").get<int64_t>(), 2);
  // The text report says the same.
  const auto text = run_cli_captured({"dataset", "inspect", "--preset", "paper", "--set", "data.root=" + folder});
  EXPECT_EQ(text.code, 1);
  EXPECT_NE(text.out.find("FAILED " + folder + "/dogs/broken.jpg"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("12x10: 2"), std::string::npos) << text.out;
}
