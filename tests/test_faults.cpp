// Faults a run meets in the field, each through the seqgan program as a user runs it: SIGKILL at
// random points (during checkpoint writes too) and resumes that must end byte-identical to an
// uninterrupted run, two writers of one run directory, a fresh run over a finished one, a full
// disk, a diverging learning rate, interrupted sampling and tokenising, and damaged weights.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "file_bytes.h"
#include "remove_tree.h"
#include "seqgan/checkpoint.h"
#include "seqgan/safetensors.h"
#include "tiny.h"
#include "tokenizer/tokens.h"
#include "train/tokenizer_trainer.h"

using namespace seqgan;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using test::read_bytes;
using test::write_bytes;

namespace {

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// The seqgan program in a child process; output to files.
struct Child {
  pid_t pid = -1;
  std::string out, err;

  Child(const std::vector<std::string>& args, const std::string& log) : out(log + ".out"), err(log + ".err") {
    pid = fork();
    if (pid == 0) {
      if (!freopen(out.c_str(), "w", stdout) || !freopen(err.c_str(), "w", stderr)) _exit(126);
      std::vector<char*> argv{const_cast<char*>(SEQGAN_BINARY)};
      for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      execv(SEQGAN_BINARY, argv.data());
      _exit(127);
    }
  }
  // Exit status (-signal when killed).
  int wait() {
    if (!reaped_) waitpid(pid, &status_, 0);
    reaped_ = true;
    return WIFEXITED(status_) ? WEXITSTATUS(status_) : -WTERMSIG(status_);
  }
  bool running() {
    if (reaped_) return false;
    reaped_ = waitpid(pid, &status_, WNOHANG) == pid;
    return !reaped_;
  }
  std::string stderr_text() const { return slurp(err); }
  std::string stdout_text() const { return slurp(out); }

 private:
  int status_ = 0;
  bool reaped_ = false;
};

// Runs the program to its end, or kills it after `limit` and returns -1000 (a hang is a failure).
int run_to_end(const std::vector<std::string>& args, const std::string& log, std::string* err = nullptr,
               std::chrono::seconds limit = std::chrono::seconds(240)) {
  Child c(args, log);
  const auto deadline = Clock::now() + limit;
  while (c.running() && Clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  const bool hung = c.running();
  if (hung) kill(c.pid, SIGKILL);
  const int code = hung ? (c.wait(), -1000) : c.wait();
  if (err) *err = c.stderr_text();
  return code;
}

int count_lines(const std::string& path) {
  std::ifstream in(path);
  int n = 0;
  for (std::string line; std::getline(in, line);) ++n;
  return n;
}

std::vector<std::string> temporaries_under(const std::string& dir) {
  std::vector<std::string> found;
  std::error_code ec;
  for (const auto& e : fs::recursive_directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (contains(name, ".tmp.") || (name.size() > 5 && name.substr(name.size() - 5) == ".lock" && name != ".lock"))
      found.push_back(e.path().string());
  }
  return found;
}

// Every metrics row parses and every step of `kind` appears once.
void expect_whole_metrics(const std::string& path, const std::string& kind, int64_t steps) {
  const std::string text = slurp(path);
  ASSERT_FALSE(text.empty());
  EXPECT_EQ(text.back(), '\n') << "a half-written last row";
  std::map<int64_t, int> seen;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    const auto j = nlohmann::json::parse(line);  // throws on a damaged row
    if (j["kind"] == kind) ++seen[j["step"].get<int64_t>()];
  }
  EXPECT_EQ(static_cast<int64_t>(seen.size()), steps);
  for (const auto& [step, n] : seen) EXPECT_EQ(n, 1) << "step " << step << " logged " << n << " times";
}

class Faults : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = test::temp_dir(::testing::UnitTest::GetInstance()->current_test_info()->name());
    config = test::tiny_tokenizer_config(test::stand_in_loss_network(dir));
    config.threads = 1;  // one thread: the same arithmetic in every process, so runs can be compared bytewise
  }
  void TearDown() override { test::remove_tree(dir); }
  std::string write_config(const Config& c, const std::string& name = "config.json") {
    const std::string path = dir + "/" + name;
    std::ofstream(path) << config_to_json(c);
    return path;
  }
  // A tokenizer trained for 2 steps in-process: DIR/tok/tokenizer.safetensors.
  std::string tiny_tokenizer() {
    TokenizerTrainOptions o;
    o.config = config;
    o.config.train_tokenizer.iterations = 2;
    o.run_dir = dir + "/tok";
    train_tokenizer(o);
    return dir + "/tok/tokenizer.safetensors";
  }
  std::vector<std::string> train(const std::string& cfg, const std::string& run) const {
    return {"train-tokenizer", "--config", cfg, "--out", run};
  }
  std::string dir;
  Config config;
};

