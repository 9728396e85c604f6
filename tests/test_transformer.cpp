#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "seqgan/error.h"
#include "tiny.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokens.h"
#include "train/transformer_trainer.h"
#include "transformer/cpu_decode.h"
#include "transformer/sampling.h"
#include "transformer/transformer.h"

using namespace seqgan;

namespace {

TransformerConfig tiny_transformer() {
  TransformerConfig c;
  c.layers = 2;
  c.width = 32;
  c.heads = 4;
  c.mlp = 64;
  c.dropout = 0.1;
  c.num_classes = 3;
  return c;
}

TokenSpace tiny_space(int64_t classes = 3) {
  TokenSpace s;
  s.codebook_size = 16;
  s.length = 16;
  s.num_classes = classes;
  return s;
}

at::Tensor bools(const std::vector<int64_t>& v) { return at::tensor(v, at::kLong).to(at::kBool); }

double max_relative_difference(const at::Tensor& a, const at::Tensor& b) {
  return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item<double>();
}

}  // namespace

TEST(Transformer, PaperPresetsHaveThePaperSizes) {
  for (const auto& [preset, expected] : std::vector<std::pair<std::string, double>>{{"paper", 172e6}, {"paper-large", 305e6}}) {
    const Config c = make_preset(preset);
    TokenSpace s;
    s.codebook_size = c.tokenizer.codebook_size;
    s.length = 256;
    s.num_classes = c.transformer.num_classes;
    const double n = static_cast<double>(count_parameters(*Transformer(c.transformer, s, true)));
    EXPECT_NEAR(n / expected, 1.0, 0.01) << preset << ": " << n;
  }
}

TEST(Transformer, VocabularyLayout) {
  const auto s = tiny_space(3);
  EXPECT_EQ(s.mask_token(), 16 + 3);
  EXPECT_EQ(s.vocab_size(), 16 + 3 + 1);
  const auto u = tiny_space(0);
  EXPECT_EQ(u.mask_token(), 17);  // one start token
}

TEST(Transformer, CausalModelIgnoresLaterTokens) {
  torch::manual_seed(1);
  Transformer m(tiny_transformer(), tiny_space(), true);
  m->eval();
  const auto cond = at::tensor({0, 2}, at::kLong);
  auto a = at::randint(16, {2, 15}, at::kLong);
  auto b = a.clone();
  b.narrow(1, 8, 7).random_(16);
  const auto la = m->forward(cond, a), lb = m->forward(cond, b);
  ASSERT_EQ(la.sizes(), (std::vector<int64_t>{2, 16, 16}));
  // Positions 0..8 see the condition and tokens before index 8 only.
  EXPECT_TRUE(at::allclose(la.narrow(1, 0, 9), lb.narrow(1, 0, 9)));
  EXPECT_FALSE(at::allclose(la.narrow(1, 9, 7), lb.narrow(1, 9, 7)));
}

TEST(Transformer, KvCacheMatchesFullRecomputeAtEveryStep) {
  torch::manual_seed(2);
  Transformer m(tiny_transformer(), tiny_space(), true);
  m->eval();
  torch::NoGradGuard ng;
  const auto cond = at::tensor({1, 0, 2}, at::kLong);
  const auto codes = at::randint(16, {3, 16}, at::kLong);
  const auto full = m->forward(cond, codes.narrow(1, 0, 15));  // [3, 16, 16]
  at::Tensor logits;
  auto cache = m->start(cond, &logits);
  for (int64_t i = 0; i < 16; ++i) {
    EXPECT_LE(max_relative_difference(logits, full.select(1, i)), 1e-5) << "position " << i;
    if (i < 15) logits = m->step(cache, codes.select(1, i));
  }
  // A chunk of several tokens at once (prefill) gives the same logits too.
  auto cache2 = m->start(cond, nullptr);
  const auto chunk = m->step(cache2, codes.narrow(1, 0, 7));
  EXPECT_LE(max_relative_difference(chunk, full.select(1, 7)), 1e-5);
  EXPECT_LE(max_relative_difference(m->step(cache2, codes.select(1, 7)), full.select(1, 8)), 1e-5);
}

