// The run directory's defences: its lock, fresh runs over old ones, leftovers of killed writers,
// metrics cut back on resume, write errors, non-finite states, and outputs written whole.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>
#include <torch/torch.h>

#include "remove_tree.h"
#include "seqgan/error.h"
#include "seqgan/log.h"
#include "tiny.h"
#include "eval/evaluate.h"
#include "seqgan/image.h"
#include "train/run.h"
#include "train/tokenizer_trainer.h"

using namespace seqgan;
namespace fs = std::filesystem;

namespace {

class RunDirTest : public ::testing::Test {
 protected:
  void SetUp() override { dir = test::temp_dir(::testing::UnitTest::GetInstance()->current_test_info()->name()); }
  void TearDown() override { test::remove_tree(dir); }
  void touch(const std::string& name, const std::string& text = "x") {
    fs::create_directories(fs::path(dir + "/" + name).parent_path());
    std::ofstream(dir + "/" + name) << text;
  }
  bool exists(const std::string& name) const { return fs::exists(dir + "/" + name); }
  std::string dir;
};

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// "1m02s left" or "5s left" in a progress line, in seconds; -1 for "? left".
double seconds_left(const std::string& line) {
  const auto end = line.find(" left)");
  const auto begin = line.rfind(' ', end - 1) + 1;
  const std::string t = line.substr(begin, end - begin);
  if (t == "?") return -1;
  const auto m = t.find('m');
  return m == std::string::npos ? std::stod(t) : std::stod(t.substr(0, m)) * 60 + std::stod(t.substr(m + 1));
}

}  // namespace

// A resumed run starts its count at the checkpoint's step; the time left comes from the steps this
// process did, not from the whole count over this process's time.
TEST(Progress, AResumedCountTimesOnlyItsOwnSteps) {
  const LogLevel level = log_level();
  set_log_level(LogLevel::Info);
  testing::internal::CaptureStderr();
  {
    Progress progress("phase 1", 1875, 1e-9);
    progress.update(742);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    progress.update(752);  // 10 steps in 50 ms or more: 5.6 s or more for the 1,123 left
  }
  const std::string err = testing::internal::GetCapturedStderr();
  set_log_level(level);
  const auto second = err.find("phase 1 752/1875");
  ASSERT_NE(second, std::string::npos) << err;
  EXPECT_EQ(seconds_left(err.substr(0, second)), -1) << err;  // one point gives no rate
  EXPECT_GE(seconds_left(err.substr(second)), 5) << err;
  EXPECT_FALSE(std::cerr.flags() & std::ios::fixed) << "a progress line leaves std::cerr's format as it was";
}

TEST_F(RunDirTest, ASecondWriterIsRefusedNamingTheHolder) {
  RunDir first(dir + "/run", true, RunStart::kFresh);
  const std::string m = message_of([&] { RunDir second(dir + "/run", true, RunStart::kResume); });
  EXPECT_TRUE(contains(m, "is in use by another seqgan process")) << m;
  EXPECT_TRUE(contains(m, "pid " + std::to_string(::getpid()))) << m;
  // Ranks other than 0 write nothing and take no lock.
  EXPECT_NO_THROW(RunDir(dir + "/run", false, RunStart::kResume));
}

TEST_F(RunDirTest, TheLockGoesWithItsHolder) {
  { RunDir first(dir + "/run", true, RunStart::kFresh); }
  EXPECT_NO_THROW(RunDir(dir + "/run", true, RunStart::kFresh));
}

