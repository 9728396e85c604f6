// Data-parallel training over c10d (Gloo): W ranks with batch b reach the weights one process
// reaches with batch W*b, for the tokenizer (both networks, GAN and lazy R1 included, the entropy
// regulariser over the global batch) and the AR transformer; a run continues from its checkpoint
// with another number of ranks; a rank that dies stops the others within a bounded time. The
// ranks are real processes of the seqgan command, started by scripts/launch.sh or by hand.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>

#include "seqgan/config.h"
#include "seqgan/safetensors.h"
#include "tiny.h"
#include "tokenizer/tokens.h"
#include "train/distributed.h"

namespace {

using namespace seqgan;

// A port of its own for every test process, so that tests running side by side do not meet.
int free_port_guess() { return 20000 + static_cast<int>(::getpid() % 20000); }

std::string quoted(const std::string& s) { return "'" + s + "'"; }

std::string read_all(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Runs a shell command; returns its exit status (-1 when it did not exit normally).
int shell(const std::string& cmd) {
  const int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

// `seqgan ARGS` with one process (no distributed variables) or `launch.sh --nproc N -- seqgan ARGS`.
int seqgan_run(const std::string& args, int ranks, const std::string& log) {
  const std::string bin = SEQGAN_BINARY;
  std::string cmd = "env -u WORLD_SIZE -u RANK -u LOCAL_RANK -u LOCAL_WORLD_SIZE ";
  if (ranks > 1)
    cmd += "bash " + quoted(std::string(SEQGAN_SOURCE_DIR) + "/scripts/launch.sh") + " --nproc " + std::to_string(ranks) +
           " --master-port " + std::to_string(free_port_guess()) + " -- ";
  cmd += quoted(bin) + " " + args + " > " + quoted(log) + " 2>&1";
  return shell(cmd);
}

// The values of `key` in the rows of `kind` of RUN/metrics.jsonl, by step.
std::map<int64_t, double> metric(const std::string& run, const std::string& kind, const std::string& key) {
  std::map<int64_t, double> out;
  std::ifstream in(run + "/metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    const auto j = nlohmann::json::parse(line);
    if (j["kind"] == kind && j.contains(key) && j[key].is_number()) out[j["step"].get<int64_t>()] = j[key].get<double>();
  }
  return out;
}

// Largest |a - b| / max |a| over the tensors of two checkpoints whose names start with `prefix`
// (all of them for ""); fails the test when the names differ.
double max_relative_difference(const std::string& a, const std::string& b, const std::string& prefix = "") {
  const auto fa = safetensors::load(a), fb = safetensors::load(b);
  double worst = 0;
  int compared = 0;
  for (const auto& [name, ta] : fa.tensors) {
    if (name.rfind(prefix, 0) != 0 || !at::isFloatingType(ta.scalar_type())) continue;
    EXPECT_TRUE(fb.tensors.count(name)) << name << " missing from " << b;
    if (!fb.tensors.count(name)) continue;
    auto x = ta.to(at::kDouble), y = fb.tensors.at(name).to(at::kDouble);
    if (name.size() > 13 && name.compare(name.size() - 13, 13, "attn.qkv.bias") == 0) {
      // The key bias adds the same q.b to every score of a query, which softmax ignores: its
      // gradient is rounding noise around zero, and Adam turns noise into full-size steps of
      // either sign. Only the query and value parts are compared.
      const int64_t w = x.size(0) / 3;
      x = at::cat({x.narrow(0, 0, w), x.narrow(0, 2 * w, w)});
      y = at::cat({y.narrow(0, 0, w), y.narrow(0, 2 * w, w)});
    }
    const double scale = std::max(x.abs().max().item<double>(), 1e-12);
    worst = std::max(worst, (x - y).abs().max().item<double>() / scale);
    ++compared;
  }
  EXPECT_GT(compared, 0) << "no tensors under '" << prefix << "' in " << a;
  return worst;
}

class Distributed : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!ProcessGroup::available("gloo")) GTEST_SKIP() << "this build has no Gloo (install libgloo-dev and rebuild)";
    dir = test::temp_dir(::testing::UnitTest::GetInstance()->current_test_info()->name());
  }
  void TearDown() override {
    if (!HasFailure()) test::remove_tree(dir);
  }
  // The tiny tokenizer of the loop tests with a global batch of 16 (8 per rank of two: the
  // minibatch-stddev groups of 4 then hold the same images as in one process), the GAN from
  // step 2 and R1 every second discriminator step.
  std::string tokenizer_config(int64_t iterations) {
    Config c = test::tiny_tokenizer_config(test::stand_in_loss_network(dir));
    c.threads = 1;
    c.device = "cpu";  // Gloo; NCCL wants a GPU per rank
    c.train_tokenizer.batch_size = 16;
    c.train_tokenizer.iterations = iterations;
    c.train_tokenizer.checkpoint_every = 100;
    c.phase2.train.checkpoint_every = 100;
    const std::string path = dir + "/tokenizer.json";
    std::ofstream(path) << config_to_json(c);
    return path;
  }
  std::string dir;
};