TEST(Transformer, BidirectionalModelSeesEveryToken) {
  torch::manual_seed(3);
  Transformer m(tiny_transformer(), tiny_space(), false);
  m->eval();
  const auto cond = at::tensor({0}, at::kLong);
  auto a = at::randint(16, {1, 16}, at::kLong);
  auto b = a.clone();
  b[0][15] = (a[0][15].item<int64_t>() + 1) % 16;
  const auto la = m->forward(cond, a), lb = m->forward(cond, b);
  ASSERT_EQ(la.sizes(), (std::vector<int64_t>{1, 16, 16}));
  EXPECT_FALSE(at::allclose(la.select(1, 0), lb.select(1, 0)));
}

TEST(Transformer, ClassOutOfRangeIsAnError) {
  Transformer m(tiny_transformer(), tiny_space(), true);
  EXPECT_THROW(m->forward(at::tensor({3}, at::kLong), at::zeros({1, 15}, at::kLong)), Error);
}

TEST(Transformer, WeightDecayOnlyOnLinearWeights) {
  Transformer m(tiny_transformer(), tiny_space(), true);
  std::set<std::string> decayed;
  for (const auto& p : m->named_parameters())
    if (decays(p.key())) decayed.insert(p.key());
  EXPECT_TRUE(decayed.count("blocks.0.attn.qkv.weight"));
  EXPECT_TRUE(decayed.count("blocks.1.fc2.weight"));
  EXPECT_TRUE(decayed.count("head.weight"));
  EXPECT_FALSE(decayed.count("blocks.0.ln1.weight"));
  EXPECT_FALSE(decayed.count("blocks.0.fc1.bias"));
  EXPECT_FALSE(decayed.count("tok_emb.weight"));
  EXPECT_FALSE(decayed.count("pos_emb"));
}

// ---- sampling semantics ----

TEST(Sampling, TopKKeepsExactlyTheKMostLikely) {
  const auto logits = at::tensor({0.1, 3.0, -1.0, 2.0, 0.5}, at::kFloat).unsqueeze(0);
  const auto f = filter_logits(logits, 1.0, 2, 1.0);
  const auto kept = at::isfinite(f)[0];
  EXPECT_TRUE(at::equal(kept, bools({0, 1, 0, 1, 0})));
  EXPECT_FLOAT_EQ(f[0][1].item<float>(), 3.0f);
  // k = 0 and k >= K keep everything.
  EXPECT_TRUE(at::isfinite(filter_logits(logits, 1.0, 0, 1.0)).all().item<bool>());
  EXPECT_TRUE(at::isfinite(filter_logits(logits, 1.0, 9, 1.0)).all().item<bool>());
}

TEST(Sampling, TopPKeepsTheSmallestSetReachingTheMass) {
  const auto probs = at::tensor({0.05, 0.5, 0.15, 0.3}, at::kDouble);
  const auto logits = probs.log().to(at::kFloat).unsqueeze(0);
  auto kept = [&](double p) { return at::isfinite(filter_logits(logits, 1.0, 0, p))[0]; };
  EXPECT_TRUE(at::equal(kept(0.5), bools({0, 1, 0, 0})));   // 0.5 reaches 0.5
  EXPECT_TRUE(at::equal(kept(0.79), bools({0, 1, 0, 1})));   // 0.5 + 0.3
  EXPECT_TRUE(at::equal(kept(0.81), bools({0, 1, 1, 1})));    // + 0.15
  EXPECT_TRUE(at::equal(kept(0.01), bools({0, 1, 0, 0})));  // the top code always stays
  EXPECT_TRUE(at::equal(kept(1.0), bools({1, 1, 1, 1})));
}

TEST(Sampling, TemperatureDividesLogits) {
  const auto logits = at::randn({3, 10});
  const auto f = filter_logits(logits, 0.5, 0, 1.0);
  EXPECT_TRUE(at::allclose(f, logits * 2.0));
  EXPECT_THROW(filter_logits(logits, 0.0, 0, 1.0), Error);
}