std::vector<std::string> operator+(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

}  // namespace

TEST_F(Faults, KilledAtRandomPointsAndResumedEndsByteIdentical) {
  config.train_tokenizer.iterations = 200;
  config.train_tokenizer.checkpoint_every = 10;
  config.train_tokenizer.image_every = 25;
  const std::string cfg = write_config(config);
  ASSERT_EQ(run_to_end(train(cfg, dir + "/full"), dir + "/full"), 0) << slurp(dir + "/full.err");

  const std::string run = dir + "/killed";
  std::mt19937 rng(20261201);
  int kills = 0, kills_in_write = 0, starts = 0;
  for (int attempt = 0; attempt < 60; ++attempt) {
    const bool resume = fs::exists(run + "/checkpoint.safetensors");
    Child c(train(cfg, run) + std::vector<std::string>{resume ? "--resume" : "--overwrite"}, dir + "/killed-" + std::to_string(attempt));
    ++starts;
    bool killed = false;
    if (kills < 10) {
      if (kills % 2 == 1) {
        // During a checkpoint write: as soon as its temporary file appears.
        const std::string tmp = run + "/checkpoint.safetensors.tmp." + std::to_string(c.pid);
        const auto deadline = Clock::now() + std::chrono::seconds(60);
        while (Clock::now() < deadline && c.running() && !fs::exists(tmp)) std::this_thread::sleep_for(std::chrono::microseconds(200));
        if (fs::exists(tmp)) {
          kill(c.pid, SIGKILL);
          killed = true;
          ++kills_in_write;
        }
      } else {
        std::this_thread::sleep_for(std::chrono::milliseconds(std::uniform_int_distribution<int>(300, 1500)(rng)));
        killed = kill(c.pid, SIGKILL) == 0;
      }
    }
    const int code = c.wait();
    if (killed && code == -SIGKILL) {
      ++kills;
      continue;
    }
    ASSERT_EQ(code, 0) << c.stderr_text();
    break;
  }
  std::cout << "[ faults ] " << kills << " SIGKILLs (" << kills_in_write << " during a checkpoint write), " << starts
            << " starts\n";
  EXPECT_GE(kills, 6);
  EXPECT_GE(kills_in_write, 2);
  EXPECT_EQ(read_checkpoint_meta(run + "/checkpoint.safetensors").step, 200);
  EXPECT_EQ(read_bytes(run + "/checkpoint.safetensors"), read_bytes(dir + "/full/checkpoint.safetensors"))
      << "the resumed run's training state differs from the uninterrupted run's";
  EXPECT_EQ(read_bytes(run + "/tokenizer.safetensors"), read_bytes(dir + "/full/tokenizer.safetensors"));
  const auto a = test::losses(dir + "/full", "tokenizer_phase1"), b = test::losses(run, "tokenizer_phase1");
  EXPECT_EQ(a, b);
  expect_whole_metrics(run + "/metrics.jsonl", "tokenizer_phase1", 200);
  EXPECT_EQ(temporaries_under(run), std::vector<std::string>{});
}