TEST_F(Distributed, TokenizerTwoRanksMatchOneRankWithTheGlobalBatch) {
  const std::string config = tokenizer_config(4);
  ASSERT_EQ(seqgan_run("train-tokenizer --config " + quoted(config) + " --out " + quoted(dir + "/one"), 1, dir + "/one.log"), 0)
      << read_all(dir + "/one.log");
  ASSERT_EQ(seqgan_run("train-tokenizer --config " + quoted(config) + " --out " + quoted(dir + "/two"), 2, dir + "/two.log"), 0)
      << read_all(dir + "/two.log");
  const std::string log = read_all(dir + "/two.log");
  EXPECT_NE(log.find("[rank 1] rank 1 of 2 joined the gloo process group"), std::string::npos) << log;
  // Float32 sums in another order (two partial batches, then the all-reduce); Adam divides by
  // small second moments, which magnifies that rounding the most.
  const std::string a = dir + "/one/checkpoint.safetensors", b = dir + "/two/checkpoint.safetensors";
  EXPECT_LT(max_relative_difference(a, b, "encoder."), 1e-4);
  EXPECT_LT(max_relative_difference(a, b, "quantizer."), 1e-4);
  EXPECT_LT(max_relative_difference(a, b, "decoder."), 1e-4);
  EXPECT_LT(max_relative_difference(a, b, "disc."), 1e-4);
  EXPECT_LT(max_relative_difference(a, b, "opt_g."), 1e-3);
  // Logged losses are averaged over ranks: the same curve.
  const auto one = test::losses(dir + "/one", "tokenizer_phase1"), two = test::losses(dir + "/two", "tokenizer_phase1");
  ASSERT_EQ(one.size(), 4u);
  ASSERT_EQ(two.size(), 4u);
  for (const auto& [step, loss] : one) EXPECT_NEAR(two.at(step), loss, 1e-4 * std::abs(loss)) << "step " << step;
  // So are the code statistics: of the global batch, not of rank 0's half.
  for (const std::string key : {"perplexity", "codes_in_batch"}) {
    const auto a1 = metric(dir + "/one", "tokenizer_phase1", key), a2 = metric(dir + "/two", "tokenizer_phase1", key);
    ASSERT_EQ(a1.size(), 4u) << key;
    // The weights agree to about 1e-4, so a code near a boundary may flip: 2% (per-rank figures
    // are off by a sixth or more).
    for (const auto& [step, v] : a1) EXPECT_NEAR(a2.at(step), v, 0.02 * std::abs(v) + 1e-9) << key << " at step " << step;
  }
}

TEST_F(Distributed, TokenizerResumesWithAnotherNumberOfRanks) {
  const std::string config = tokenizer_config(4);
  ASSERT_EQ(seqgan_run("train-tokenizer --config " + quoted(config) + " --out " + quoted(dir + "/one"), 1, dir + "/one.log"), 0)
      << read_all(dir + "/one.log");
  // Two steps on two ranks, then the rest on one process from their checkpoint.
  ASSERT_EQ(seqgan_run("train-tokenizer --config " + quoted(config) + " --max-steps 2 --out " + quoted(dir + "/mixed"), 2,
                       dir + "/mixed.log"),
            0)
      << read_all(dir + "/mixed.log");
  ASSERT_EQ(seqgan_run("train-tokenizer --config " + quoted(config) + " --resume --out " + quoted(dir + "/mixed"), 1,
                       dir + "/resume.log"),
            0)
      << read_all(dir + "/resume.log");
  EXPECT_NE(read_all(dir + "/resume.log").find("resuming at step 2"), std::string::npos) << read_all(dir + "/resume.log");
  EXPECT_LT(max_relative_difference(dir + "/one/checkpoint.safetensors", dir + "/mixed/checkpoint.safetensors", "decoder."),
            1e-4);
  EXPECT_LT(max_relative_difference(dir + "/one/checkpoint.safetensors", dir + "/mixed/checkpoint.safetensors", "disc."),
            1e-4);
}