TEST(Sampling, CategoricalIsTheInverseCdf) {
  const auto probs = at::tensor({0.2, 0.0, 0.5, 0.3}, at::kDouble).repeat({5, 1});
  const auto u = at::tensor({0.0, 0.19, 0.2, 0.69, 0.999999}, at::kDouble);
  const auto s = sample_categorical(probs, u);
  EXPECT_TRUE(at::equal(s, at::tensor({0, 0, 2, 2, 3}, at::kLong)));
}

TEST(Sampling, CategoricalFrequenciesFollowTheProbabilities) {
  auto gen = make_generator(5);
  const auto probs = at::tensor({0.1, 0.6, 0.3}, at::kDouble).repeat({20000, 1});
  const auto s = sample_categorical(probs, uniform_like(gen, {20000}, probs.options()));
  const auto freq = at::bincount(s, {}, 3).to(at::kDouble) / 20000.0;
  EXPECT_NEAR(freq[0].item<double>(), 0.1, 0.01);
  EXPECT_NEAR(freq[1].item<double>(), 0.6, 0.015);
  EXPECT_NEAR(freq[2].item<double>(), 0.3, 0.015);
}

TEST(Sampling, FusedCpuDecoderMatchesTheModules) {
  // CpuArDecoder against start/step of the modules, step by step: a batch of 3 (BLAS sgemm) with
  // 3 heads of 16, and a batch of 1 (sgemv) at width 256, where the larger products are split
  // over the threads; weights moved off their initial values so that no bias is zero. Then whole
  // sampling runs with and without it.
  auto check = [](int64_t width, int64_t heads, int64_t mlp, int64_t batch) {
    SCOPED_TRACE("width " + std::to_string(width) + ", batch " + std::to_string(batch));
    torch::manual_seed(11);
    TransformerConfig tc = tiny_transformer();
    tc.width = width;
    tc.heads = heads;
    tc.mlp = mlp;
    tc.layers = 3;
    Transformer m(tc, tiny_space(), true);
    torch::NoGradGuard ng;
    for (auto& p : m->parameters()) p.add_(at::randn_like(p) * 0.05);
    m->eval();
    const auto cond = at::arange(batch, at::kLong) % 3;
    at::Tensor expected;
    KVCache cache = m->start(cond, &expected);
    CpuArDecoder fused(*m, batch);
    auto got = fused.step(m->condition_tokens(cond, batch, torch::kCPU));
    for (int64_t i = 0; i + 1 < tiny_space().length; ++i) {
      ASSERT_TRUE(at::allclose(got, expected, 1e-4, 1e-5))
          << "position " << i << ": max difference " << (got - expected).abs().max().item<double>();
      const auto next = at::randint(tiny_space().codebook_size, {batch}, at::kLong);
      expected = m->step(cache, next);
      got = fused.step(next);
    }
    EXPECT_EQ(fused.position(), tiny_space().length);
    EXPECT_THROW(fused.step(at::zeros({batch}, at::kLong)), Error);  // beyond the last position

    ArSampleOptions o;
    o.top_p = 0.9;
    auto g1 = make_generator(3), g2 = make_generator(3);
    const auto a = sample_ar(*m, cond, batch, o, g1);
    o.fused_cpu = false;
    const auto b = sample_ar(*m, cond, batch, o, g2);
    EXPECT_TRUE(at::equal(a, b));
  };
  check(48, 3, 80, 3);
  check(256, 4, 1024, 1);
  EXPECT_FALSE(CpuArDecoder::supports(*Transformer(tiny_transformer(), tiny_space(), false)));  // NAR: not causal
  EXPECT_THROW(CpuArDecoder(*Transformer(tiny_transformer(), tiny_space(), false), 1), Error);
}

