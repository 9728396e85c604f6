#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <thread>

#include "seqgan/checkpoint.h"
#include "tiny.h"

using namespace seqgan;

namespace {
int count_lines(const std::string& path) {
  std::ifstream in(path);
  int n = 0;
  for (std::string line; std::getline(in, line);) ++n;
  return n;
}
}  // namespace

TEST(Signals, SigintWritesACheckpointThenExits130) {
  const std::string dir = test::temp_dir("sigint");
  Config c = test::tiny_tokenizer_config(test::stand_in_loss_network(dir));
  c.train_tokenizer.iterations = 100000;  // would run for hours
  c.train_tokenizer.checkpoint_every = 100000;
  {
    std::ofstream(dir + "/config.json") << config_to_json(c);
  }
  const std::string run = dir + "/run", log = dir + "/log.txt";
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    freopen(log.c_str(), "w", stdout);
    freopen((log + ".err").c_str(), "w", stderr);
    execl(SEQGAN_BINARY, SEQGAN_BINARY, "train-tokenizer", "--config", (dir + "/config.json").c_str(), "--out",
          run.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  // Wait until training has logged a few steps, then interrupt.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(5);
  while (count_lines(run + "/metrics.jsonl") < 3 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_GE(count_lines(run + "/metrics.jsonl"), 3) << "training did not start";
  kill(pid, SIGINT);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status)) << "killed by a signal instead of exiting";
  EXPECT_EQ(WEXITSTATUS(status), 130) << "an interrupted run must not report success";
  std::ifstream in(log);
  const std::string out((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(out.find("stopped at step"), std::string::npos) << out;
  const auto meta = read_checkpoint_meta(run + "/checkpoint.safetensors");
  EXPECT_GE(meta.step, 3);
  EXPECT_EQ(read_checkpoint_meta(run + "/tokenizer.safetensors").step, meta.step);
}