TEST_F(Distributed, TokenizerPhase2TwoRanksMatchOneRank) {
  // Phase 2 trains the decoder (with its new attention) and the inherited discriminator.
  const std::string config = tokenizer_config(2);
  ASSERT_EQ(seqgan_run("train-tokenizer --config " + quoted(config) + " --out " + quoted(dir + "/p1"), 1, dir + "/p1.log"), 0)
      << read_all(dir + "/p1.log");
  const std::string phase2 = "train-tokenizer --phase 2 --set phase2.batch_size=16 --set phase2.iterations=3 --config " +
                             quoted(config) + " --init " + quoted(dir + "/p1/tokenizer.safetensors") + " --out ";
  ASSERT_EQ(seqgan_run(phase2 + quoted(dir + "/one"), 1, dir + "/one.log"), 0) << read_all(dir + "/one.log");
  ASSERT_EQ(seqgan_run(phase2 + quoted(dir + "/two"), 2, dir + "/two.log"), 0) << read_all(dir + "/two.log");
  const std::string a = dir + "/one/checkpoint.safetensors", b = dir + "/two/checkpoint.safetensors";
  EXPECT_LT(max_relative_difference(a, b, "decoder."), 1e-4);
  EXPECT_LT(max_relative_difference(a, b, "disc."), 1e-4);
  EXPECT_EQ(max_relative_difference(a, b, "encoder."), 0.0);  // frozen
}

TEST_F(Distributed, ArTransformerTwoRanksMatchOneRankWithTheGlobalBatch) {
  test::write_toy_tokens(dir + "/tokens.safetensors", 96, 4, 3, 5, 16);
  Config c = make_preset("fmnist");
  c.threads = 1;
  c.device = "cpu";
  c.transformer.layers = 2;
  c.transformer.width = 32;
  c.transformer.heads = 2;
  c.transformer.mlp = 64;
  c.transformer.dropout = 0.0;  // dropout draws from each rank's generator
  c.train_ar.batch_size = 16;
  c.train_ar.iterations = 5;
  c.train_ar.warmup = 2;
  c.train_ar.log_every = 1;
  c.train_ar.val_fraction = 0.1;
  std::ofstream(dir + "/ar.json") << config_to_json(c);
  const std::string args = "train-transformer --kind ar --config " + quoted(dir + "/ar.json") + " --tokens " +
                           quoted(dir + "/tokens.safetensors") + " --out ";
  ASSERT_EQ(seqgan_run(args + quoted(dir + "/one"), 1, dir + "/one.log"), 0) << read_all(dir + "/one.log");
  ASSERT_EQ(seqgan_run(args + quoted(dir + "/two"), 2, dir + "/two.log"), 0) << read_all(dir + "/two.log");
  EXPECT_LT(max_relative_difference(dir + "/one/checkpoint.safetensors", dir + "/two/checkpoint.safetensors", "model."), 1e-4);
  const auto one = test::losses(dir + "/one", "train"), two = test::losses(dir + "/two", "train");
  ASSERT_EQ(one.size(), 5u);
  for (const auto& [step, loss] : one) EXPECT_NEAR(two.at(step), loss, 1e-4 * std::abs(loss)) << "step " << step;
  // Rank 0 validates; every rank reports the same figures.
  const std::string log = read_all(dir + "/two.log");
  const auto reported = [&](const std::string& prefix) {
    const size_t at = log.find(prefix + "finished at step 5; validation loss ");
    return at == std::string::npos ? std::string("(none)") : log.substr(at + prefix.size(), log.find('\n', at) - at - prefix.size());
  };
  EXPECT_NE(reported("[rank 0] "), "(none)") << log;
  EXPECT_EQ(reported("[rank 1] "), reported("[rank 0] ")) << log;
}