TEST(Sampling, ArWithCacheEqualsRecomputeAndSeedsRepeat) {
  torch::manual_seed(4);
  Transformer m(tiny_transformer(), tiny_space(), true);
  m->eval();
  const auto cond = at::tensor({0, 1, 2, 1}, at::kLong);
  ArSampleOptions o;
  o.top_p = 0.9;
  o.temperature = 1.3;
  auto g1 = make_generator(7), g2 = make_generator(7), g3 = make_generator(8);
  const auto cached = sample_ar(*m, cond, 4, o, g1);
  o.use_cache = false;
  const auto recomputed = sample_ar(*m, cond, 4, o, g2);
  EXPECT_TRUE(at::equal(cached, recomputed));
  EXPECT_EQ(cached.sizes(), (std::vector<int64_t>{4, 16}));
  EXPECT_TRUE((cached >= 0).all().item<bool>() && (cached < 16).all().item<bool>());
  o.use_cache = true;
  EXPECT_FALSE(at::equal(sample_ar(*m, cond, 4, o, g3), cached));
}

TEST(Sampling, NarScheduleCounts) {
  // L = 256, 12 steps: floor(256 cos(pi/2 (t+1)/12)).
  std::vector<int64_t> got;
  int64_t unknown = 256;
  for (int64_t t = 0; t < 11; ++t) {
    unknown = nar_masked_after(t, 12, 256, unknown);
    got.push_back(unknown);
  }
  const std::vector<int64_t> want{253, 247, 236, 221, 203, 181, 155, 128, 97, 66, 33};
  EXPECT_EQ(got, want);
  EXPECT_EQ(nar_masked_after(11, 12, 256, 33), 1);  // cos(pi / 2) = 0, but at least 1
  EXPECT_EQ(nar_masked_after(0, 12, 256, 1), 0);  // never more than unknown - 1
}

TEST(Sampling, NarKeepsDecidedTokensAndDecidesEverything) {
  torch::manual_seed(5);
  Transformer m(tiny_transformer(), tiny_space(), false);
  m->eval();
  const auto cond = at::tensor({0, 2, 1}, at::kLong);
  NarSampleOptions o;
  o.steps = 6;
  auto gen = make_generator(11);
  std::vector<at::Tensor> trace;
  const auto out = sample_nar(*m, cond, 3, o, gen, &trace);
  const int64_t mask = tiny_space().mask_token();
  ASSERT_EQ(static_cast<int64_t>(trace.size()), 6);
  int64_t unknown = 16;
  for (size_t t = 0; t < trace.size(); ++t) {
    const auto known = trace[t] != mask;
    if (t + 1 < trace.size()) {
      unknown = nar_masked_after(static_cast<int64_t>(t), 6, 16, unknown);
      EXPECT_TRUE(at::equal((~known).sum(1), at::full({3}, unknown, at::kLong))) << "step " << t;
    }
    if (t > 0) {
      // A token decided at step t - 1 is still there, unchanged, at step t.
      const auto before = trace[t - 1] != mask;
      EXPECT_TRUE(at::equal(trace[t].masked_select(before), trace[t - 1].masked_select(before))) << "step " << t;
    }
  }
  EXPECT_FALSE((out == mask).any().item<bool>());
  EXPECT_TRUE((out >= 0).all().item<bool>() && (out < 16).all().item<bool>());
  auto gen2 = make_generator(11);
  EXPECT_TRUE(at::equal(sample_nar(*m, cond, 3, o, gen2), out));
}

TEST(Sampling, NarTrainingMaskRatio) {
  auto gen = make_generator(3);
  const auto tokens = at::zeros({4000, 64}, at::kLong);
  const auto mask = nar_training_mask(tokens, gen);
  const auto per_row = mask.sum(1).to(at::kDouble);
  EXPECT_GE(per_row.min().item<double>(), 1);
  EXPECT_LE(per_row.max().item<double>(), 64);
  // E[cos(pi r / 2)] = 2 / pi for r ~ U[0, 1).
  EXPECT_NEAR(per_row.mean().item<double>() / 64.0, 2.0 / M_PI, 0.02);
}

// ---- training ----