TEST_F(RunDirTest, AFreshRunOverARunIsRefusedUnlessOverwritten) {
  touch("run/config.json");
  touch("run/metrics.jsonl");
  touch("run/checkpoint.safetensors");
  touch("run/tokenizer.safetensors");
  touch("run/samples/recon_0000003.png");
  touch("run/notes.txt");
  touch("run/analysis/plot.png");
  const std::string m = message_of([&] { RunDir r(dir + "/run", true, RunStart::kFresh); });
  EXPECT_TRUE(contains(m, "already holds a run")) << m;
  EXPECT_TRUE(contains(m, "--resume")) << m;
  EXPECT_TRUE(contains(m, "--overwrite")) << m;
  EXPECT_TRUE(exists("run/checkpoint.safetensors"));
  RunDir r(dir + "/run", true, RunStart::kOverwrite);
  for (const char* gone : {"run/config.json", "run/metrics.jsonl", "run/checkpoint.safetensors", "run/tokenizer.safetensors", "run/samples"})
    EXPECT_FALSE(exists(gone)) << gone;
  // What the run did not write stays.
  EXPECT_TRUE(exists("run/notes.txt"));
  EXPECT_TRUE(exists("run/analysis/plot.png"));
}

TEST_F(RunDirTest, TemporaryFilesOfKilledWritersAreRemoved) {
  touch("run/checkpoint.safetensors.tmp.999999", std::string(1 << 20, 'x'));
  touch("run/samples/recon_0000003.png.tmp.4242.7");
  touch("run/metrics.tmp.txt");  // not a temporary file's name
  touch("run/config.json.tmp.abc");
  RunDir r(dir + "/run", true, RunStart::kOverwrite);
  EXPECT_FALSE(exists("run/checkpoint.safetensors.tmp.999999"));
  EXPECT_TRUE(exists("run/metrics.tmp.txt"));
  EXPECT_TRUE(exists("run/config.json.tmp.abc"));
  touch("run/samples/recon_0000003.png.tmp.4242.7");
  EXPECT_EQ(remove_stale_temporaries(dir + "/run/samples"), 1);
  EXPECT_FALSE(exists("run/samples/recon_0000003.png.tmp.4242.7"));
}