TEST_F(Distributed, ARankThatDiesStopsTheOthersWithAClearError) {
  // Two ranks started by hand (no launcher to clean up after them); rank 1 is killed once rank 0
  // has logged its third step. Rank 0 must fail with an error that says what happened.
  const std::string config = tokenizer_config(100000);
  const std::string script = dir + "/fault.sh";
  std::ofstream(script) << "export WORLD_SIZE=2 LOCAL_WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT="
                        << free_port_guess() << " SEQGAN_DIST_TIMEOUT=20\n"
                        << "cmd=\"" << SEQGAN_BINARY << " train-tokenizer --config " << config << " --out " << dir
                        << "/run\"\n"
                        << "RANK=0 LOCAL_RANK=0 $cmd > " << dir << "/r0.log 2>&1 & p0=$!\n"
                        << "RANK=1 LOCAL_RANK=1 $cmd > " << dir << "/r1.log 2>&1 & p1=$!\n"
                        << "for i in $(seq 1200); do grep -q '^step 3 ' " << dir
                        << "/r0.log && break; sleep 0.05; done\n"
                        << "kill -9 $p1\n"
                        << "start=$(date +%s%N)\n"
                        << "wait $p0; rc=$?\n"
                        << "echo \"$rc $(( ($(date +%s%N) - start) / 1000000 ))\" > " << dir << "/result\n";
  ASSERT_EQ(shell("env -u WORLD_SIZE -u RANK bash " + quoted(script)), 0);
  std::ifstream in(dir + "/result");
  int rc = 0;
  int64_t ms = 0;
  ASSERT_TRUE(in >> rc >> ms);
  const std::string log = read_all(dir + "/r0.log");
  ASSERT_NE(log.find("step 3 |"), std::string::npos) << log;
  EXPECT_NE(rc, 0) << log;
  EXPECT_LT(ms, 30000) << "rank 0 took " << ms << " ms to notice\n" << log;
  EXPECT_NE(log.find("rank 0 of 2"), std::string::npos) << log;
  EXPECT_NE(log.find("another rank has probably stopped"), std::string::npos) << log;
  // No checkpoint was written before the failure: the hint must not promise a resume.
  EXPECT_NE(log.find("no checkpoint was written yet"), std::string::npos) << log;
  EXPECT_NE(log.find("--overwrite"), std::string::npos) << log;
}

TEST_F(Distributed, LauncherStoppedBySigtermExitsNonZero) {
  // Ranks that finish cleanly when told to stop (as training does after its checkpoint): the
  // launcher still reports that the run was stopped, not finished.
  const std::string launch = "bash " + quoted(std::string(SEQGAN_SOURCE_DIR) + "/scripts/launch.sh") +
                             " --nproc 2 --master-port " + std::to_string(free_port_guess()) +
                             " -- bash -c 'trap \"exit 0\" TERM; sleep 60 & wait'";
  const int rc = shell("( " + launch + " > " + quoted(dir + "/launch.log") + " 2>&1 & p=$!; sleep 2; kill -TERM $p; wait $p; exit $? )");
  EXPECT_EQ(rc, 143) << read_all(dir + "/launch.log");
}

TEST_F(Distributed, LauncherStopsTheOtherRanksWhenOneFails) {
  // Rank 1 fails at once; rank 0 would sleep for a minute: the launcher must end it and report
  // rank 1's status.
  const auto start = std::chrono::steady_clock::now();
  const int rc = shell("bash " + quoted(std::string(SEQGAN_SOURCE_DIR) + "/scripts/launch.sh") +
                       " --nproc 2 --master-port " + std::to_string(free_port_guess()) +
                       " -- bash -c 'if [ \"$RANK\" = 1 ]; then echo failing; exit 3; fi; exec sleep 60' > " +
                       quoted(dir + "/launch.log") + " 2>&1");
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const std::string log = read_all(dir + "/launch.log");
  EXPECT_EQ(rc, 3) << log;
  EXPECT_LT(secs, 20.0) << log;
  EXPECT_NE(log.find("[rank 1] failing"), std::string::npos) << log;
  EXPECT_NE(log.find("stopping the others"), std::string::npos) << log;
  EXPECT_EQ(shell("bash " + quoted(std::string(SEQGAN_SOURCE_DIR) + "/scripts/launch.sh") + " --nproc x -- true 2> /dev/null"), 2);
}

}  // namespace
