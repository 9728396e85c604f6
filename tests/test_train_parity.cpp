// Every training step checked against PyTorch, as llm.c checks its training: each trainer runs
// 10 optimiser steps with a step trace (RunOptions::trace_dir), then
// `python3 -m seqgan_torch.train_parity` replays them in PyTorch (python/seqgan_torch/
// train_reference.py) from the same initial weights and batches, with its own weights and
// optimisers from then on, and reports every loss term and every gradient of every step. The
// tolerances below are per term; the figures seen when they were set are beside them. Skipped
// when /usr/bin/python3 has no torch (Debian: apt-get install python3-torch).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cmath>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>

#include "python_fixtures.h"
#include "seqgan/config.h"
#include "seqgan/train.h"
#include "tiny.h"

using namespace seqgan;
using nlohmann::json;

namespace {

constexpr int64_t kSteps = 10;

using test::python_with_torch;

// |seqgan - torch| <= rtol |torch| + atol.
struct Tolerance {
  double rtol, atol;
};

// Loss terms: float32 arithmetic in both, the same libtorch kernels, different op order in
// places; the trajectories drift apart by rounding over the steps. Seen over 10 steps: at most
// 4e-7 relative (the R1 penalty), 0 for the transformers' cross-entropy.
Tolerance loss_tolerance(const std::string& term) {
  // The R1 penalty is ~1e-6 at initialisation: relative error on a tiny value, hence the atol.
  if (term == "r1") return {1e-4, 1e-9};
  // The entropy regulariser is gamma H (about -0.03): a difference of sign or weight is 100%.
  if (term == "entropy") return {1e-4, 1e-8};
  return {1e-4, 1e-7};  // l1, perceptual (and its groups), codebook, commit, g_adv, adv_weight, d_loss, loss
}

// Gradients, per tensor in L2 norm: ||g_seqgan - g_torch|| <= 1e-3 ||g_torch|| + 1e-6 times the
// step's largest gradient norm. Seen: at most 7e-6 relative; gradients that are zero but for
// rounding (attention key biases, ~1e-11 against ~1e-1) are covered by the second term.
constexpr double kGradRtol = 1e-3, kGradAtolOfLargest = 1e-6;

struct Replay {
  int rc = -1;
  std::string output;
  json result;
};

Replay replay(const std::string& trace) {
  const std::string source = SEQGAN_SOURCE_DIR;
  const std::string out = trace + ".json", log = trace + ".log";
  const std::string cmd = "PYTHONDONTWRITEBYTECODE=1 PYTHONPATH='" + source +
                          "/python' /usr/bin/python3 -m seqgan_torch.train_parity --threads 1 '" + trace + "' > '" + out +
                          "' 2> '" + log + "'";
  Replay r;
  const int status = std::system(cmd.c_str());
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.output = test::read_file_text(log);
  if (r.rc == 0) r.result = json::parse(test::read_file_text(out));
  return r;
}

// Checks every term and gradient of every one of `steps` steps, each tolerance widened by
// `widen`; returns how many figures were compared.
int64_t expect_parity(const std::string& trace, const std::vector<std::string>& required_terms, int64_t steps_expected = kSteps,
                      double widen = 1) {
  const Replay r = replay(trace);
  EXPECT_EQ(r.rc, 0) << "train_parity failed:\n" << r.output;
  if (r.rc != 0) return 0;
  const auto& steps = r.result.at("steps");
  EXPECT_EQ(static_cast<int64_t>(steps.size()), steps_expected);
  int64_t compared = 0;
  double worst_loss = 0, worst_grad = 0;  // relative to the tolerance's scale, for the log
  std::string worst_loss_at, worst_grad_at;
  for (const auto& step : steps) {
    const int64_t n = step.at("step").get<int64_t>();
    for (const auto& term : required_terms)
      if (n == steps_expected) EXPECT_TRUE(step.at("losses").contains(term)) << "step " << n << " has no " << term;
    for (const auto& [term, pair] : step.at("losses").items()) {
      const double s = pair[0].get<double>(), t = pair[1].get<double>();
      const Tolerance tol = loss_tolerance(term);
      EXPECT_LE(std::abs(s - t), widen * (tol.rtol * std::abs(t) + tol.atol))
          << "step " << n << ", " << term << ": seqgan " << s << ", torch " << t;
      if (std::abs(s - t) / std::max(std::abs(t), 1e-12) > worst_loss) {
        worst_loss = std::abs(s - t) / std::max(std::abs(t), 1e-12);
        worst_loss_at = "step " + std::to_string(n) + " " + term;
      }
      ++compared;
    }
    double largest = 0;
    for (const auto& [name, pair] : step.at("grads").items()) largest = std::max(largest, pair[1].get<double>());
    for (const auto& [name, pair] : step.at("grads").items()) {
      const double err = pair[0].get<double>(), ref = pair[1].get<double>();
      EXPECT_LE(err, widen * (kGradRtol * ref + kGradAtolOfLargest * largest))
          << "step " << n << ", gradient of " << name << ": |seqgan - torch| " << err << ", |torch| " << ref;
      const double ratio = err / (ref + 1e-3 * largest);
      if (ratio > worst_grad) {
        worst_grad = ratio;
        worst_grad_at = "step " + std::to_string(n) + " " + name;
      }
      ++compared;
    }
  }
  std::cout << "[ parity   ] " << compared << " figures; worst loss term " << worst_loss << " relative (" << worst_loss_at
            << "); worst gradient |diff| / (|torch| + 1e-3 largest) " << worst_grad << " (" << worst_grad_at << ")\n";
  return compared;
}

// The tiny tokenizer with every term of the objective on: the entropy regulariser, both tap
// groups (alpha 0.5) with LPIPS-style normalisation, the GAN from step 3 at a fixed weight, lazy
// R1 every 2nd discriminator step. (The adaptive weight has its own test below.) The loss network
// is a random 16-channel classifier: it checks the arithmetic, not what the loss teaches.
Config tokenizer_config(const std::string& dir) {
  Config c = test::tiny_tokenizer_config(test::stand_in_loss_network(dir, 16, 16));
  c.threads = 1;
  c.data.num_workers = 0;
  c.perceptual.lpips_normalize = true;
  c.discriminator.adaptive_weight = false;
  c.discriminator.adv_weight = 0.5;
  c.discriminator.r1_gamma = 10;
  c.train_tokenizer.iterations = kSteps;
  c.train_tokenizer.image_every = kSteps;
  c.train_tokenizer.checkpoint_every = kSteps;
  c.phase2.train.iterations = kSteps;
  c.phase2.train.image_every = kSteps;
  c.phase2.train.checkpoint_every = kSteps;
  return c;
}

TEST(TrainParity, TokenizerPhase1WithGanMatchesPyTorch) {
  if (!python_with_torch()) GTEST_SKIP() << "/usr/bin/python3 with torch is not installed (apt-get install python3-torch)";
  const std::string dir = test::temp_dir("parity-phase1");
  TokenizerTrainOptions o;
  o.config = tokenizer_config(dir);
  ASSERT_GT(o.config.quantizer.entropy_gamma, 0);
  o.run_dir = dir + "/run";
  o.trace_dir = dir + "/trace";
  train_tokenizer(o);
  const int64_t n = expect_parity(o.trace_dir, {"l1", "perceptual", "perceptual.low", "perceptual.sem", "codebook",
                                                "commit", "entropy", "g_adv", "adv_weight", "d_loss", "r1", "loss"});
  EXPECT_GT(n, 0);
  if (!::testing::Test::HasFailure()) test::remove_tree(dir);  // kept for a look when it fails
}

// VQGAN's adaptive weight |grad L_rec| / |grad L_G| at the decoder's last layer, the GAN on from
// the first step: a ratio of two gradient norms, the second small at a random discriminator, so
// it is the most rounding-sensitive figure here. (With a 4-channel loss network, whose few ReLUs
// and max-pools flip on rounding, it drifted to 1e-1 by step 10; the 16-channel one keeps it
// near 1e-6.)
TEST(TrainParity, TokenizerAdaptiveGanWeightMatchesPyTorch) {
  if (!python_with_torch()) GTEST_SKIP() << "/usr/bin/python3 with torch is not installed (apt-get install python3-torch)";
  const std::string dir = test::temp_dir("parity-adaptive");
  TokenizerTrainOptions o;
  o.config = tokenizer_config(dir);
  o.config.discriminator.adaptive_weight = true;
  o.config.discriminator.adv_weight = 0.8;
  o.config.discriminator.start_iter = 0;
  o.run_dir = dir + "/run";
  o.trace_dir = dir + "/trace";
  train_tokenizer(o);
  EXPECT_GT(expect_parity(o.trace_dir, {"g_adv", "adv_weight", "d_loss", "r1", "loss"}), 0);
  if (!::testing::Test::HasFailure()) test::remove_tree(dir);
}

TEST(TrainParity, TokenizerPhase2MatchesPyTorch) {
  if (!python_with_torch()) GTEST_SKIP() << "/usr/bin/python3 with torch is not installed (apt-get install python3-torch)";
  const std::string dir = test::temp_dir("parity-phase2");
  TokenizerTrainOptions p1;
  p1.config = tokenizer_config(dir);
  p1.config.train_tokenizer.iterations = 4;
  p1.run_dir = dir + "/phase1";
  const auto r1 = train_tokenizer(p1);
  TokenizerTrainOptions p2;
  p2.config = tokenizer_config(dir);
  p2.config.phase2.alpha = 0.25;  // both groups, so that a change to either weight shows
  p2.phase = 2;
  p2.init = r1.model_path;
  p2.run_dir = dir + "/phase2";
  p2.trace_dir = dir + "/trace";
  train_tokenizer(p2);
  // The replay trains the decoder alone: a gradient for the encoder or codebook in the trace
  // is a parameter on one side only, which train_parity refuses.
  const int64_t n = expect_parity(p2.trace_dir, {"l1", "perceptual", "perceptual.low", "perceptual.sem", "g_adv",
                                                 "adv_weight", "d_loss", "r1", "loss"});
  EXPECT_GT(n, 0);
  if (!::testing::Test::HasFailure()) test::remove_tree(dir);  // kept for a look when it fails
}

// The toy token language of tiny.h, a two-layer transformer without dropout (its draws cannot be
// replayed), label smoothing, class dropout (the null condition) and weight decay.
TransformerTrainOptions transformer_options(const std::string& dir, bool causal) {
  TransformerTrainOptions o;
  o.config = make_preset("fmnist");
  o.config.threads = 1;
  o.config.transformer.layers = 2;
  o.config.transformer.width = 32;
  o.config.transformer.heads = 2;
  o.config.transformer.mlp = 64;
  o.config.transformer.dropout = 0;
  for (auto* t : {&o.config.train_ar, &o.config.train_nar}) {
    t->batch_size = 16;
    t->iterations = kSteps;
    t->warmup = 3;
    t->label_smoothing = 0.1;
    t->class_dropout = 0.2;
    t->weight_decay = 0.05;
    t->val_every = kSteps;
    t->checkpoint_every = kSteps;
  }
  test::write_toy_tokens(dir + "/tokens.safetensors", 256, 4, 10, 2, 32);
  o.tokens = dir + "/tokens.safetensors";
  o.causal = causal;
  o.run_dir = dir + "/run";
  o.trace_dir = dir + "/trace";
  return o;
}

TEST(TrainParity, ArTransformerMatchesPyTorch) {
  if (!python_with_torch()) GTEST_SKIP() << "/usr/bin/python3 with torch is not installed (apt-get install python3-torch)";
  const std::string dir = test::temp_dir("parity-ar");
  train_transformer(transformer_options(dir, true));
  EXPECT_GT(expect_parity(dir + "/trace", {"loss"}), 0);
  if (!::testing::Test::HasFailure()) test::remove_tree(dir);  // kept for a look when it fails
}

TEST(TrainParity, NarTransformerMatchesPyTorch) {
  if (!python_with_torch()) GTEST_SKIP() << "/usr/bin/python3 with torch is not installed (apt-get install python3-torch)";
  const std::string dir = test::temp_dir("parity-nar");
  train_transformer(transformer_options(dir, false));
  EXPECT_GT(expect_parity(dir + "/trace", {"loss"}), 0);
  if (!::testing::Test::HasFailure()) test::remove_tree(dir);  // kept for a look when it fails
}

}  // namespace