TEST_F(RunDirTest, ResumeCutsTheMetricsBackToTheCheckpoint) {
  std::string rows;
  for (int s = 1; s <= 5; ++s) rows += "{\"kind\":\"train\",\"step\":" + std::to_string(s) + ",\"loss\":1}\n";
  rows += "{\"kind\":\"train\",\"st";  // a row the killed run did not finish
  touch("run/metrics.jsonl", rows);
  EXPECT_EQ(truncate_metrics(dir + "/run/metrics.jsonl", 3), 3);
  std::ifstream in(dir + "/run/metrics.jsonl");
  const std::string kept((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(kept, rows.substr(0, rows.find("{\"kind\":\"train\",\"step\":4")));
  EXPECT_EQ(truncate_metrics(dir + "/run/metrics.jsonl", 3), 0);
}

TEST_F(RunDirTest, AMetricsWriteErrorStopsTheRun) {
  if (!fs::exists("/dev/full")) GTEST_SKIP() << "no /dev/full on this machine";
  MetricsWriter m("/dev/full");
  const std::string msg = message_of([&] { m.write("train", 1, {{"loss", 1.0}}); });
  EXPECT_TRUE(contains(msg, "cannot write step 1")) << msg;
  EXPECT_TRUE(contains(msg, "No space left")) << msg;
}

TEST_F(RunDirTest, ANonFiniteStateIsNeverSaved) {
  std::map<std::string, at::Tensor> t{{"a", torch::ones({3})}, {"disc.w", torch::ones({2})}, {"rng", torch::zeros({4}, torch::kUInt8)}};
  EXPECT_NO_THROW(check_finite_state(t, 7, dir + "/checkpoint.safetensors", "train_tokenizer.lr"));
  t["disc.w"][1] = std::nan("");
  t["opt_d.exp_avg_sq.w"] = torch::full({2}, INFINITY);
  const std::string m = message_of([&] { check_finite_state(t, 7, dir + "/checkpoint.safetensors", "train_tokenizer.lr"); });
  EXPECT_TRUE(contains(m, "step 7: training diverged: 2 of 4 tensors")) << m;
  EXPECT_TRUE(contains(m, "disc.w")) << m;
  EXPECT_TRUE(contains(m, "opt_d.exp_avg_sq.w")) << m;
  EXPECT_TRUE(contains(m, "--resume --set train_tokenizer.lr=")) << m;
}

TEST_F(RunDirTest, AnOutputFolderIsReplacedWholeOrNotAtAll) {
  const std::string out = dir + "/samples";
  {
    OutputFolder o(out);
    std::ofstream(o.file("a.png")) << "old";
    o.commit();
  }
  EXPECT_TRUE(exists("samples/a.png"));
  {
    // Interrupted: the new files never appear, the old ones stay, no temporary folder is left.
    OutputFolder o(out);
    std::ofstream(o.file("b.png")) << "new";
    const std::string m = message_of([&] { OutputFolder second(out); });
    EXPECT_TRUE(contains(m, "is in use by another seqgan process")) << m;
  }
  EXPECT_TRUE(exists("samples/a.png"));
  EXPECT_FALSE(exists("samples/b.png"));
  {
    OutputFolder o(out);
    std::ofstream(o.file("b.png")) << "new";
    o.commit();
  }
  EXPECT_FALSE(exists("samples/a.png")) << "a committed output replaces the old one, no mixing";
  EXPECT_TRUE(exists("samples/b.png"));
  for (const auto& e : fs::directory_iterator(dir))
    EXPECT_EQ(e.path().filename(), "samples") << "left behind: " << e.path();
}

TEST_F(RunDirTest, LeftoversOfAKilledSamplerAreRemoved) {
  touch("samples.tmp.999999/images/000000.png");
  touch("other.tmp.999999");
  OutputFolder o(dir + "/samples");
  EXPECT_FALSE(exists("samples.tmp.999999"));
  EXPECT_TRUE(exists("other.tmp.999999")) << "only the output's own leftovers go";
}

TEST_F(RunDirTest, SkippedImagesAreCountedListedAndSkippedByEveryReader) {
  const std::string images = dir + "/images";
  fs::create_directories(images);
  for (int i = 0; i < 6; ++i) {  // with the 2 broken ones, one batch of 8: every step meets them
    Image img;
    img.width = img.height = 16;
    img.channels = 3;
    img.pixels.assign(16 * 16 * 3, static_cast<uint8_t>(20 * i));
    write_png(images + "/img" + std::to_string(10 + i) + ".png", img);
  }
  std::ofstream(images + "/img30.png") << "not a PNG";
  std::ofstream(images + "/img31.jpg") << "\xff\xd8\xff truncated";

  // The evaluation commands' image sources honour data.skip_bad_files.
  DataConfig data;
  data.channels = 3;
  data.resolution = 16;
  EXPECT_THROW(
      {
        const auto strict = open_image_source(images, data);
        for (int64_t i = 0; i < strict.data->size(); ++i) strict.data->load(i);
      },
      Error);
  data.skip_bad_files = true;
  const auto source = open_image_source(images, data);
  for (int64_t i = 0; i < source.data->size(); ++i) EXPECT_NO_THROW(source.data->load(i));
  const std::string list = dir + "/skipped_files.txt";
  SkippedFiles skipped(source.data, list);
  skipped.report();
  std::ifstream in(list);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(text, images + "/img30.png\n" + images + "/img31.jpg\n");

  // Training lists them in its run directory.
  Config c = test::tiny_tokenizer_config(test::stand_in_loss_network(dir));
  c.data.dataset = "image-folder";
  c.data.root = images;
  c.data.skip_bad_files = true;
  c.train_tokenizer.iterations = 2;
  TokenizerTrainOptions o;
  o.config = c;
  o.run_dir = dir + "/run";
  train_tokenizer(o);
  std::ifstream run_list(dir + "/run/skipped_files.txt");
  const std::string listed((std::istreambuf_iterator<char>(run_list)), std::istreambuf_iterator<char>());
  EXPECT_TRUE(contains(listed, "img30.png")) << listed;
}