TEST_F(Faults, ASecondWriterIsRefusedAndAFreshRunNeedsOverwrite) {
  config.train_tokenizer.iterations = 100000;
  config.train_tokenizer.checkpoint_every = 100000;
  const std::string cfg = write_config(config);
  const std::string run = dir + "/run";
  Child first(train(cfg, run), dir + "/first");
  const auto deadline = Clock::now() + std::chrono::minutes(3);
  while (count_lines(run + "/metrics.jsonl") < 2 && Clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_GE(count_lines(run + "/metrics.jsonl"), 2) << first.stderr_text();
  for (const std::string mode : {"--resume", "--overwrite"}) {
    std::string err;
    EXPECT_EQ(run_to_end(train(cfg, run) + std::vector<std::string>{mode}, dir + "/second", &err, std::chrono::seconds(60)), 1)
        << mode << " (-1000: it ran beside the first)";
    EXPECT_TRUE(contains(err, "is in use by another seqgan process (pid " + std::to_string(first.pid))) << err;
  }
  kill(first.pid, SIGTERM);
  EXPECT_EQ(first.wait(), 143) << "SIGTERM: checkpoint, then exit 128 + 15";
  const int64_t step = read_checkpoint_meta(run + "/checkpoint.safetensors").step;
  EXPECT_GE(step, 2);
  expect_whole_metrics(run + "/metrics.jsonl", "tokenizer_phase1", step);

  // A finished or stopped run is not overwritten by accident.
  std::string err;
  config.train_tokenizer.iterations = 3;
  const std::string small = write_config(config, "small.json");
  EXPECT_EQ(run_to_end(train(small, run), dir + "/fresh", &err), 1);
  EXPECT_TRUE(contains(err, "already holds a run")) << err;
  EXPECT_EQ(read_checkpoint_meta(run + "/checkpoint.safetensors").step, step) << "the refused run touched the old one";
  ASSERT_EQ(run_to_end(train(small, run) + std::vector<std::string>{"--overwrite"}, dir + "/over", &err), 0) << err;
  EXPECT_EQ(read_checkpoint_meta(run + "/checkpoint.safetensors").step, 3);
  expect_whole_metrics(run + "/metrics.jsonl", "tokenizer_phase1", 3);
}

TEST_F(Faults, AFullDiskStopsTheRunAndKeepsTheLastCheckpoint) {
  const std::string mnt = dir + "/disk";
  fs::create_directories(mnt);
  if (geteuid() != 0 || mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=32m") != 0)
    GTEST_SKIP() << "cannot mount a small tmpfs here (needs root): the full-disk test is skipped";
  struct Unmount {
    std::string path;
    ~Unmount() { umount2(path.c_str(), MNT_DETACH); }
  } unmount{mnt};
  config.train_tokenizer.iterations = 12;
  config.train_tokenizer.checkpoint_every = 2;
  const std::string cfg = write_config(config);
  const std::string run = mnt + "/run";
  std::string err;
  ASSERT_EQ(run_to_end(train(cfg, run) + std::vector<std::string>{"--max-steps", "2"}, dir + "/a", &err), 0) << err;
  const auto checkpoint = read_bytes(run + "/checkpoint.safetensors");

  // Fill the disk but for 64 KiB: room for config.json and some metrics, not for a checkpoint.
  struct statvfs s {};
  ASSERT_EQ(statvfs(mnt.c_str(), &s), 0);
  const int64_t free_bytes = static_cast<int64_t>(s.f_bavail) * static_cast<int64_t>(s.f_frsize);
  {
    std::ofstream filler(mnt + "/filler", std::ios::binary);
    const std::string block(1 << 16, 'x');
    for (int64_t left = free_bytes - (64 << 10); left > 0; left -= static_cast<int64_t>(block.size()))
      filler.write(block.data(), std::min<int64_t>(left, static_cast<int64_t>(block.size())));
  }
  const int code = run_to_end(train(cfg, run) + std::vector<std::string>{"--resume"}, dir + "/b", &err);
  EXPECT_EQ(code, 1) << err;
  EXPECT_TRUE(contains(err, "No space left on device")) << err;
  EXPECT_EQ(read_bytes(run + "/checkpoint.safetensors"), checkpoint) << "the last good checkpoint was damaged";
  EXPECT_EQ(temporaries_under(run), std::vector<std::string>{});
  const std::string metrics = slurp(run + "/metrics.jsonl");
  ASSERT_FALSE(metrics.empty());
  EXPECT_EQ(metrics.back(), '\n');

  // With space again the run goes on from its checkpoint and logs every step once.
  fs::remove(mnt + "/filler");
  ASSERT_EQ(run_to_end(train(cfg, run) + std::vector<std::string>{"--resume"}, dir + "/c", &err), 0) << err;
  expect_whole_metrics(run + "/metrics.jsonl", "tokenizer_phase1", 12);
}

TEST_F(Faults, ADivergingRunKeepsItsLastGoodCheckpointAndResumesWithALowerRate) {
  config.train_tokenizer.iterations = 40;
  config.train_tokenizer.checkpoint_every = 2;
  config.train_tokenizer.max_nonfinite = 3;
  const std::string cfg = write_config(config);
  const std::string run = dir + "/run";
  std::string err;
  ASSERT_EQ(run_to_end(train(cfg, run) + std::vector<std::string>{"--max-steps", "2"}, dir + "/a", &err), 0) << err;
  // Settings that fix the model cannot change on resume; the schedule can.
  EXPECT_EQ(run_to_end(train(cfg, run) + std::vector<std::string>{"--resume", "--set", "tokenizer.codebook_size=32"}, dir + "/b", &err), 1);
  EXPECT_TRUE(contains(err, "cannot apply to the resumed run")) << err;
  // lr = 1 blows the weights up within a step or two and to NaN or infinity a few steps later. (A
  // checkpoint between the two would hold finite but useless weights: no check can tell those
  // apart from a good state, so the test checkpoints only where divergence is certain.)
  const int diverged = run_to_end(train(cfg, run) + std::vector<std::string>{"--resume", "--set", "train_tokenizer.lr=1",
                                                                             "--set", "train_tokenizer.d_lr=1", "--set",
                                                                             "train_tokenizer.checkpoint_every=1000"},
                                  dir + "/c", &err);
  EXPECT_EQ(diverged, 1) << "lr=1 did not diverge:\n" << err;
  EXPECT_TRUE(contains(err, "training diverged") || contains(err, "non-finite losses in a row")) << err;
  const auto file = safetensors::load(run + "/checkpoint.safetensors");
  for (const auto& [name, t] : file.tensors)
    if (t.is_floating_point()) EXPECT_TRUE(at::isfinite(t).all().item<bool>()) << name << " was saved non-finite";
  const int64_t kept = read_checkpoint_meta(run + "/checkpoint.safetensors").step;
  ASSERT_EQ(run_to_end(train(cfg, run) + std::vector<std::string>{"--resume", "--set", "train_tokenizer.lr=0.0001", "--set",
                                                                     "train_tokenizer.d_lr=0.0001"},
                       dir + "/d", &err),
            0)
      << err;
  EXPECT_TRUE(contains(slurp(dir + "/d.err") + slurp(dir + "/d.out"), "resuming with train_tokenizer.lr = 0.0001")) << err;
  EXPECT_EQ(read_checkpoint_meta(run + "/checkpoint.safetensors").step, 40);
  std::cout << "[ faults ] lr=1 stopped; the kept checkpoint was step " << kept << "\n";
}

TEST_F(Faults, InterruptedSamplingAndTokenisingLeaveThePreviousOutputWhole) {
  const std::string tok = tiny_tokenizer();
  test::write_toy_tokens(dir + "/tokens.safetensors", 64, 8, 2, 4, 16);
  std::string err;
  ASSERT_EQ(run_to_end({"train-transformer", "--kind", "ar", "--tokens", dir + "/tokens.safetensors", "--out", dir + "/ar",
                        "--threads", "1", "--set", "transformer.layers=1", "--set", "transformer.width=32", "--set",
                        "transformer.heads=2", "--set", "transformer.mlp=64", "--set", "train_ar.iterations=2", "--set",
                        "train_ar.batch_size=8", "--set", "train_ar.val_fraction=0.25"},
                       dir + "/train", &err),
            0)
      << err;
  const std::string out = dir + "/samples";
  const std::vector<std::string> sample{"sample", "--model", dir + "/ar/transformer.safetensors", "--tokenizer", tok,
                                        "--out", out, "--threads", "1"};
  ASSERT_EQ(run_to_end(sample + std::vector<std::string>{"--classes", "0", "--per-class", "4", "--batch-size", "4"}, dir + "/s1", &err), 0) << err;
  const auto grid = read_bytes(out + "/grid.png");
  for (const int sig : {SIGINT, SIGTERM}) {
    // Interrupted while it writes the new images (the moment that used to mix two outputs).
    Child c(sample + std::vector<std::string>{"--classes", "0,1", "--per-class", "20000", "--seed", "3", "--batch-size", "500"},
            dir + "/s2");
    const std::string mine = out + ".tmp." + std::to_string(c.pid) + "/images/000010.png";
    const auto deadline = Clock::now() + std::chrono::minutes(3);
    while (Clock::now() < deadline && c.running() && !fs::exists(mine) && !fs::exists(out + "/images/000010.png"))
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    const bool writing = fs::exists(mine) || fs::exists(out + "/images/000010.png");
    kill(c.pid, sig);
    EXPECT_TRUE(writing) << "the signal came before the images were written";
    EXPECT_EQ(c.wait(), 128 + sig) << c.stderr_text();
    EXPECT_TRUE(contains(c.stderr_text(), "interrupted")) << c.stderr_text();
    EXPECT_EQ(read_bytes(out + "/grid.png"), grid);
    int images = 0;
    for (const auto& e : fs::directory_iterator(out + "/images")) images += e.is_regular_file();
    EXPECT_EQ(images, 4) << "the previous output must stay whole and unmixed";
    EXPECT_EQ(temporaries_under(dir + "/samples"), std::vector<std::string>{});
    for (const auto& e : fs::directory_iterator(dir))
      EXPECT_FALSE(contains(e.path().filename().string(), "samples.")) << "left behind: " << e.path();
  }

  // tokenize: SIGINT leaves no temporary file and no token file.
  Child t({"tokenize", "--tokenizer", tok, "--split", "train", "--out", dir + "/tokens-train.safetensors", "--threads", "1",
           "--batch-size", "8"},
          dir + "/t");
  // Signalled once it is at work (its first output), not after a fixed time: on a loaded machine
  // loading libtorch alone can take longer than any fixed wait, and a signal before the handler
  // is installed kills it outright.
  const auto started = Clock::now() + std::chrono::minutes(2);
  while (Clock::now() < started && t.running() && t.stderr_text().empty() && t.stdout_text().empty())
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  kill(t.pid, SIGINT);
  EXPECT_EQ(t.wait(), 130) << t.stderr_text();
  EXPECT_FALSE(fs::exists(dir + "/tokens-train.safetensors"));
  for (const auto& e : fs::directory_iterator(dir))
    EXPECT_FALSE(contains(e.path().filename().string(), "tokens-train.safetensors.")) << "left behind: " << e.path();
}

TEST_F(Faults, DamagedWeightsAreRefusedOnLoad) {
  const std::string tok = tiny_tokenizer();
  std::string err;
  ASSERT_EQ(run_to_end({"inspect", "--verify", tok}, dir + "/v0", &err), 0) << err;
  EXPECT_TRUE(contains(slurp(dir + "/v0.out"), "tensors match their CRC-32")) << slurp(dir + "/v0.out");
  // 16 bytes flipped inside the largest tensor.
  const auto header = safetensors::read_header(tok);
  const safetensors::TensorInfo* largest = &header.tensors.front();
  for (const auto& t : header.tensors)
    if (t.end - t.begin > largest->end - largest->begin) largest = &t;
  auto bytes = read_bytes(tok);
  for (int i = 0; i < 16; ++i) bytes[header.data_start() + largest->begin + 8 + i] ^= 0x5a;
  write_bytes(tok, bytes);
  EXPECT_EQ(run_to_end({"inspect", "--verify", tok}, dir + "/v1", &err), 1);
  EXPECT_TRUE(contains(err, "tensor '" + largest->name + "' is damaged")) << err;
  EXPECT_EQ(run_to_end({"reconstruct", "--tokenizer", tok, "--count", "4", "--out", "", "--threads", "1"}, dir + "/r", &err), 1);
  EXPECT_TRUE(contains(err, "is damaged")) << err;
}

TEST_F(Faults, MaxStepsOnACheckpointStepWritesItOnce) {
  config.train_tokenizer.iterations = 10;
  config.train_tokenizer.checkpoint_every = 2;
  const std::string cfg = write_config(config);
  std::string err;
  ASSERT_EQ(run_to_end(train(cfg, dir + "/run") + std::vector<std::string>{"--max-steps", "2"}, dir + "/a", &err), 0) << err;
  const std::string log = slurp(dir + "/a.out") + slurp(dir + "/a.err");
  size_t n = 0;
  for (size_t at = log.find("checkpoint written"); at != std::string::npos; at = log.find("checkpoint written", at + 1)) ++n;
  EXPECT_EQ(n, 1u) << log;
}