namespace {

class TransformerTrainer : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = test::temp_dir(::testing::UnitTest::GetInstance()->current_test_info()->name());
    // A learnable toy language: each image repeats its class id with noise.
    test::write_toy_tokens(dir + "/tokens.safetensors", 96, 4, 3, 5, 16);
    config = make_preset("fmnist");
    config.threads = 2;
    config.device = "cpu";  // exact resume is a CPU promise (CUDA kernels may reduce in any order)
    config.transformer = tiny_transformer();
    for (auto* t : {&config.train_ar, &config.train_nar}) {
      t->batch_size = 8;
      t->iterations = 6;
      t->warmup = 2;
      t->decay_start = 3;
      t->log_every = 1;
      t->val_every = 3;
      t->checkpoint_every = 100;
      t->val_fraction = 0.1;
    }
  }
  TransformerTrainResult run(const std::string& name, bool causal, bool resume = false, int64_t max_steps = -1) {
    TransformerTrainOptions o;
    o.config = config;
    o.run_dir = dir + "/" + name;
    o.causal = causal;
    o.tokens = dir + "/tokens.safetensors";
    o.resume = resume;
    o.max_steps = max_steps;
    return train_transformer(o);
  }
  std::string dir;
  Config config;
};

}  // namespace

TEST_F(TransformerTrainer, ArAndNarResumeExactly) {
  for (const bool causal : {true, false}) {
    const std::string k = causal ? "ar" : "nar";
    const auto full = run(k + "-full", causal);
    EXPECT_EQ(full.step, 6);
    const auto first = run(k + "-split", causal, false, 4);
    EXPECT_TRUE(first.interrupted);
    const auto second = run(k + "-split", causal, true);
    EXPECT_EQ(second.step, 6);
    const auto a = test::losses(dir + "/" + k + "-full", "train"), b = test::losses(dir + "/" + k + "-split", "train");
    ASSERT_EQ(a.size(), 6u) << k;
    ASSERT_EQ(b.size(), 6u) << k;
    for (const auto& [step, loss] : a) EXPECT_EQ(b.at(step), loss) << k << " step " << step;
    EXPECT_TRUE(test::same_weights(dir + "/" + k + "-full/transformer.safetensors", dir + "/" + k + "-split/transformer.safetensors")) << k;
    EXPECT_EQ(full.val_loss, second.val_loss) << k;
  }
}

TEST_F(TransformerTrainer, LearnsTheToyLanguageAndLoadsBack) {
  config.train_ar.iterations = 400;
  config.train_ar.lr = 3e-3;
  config.train_ar.val_every = 1000;
  config.train_ar.log_every = 50;
  config.transformer.dropout = 0.0;
  config.train_ar.class_dropout = 0.0;  // every step sees the class: the condition is what is measured
  const auto r = run("learn", true);
  // Given the class, each code is one of two equally likely values: loss ln 2 is the floor.
  EXPECT_LT(r.val_loss, 1.0) << "validation loss " << r.val_loss;
  auto loaded = load_transformer(r.model_path, torch::kCPU);
  EXPECT_TRUE(loaded.model->causal());
  EXPECT_EQ(loaded.space.codebook_size, 16);
  EXPECT_EQ(loaded.space.length, 16);
  EXPECT_EQ(loaded.space.num_classes, 3);
  auto gen = make_generator(1);
  const auto s = sample_ar(*loaded.model, at::tensor({2, 0}, at::kLong), 2, {}, gen);
  // Samples of class c use codes 5c and 5c + 1 almost always.
  const auto base = at::tensor({10, 0}, at::kLong).unsqueeze(1);
  const double in_class = ((s - base >= 0) & (s - base <= 1)).to(at::kDouble).mean().item<double>();
  EXPECT_GT(in_class, 0.9) << s;
}

TEST_F(TransformerTrainer, LabelsBeyondTheClassCountAreAnError) {
  config.transformer.num_classes = 2;
  try {
    run("bad-classes", true);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("transformer.num_classes"), std::string::npos) << e.what();
  }
}

TEST_F(TransformerTrainer, ResumeOfTheOtherKindIsAnError) {
  run("kind", true, false, 2);
  EXPECT_THROW(run("kind", false, true), Error);
}
