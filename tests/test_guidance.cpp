// Classifier-free guidance, the EMA of the weights and rejection sampling.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <numeric>

#include <torch/nn/modules/linear.h>

#include "seqgan/checkpoint.h"
#include "seqgan/error.h"
#include "tiny.h"
#include "tokenizer/tokenizer.h"
#include "train/ema.h"
#include "train/tokenizer_trainer.h"
#include "train/transformer_trainer.h"
#include "transformer/cpu_decode.h"
#include "transformer/rejection.h"
#include "transformer/sampling.h"
#include "transformer/transformer.h"

using namespace seqgan;

namespace {

TransformerConfig small_config() {
  TransformerConfig c;
  c.layers = 2;
  c.width = 32;
  c.heads = 4;
  c.mlp = 64;
  c.dropout = 0.0;
  c.num_classes = 3;
  return c;
}

TokenSpace guided_space(bool null_class = true) {
  TokenSpace s;
  s.codebook_size = 16;
  s.length = 16;
  s.num_classes = 3;
  s.null_class = null_class;
  return s;
}

// A model whose condition matters: random weights moved off their initial values.
Transformer guided_model(bool causal, bool null_class = true) {
  torch::manual_seed(21);
  Transformer m(small_config(), guided_space(null_class), causal);
  torch::NoGradGuard ng;
  for (auto& p : m->parameters()) p.add_(at::randn_like(p) * 0.3);
  m->eval();
  return m;
}

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what() + std::string(" | ") + e.hint();
  }
  return "";
}

}  // namespace

TEST(Guidance, NullConditionIsItsOwnTokenBeforeTheMask) {
  const auto s = guided_space();
  EXPECT_EQ(s.condition_tokens(), 4);
  EXPECT_EQ(s.null_class_id(), 3);
  EXPECT_EQ(s.mask_token(), 16 + 3 + 1);
  EXPECT_EQ(s.vocab_size(), 21);
  auto m = guided_model(true);
  EXPECT_EQ(m->condition_tokens(at::tensor({0, 3}, at::kLong), 2, torch::kCPU)[1].item<int64_t>(), 19);
  // Without the null condition, class id 3 is out of range; old files have no "null_class" key.
  auto plain = guided_model(true, false);
  EXPECT_THROW(plain->condition_tokens(at::tensor({3}, at::kLong), 1, torch::kCPU), Error);
  std::map<std::string, std::string> extra;
  token_space_to_extra(guided_space(false), extra);
  EXPECT_EQ(extra.count("null_class"), 0u);
  EXPECT_FALSE(token_space_from_extra(extra, "x").null_class);
  token_space_to_extra(guided_space(true), extra);
  EXPECT_TRUE(token_space_from_extra(extra, "x").null_class);
}

TEST(Guidance, ScheduleRampsFromOneToTheScale) {
  Guidance g;
  g.scale = 3.0;
  EXPECT_EQ(g.at(0, 10), 3.0);
  g.schedule = "linear";
  EXPECT_EQ(g.at(0, 10), 1.0);
  EXPECT_DOUBLE_EQ(g.at(9, 10), 3.0);
  EXPECT_DOUBLE_EQ(g.at(3, 10), 1.0 + 2.0 * 3.0 / 9.0);
  g.schedule = "cosine";
  g.power = 2.0;
  EXPECT_DOUBLE_EQ(g.at(0, 10), 1.0);
  EXPECT_DOUBLE_EQ(g.at(9, 10), 3.0);
  // r = 1/2, r^2 = 1/4: 1 + 2 (1 - cos(pi / 4)) / 2.
  EXPECT_NEAR(g.at(1, 3), 1.0 + (1.0 - std::sqrt(0.5)), 1e-12);
  EXPECT_EQ(g.at(0, 1), 3.0);  // one step: the whole scale
  g.schedule = "step";
  EXPECT_THROW(g.at(0, 2), Error);
  // u + s (c - u), and c itself at s = 1.
  const auto c = at::tensor({1.0, 2.0}), u = at::tensor({0.5, 3.0});
  EXPECT_TRUE(at::allclose(guide_logits(c, u, 2.0), at::tensor({1.5, 1.0})));
  EXPECT_TRUE(guide_logits(c, u, 1.0).is_same(c));
}

// Scale 1 is plain conditional sampling, with no null-condition pass: it equals a reference
// written from the definition (AR: the conditional prediction recomputed at every position), and
// a model without the null condition samples at scale 1 under every schedule.
TEST(Guidance, ScaleOneIsPlainConditionalSampling) {
  const auto cond = at::tensor({0, 1, 2, 1}, at::kLong);
  const int64_t B = 4, L = 16;
  auto m = guided_model(true);
  ArSampleOptions a;
  a.guidance.schedule = "linear";
  auto gr = make_generator(5);
  auto ref = at::zeros({B, L}, at::kLong);
  {
    c10::InferenceMode im;
    for (int64_t i = 0; i < L; ++i) {
      const auto logits = m->forward(cond, ref.narrow(1, 0, i)).select(1, i);
      const auto probs = at::softmax(filter_logits(logits, a.temperature, a.top_k, a.top_p), -1);
      ref.select(1, i).copy_(sample_categorical(probs, uniform_like(gr, {B}, probs.options())));
    }
  }
  auto g = make_generator(5);
  EXPECT_TRUE(at::equal(sample_ar(*m, cond, B, a, g), ref));
  for (const bool causal : {true, false}) {
    auto plain = guided_model(causal, false);
    for (const std::string schedule : {"constant", "linear", "cosine"}) {
      ArSampleOptions ao;
      NarSampleOptions no;
      ao.guidance.schedule = no.guidance.schedule = schedule;
      auto g2 = make_generator(5);
      EXPECT_NO_THROW(causal ? sample_ar(*plain, cond, B, ao, g2) : sample_nar(*plain, cond, B, no, g2))
          << (causal ? "AR " : "NAR ") << schedule;
    }
  }
}

TEST(Guidance, ScaleZeroSamplesTheNullCondition) {
  const auto cond = at::tensor({0, 1, 2, 2}, at::kLong);
  const auto null = at::full({4}, 3, at::kLong);
  for (const bool causal : {true, false}) {
    for (const bool fused : {true, false}) {
      if (!causal && !fused) continue;
      SCOPED_TRACE(std::string(causal ? "AR" : "NAR") + (fused ? "" : " (modules)"));
      auto m = guided_model(causal);
      ArSampleOptions a;
      a.fused_cpu = fused;
      NarSampleOptions n;
      auto g1 = make_generator(9), g2 = make_generator(9);
      const auto of_null = causal ? sample_ar(*m, null, 4, a, g1) : sample_nar(*m, null, 4, n, g1);
      a.guidance.scale = n.guidance.scale = 0.0;
      const auto guided = causal ? sample_ar(*m, cond, 4, a, g2) : sample_nar(*m, cond, 4, n, g2);
      EXPECT_TRUE(at::equal(of_null, guided)) << of_null << guided;
      // and the condition does change the samples
      auto g3 = make_generator(9);
      const auto conditional = causal ? sample_ar(*m, cond, 4, ArSampleOptions{}, g3) : sample_nar(*m, cond, 4, {}, g3);
      EXPECT_FALSE(at::equal(conditional, guided));
    }
  }
}

// Guided AR decoding (the 2B rows through one cache, fused or through the modules) against a
// reference written from the definition: the conditional and null predictions recomputed from
// scratch as two separate passes at every position, combined as u + s (c - u).
TEST(Guidance, CachedArEqualsTwoPassesRecomputedFromScratch) {
  auto m = guided_model(true);
  const auto cond = at::tensor({0, 2, 1}, at::kLong);
  const int64_t B = 3, L = 16;
  for (const std::string schedule : {"constant", "linear", "cosine"}) {
    SCOPED_TRACE(schedule);
    ArSampleOptions o;
    o.top_p = 0.95;
    o.temperature = 1.1;
    o.guidance.scale = 2.5;
    o.guidance.schedule = schedule;
    auto gr = make_generator(4);
    auto ref = at::zeros({B, L}, at::kLong);
    {
      c10::InferenceMode im;
      for (int64_t i = 0; i < L; ++i) {
        const auto prefix = ref.narrow(1, 0, i);
        const auto c = m->forward(cond, prefix).select(1, i);
        const auto u = m->forward(at::full({B}, 3, at::kLong), prefix).select(1, i);
        const double s = o.guidance.at(i, L);
        const auto probs = at::softmax(filter_logits(u + s * (c - u), o.temperature, o.top_k, o.top_p), -1);
        ref.select(1, i).copy_(sample_categorical(probs, uniform_like(gr, {B}, probs.options())));
      }
    }
    for (const int mode : {0, 1, 2}) {
      o.use_cache = mode < 2;
      o.fused_cpu = mode == 0;
      auto g = make_generator(4);
      EXPECT_TRUE(at::equal(sample_ar(*m, cond, B, o, g), ref)) << "mode " << mode;
    }
  }
}

TEST(Guidance, NeedsAModelTrainedWithTheNullCondition) {
  ArSampleOptions o;
  o.guidance.scale = 2.0;
  auto g = make_generator(1);
  auto plain = guided_model(true, false);
  const auto msg = message_of([&] { sample_ar(*plain, at::tensor({0}, at::kLong), 1, o, g); });
  EXPECT_NE(msg.find("without class dropout"), std::string::npos) << msg;
  EXPECT_NE(msg.find("class_dropout"), std::string::npos) << msg;
  torch::manual_seed(1);
  auto space = guided_space(false);
  space.num_classes = 0;
  Transformer unconditional(small_config(), space, false);
  NarSampleOptions n;
  n.guidance.scale = 2.0;
  const auto msg2 = message_of([&] { sample_nar(*unconditional, at::Tensor(), 2, n, g); });
  EXPECT_NE(msg2.find("unconditional"), std::string::npos) << msg2;
}

TEST(ClassDropout, DrawsOnceForTheGlobalBatchAndAtTheRate) {
  const auto labels = at::arange(8, at::kLong) % 3;
  const auto whole = drop_classes(labels, 0.5, 3, 7, 12, 8, 0);
  const auto first = drop_classes(labels.narrow(0, 0, 4), 0.5, 3, 7, 12, 8, 0);
  const auto second = drop_classes(labels.narrow(0, 4, 4), 0.5, 3, 7, 12, 8, 4);
  EXPECT_TRUE(at::equal(at::cat({first, second}), whole));  // two ranks draw what one process draws
  EXPECT_TRUE(at::equal(drop_classes(labels, 0.5, 3, 7, 12, 8, 0), whole));  // resumed: the same draw
  EXPECT_TRUE(((whole == labels) | (whole == 3)).all().item<bool>());
  double dropped = 0;
  for (int64_t step = 0; step < 400; ++step)
    dropped += (drop_classes(at::zeros({64}, at::kLong), 0.1, 3, 1, step, 64, 0) == 3).sum().item<double>();
  EXPECT_NEAR(dropped / (400 * 64), 0.1, 0.01);
  EXPECT_TRUE(at::equal(drop_classes(labels, 0.0, 3, 7, 12, 8, 0), labels));
}

// ---- the exponential moving average ----

TEST(Ema, UpdatesAsTheDoublePrecisionDefinition) {
  torch::manual_seed(3);
  torch::nn::Linear lin(5, 4);
  const double decay = 0.95;
  Ema ema(*lin, decay);
  std::vector<at::Tensor> ref;
  for (const auto& p : lin->parameters()) ref.push_back(p.detach().to(at::kDouble).clone());
  for (int64_t n = 0; n < 60; ++n) {
    {
      torch::NoGradGuard ng;
      for (auto& p : lin->parameters()) p.add_(at::randn_like(p) * 0.1);
    }
    const double d = std::min(decay, (1.0 + n) / (10.0 + n));
    EXPECT_DOUBLE_EQ(ema.current_decay(), d);
    ema.update();
    size_t i = 0;
    for (const auto& p : lin->parameters()) {
      ref[i] = d * ref[i] + (1 - d) * p.detach().to(at::kDouble);
      ++i;
    }
  }
  const auto st = ema.state(*lin, "ema.");
  EXPECT_EQ(st.at("ema.__updates").item<int64_t>(), 60);
  EXPECT_LT((st.at("ema.weight").to(at::kDouble) - ref[0]).abs().max().item<double>(), 1e-6);
  EXPECT_LT((st.at("ema.bias").to(at::kDouble) - ref[1]).abs().max().item<double>(), 1e-6);
  // and it is not the weights themselves
  EXPECT_GT((st.at("ema.weight") - lin->weight).abs().max().item<double>(), 1e-3);
  // Restored into a fresh average, it continues identically.
  Ema again(*lin, decay);
  again.load(st, "ema.", "test");
  ema.update();
  again.update();
  EXPECT_TRUE(at::equal(ema.state(*lin, "e.").at("e.weight"), again.state(*lin, "e.").at("e.weight")));
  EXPECT_TRUE(Ema(*lin, 0.0).state(*lin, "ema.").empty());
}

namespace {

class EmaTraining : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = test::temp_dir(::testing::UnitTest::GetInstance()->current_test_info()->name());
    test::write_toy_tokens(dir + "/tokens.safetensors", 96, 4, 3, 5, 16);
    config = make_preset("fmnist");
    config.threads = 2;
    config.device = "cpu";
    config.transformer = small_config();
    config.transformer.dropout = 0.1;
    for (auto* t : {&config.train_ar, &config.train_nar}) {
      t->batch_size = 8;
      t->iterations = 6;
      t->warmup = 2;
      t->log_every = 1;
      t->val_every = 3;
      t->checkpoint_every = 100;
      t->val_fraction = 0.1;
      t->ema_decay = 0.9;
      t->class_dropout = 0.25;
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

TEST_F(EmaTraining, TransformersResumeExactlyWithTheAverageAndTheNullCondition) {
  for (const bool causal : {true, false}) {
    const std::string k = causal ? "ar" : "nar";
    run(k + "-full", causal);
    EXPECT_TRUE(run(k + "-split", causal, false, 4).interrupted);
    run(k + "-split", causal, true);
    const auto a = test::losses(dir + "/" + k + "-full", "train"), b = test::losses(dir + "/" + k + "-split", "train");
    ASSERT_EQ(a.size(), 6u) << k;
    for (const auto& [step, loss] : a) EXPECT_EQ(b.at(step), loss) << k << " step " << step;
    const std::string file = dir + "/" + k + "-full/transformer.safetensors";
    EXPECT_TRUE(test::same_weights(file, dir + "/" + k + "-split/transformer.safetensors")) << k;
    // The file holds both; auto loads the average, raw the weights; the null condition is kept.
    const auto tensors = safetensors::load(file).tensors;
    ASSERT_TRUE(tensors.count("ema.head.weight")) << k;
    const auto ema = load_transformer(file, torch::kCPU);
    const auto raw = load_transformer(file, torch::kCPU, WeightChoice::raw);
    EXPECT_EQ(ema.weights, "ema");
    EXPECT_EQ(raw.weights, "raw");
    EXPECT_TRUE(ema.space.null_class);
    EXPECT_TRUE(at::equal(ema.model->head->weight, tensors.at("ema.head.weight")));
    EXPECT_TRUE(at::equal(raw.model->head->weight, tensors.at("head.weight")));
    EXPECT_FALSE(at::equal(ema.model->head->weight, raw.model->head->weight));
  }
}

TEST_F(EmaTraining, WithoutClassDropoutOrEmaTheFileSaysSo) {
  config.train_ar.class_dropout = 0;
  config.train_ar.ema_decay = 0;
  const auto r = run("plain", true);
  const auto loaded = load_transformer(r.model_path, torch::kCPU);
  EXPECT_FALSE(loaded.space.null_class);
  EXPECT_EQ(loaded.weights, "raw");
  const auto msg = message_of([&] { load_transformer(r.model_path, torch::kCPU, WeightChoice::ema); });
  EXPECT_NE(msg.find("holds no EMA weights"), std::string::npos) << msg;
  EXPECT_NE(msg.find("--weights raw"), std::string::npos) << msg;
  // A resumed run may not switch either on: the vocabulary and the average are the run's.
  run("short", true, false, 2);
  TransformerTrainOptions o;
  o.config = config;
  o.run_dir = dir + "/short";
  o.tokens = dir + "/tokens.safetensors";
  o.resume = true;
  o.resume_overrides = {"train_ar.class_dropout=0.1"};
  EXPECT_NE(message_of([&] { train_transformer(o); }).find("class_dropout"), std::string::npos);
}

TEST(EmaTokenizer, BothPhasesResumeExactlyWithTheAverage) {
  const std::string dir = test::temp_dir("ema-tokenizer");
  Config config = test::tiny_tokenizer_config(test::stand_in_loss_network(dir));
  config.train_tokenizer.ema_decay = 0.8;
  config.phase2.train.ema_decay = 0.8;
  auto run = [&](const std::string& name, int phase, bool resume, int64_t max_steps, const std::string& init) {
    TokenizerTrainOptions o;
    o.config = config;
    o.run_dir = dir + "/" + name;
    o.phase = phase;
    o.resume = resume;
    o.max_steps = max_steps;
    o.init = init;
    return train_tokenizer(o);
  };
  run("full", 1, false, -1, "");
  run("split", 1, false, 4, "");
  run("split", 1, true, -1, "");
  const std::string p1 = dir + "/full/tokenizer.safetensors";
  EXPECT_TRUE(test::same_weights(p1, dir + "/split/tokenizer.safetensors"));
  const auto tensors = safetensors::load(p1).tensors;
  ASSERT_TRUE(tensors.count("ema.quantizer.embedding"));
  const auto ema = load_tokenizer(p1, torch::kCPU), raw = load_tokenizer(p1, torch::kCPU, WeightChoice::raw);
  EXPECT_EQ(ema.weights, "ema");
  EXPECT_TRUE(at::equal(ema.model->quantizer->embedding, tensors.at("ema.quantizer.embedding")));
  EXPECT_FALSE(at::equal(ema.model->quantizer->embedding, raw.model->quantizer->embedding));
  // Phase 2 starts from the phase-1 average and keeps its own.
  run("p2-full", 2, false, -1, p1);
  run("p2-split", 2, false, 3, p1);
  run("p2-split", 2, true, -1, "");
  EXPECT_TRUE(test::same_weights(dir + "/p2-full/tokenizer.safetensors", dir + "/p2-split/tokenizer.safetensors"));
  const auto p2 = load_tokenizer(dir + "/p2-full/tokenizer.safetensors", torch::kCPU, WeightChoice::raw);
  EXPECT_TRUE(at::equal(p2.model->quantizer->embedding, ema.model->quantizer->embedding));
}

// ---- rejection sampling ----

namespace {

// Draws are numbered: the codes of the i-th draw hold i; its score is a fixed function of i.
struct NumberedDraws {
  int64_t next = 0;
  std::vector<int64_t> classes;
  at::Tensor draw(const std::vector<int64_t>& ids) {
    classes.insert(classes.end(), ids.begin(), ids.end());
    const auto out = at::arange(next, next + static_cast<int64_t>(ids.size()), at::kLong).unsqueeze(1).repeat({1, 4});
    next += static_cast<int64_t>(ids.size());
    return out;
  }
  static double score_of(int64_t i) { return std::fmod(static_cast<double>(i) * 0.6180339887, 1.0); }
  static at::Tensor score(const at::Tensor& codes) {
    std::vector<double> s;
    for (int64_t i = 0; i < codes.size(0); ++i) s.push_back(score_of(codes[i][0].item<int64_t>()));
    return at::tensor(s, at::kDouble);
  }
};

}  // namespace

TEST(Rejection, AFractionKeepsExactlyTheBestScoredOfEachClass) {
  const std::vector<int64_t> classes{4, 4, 4, 1, 1, 1, 1, 1, 7};  // 3, 5 and 1 wanted
  NumberedDraws d;
  RejectionOptions o;
  o.fraction = 0.3;
  const auto r = rejection_sample(
      classes, o, [&](const std::vector<int64_t>& ids) { return d.draw(ids); },
      [&](const at::Tensor& c, const std::vector<int64_t>&) { return NumberedDraws::score(c); });
  EXPECT_EQ(r.drawn, 10 + 17 + 4);  // ceil(3 / 0.3), ceil(5 / 0.3), ceil(1 / 0.3)
  EXPECT_EQ(r.accepted, 9);
  EXPECT_DOUBLE_EQ(r.acceptance_rate(), 9.0 / 31.0);
  ASSERT_EQ(r.codes.size(0), 9);
  // Brute force: per class, the draws sorted by score.
  for (const int64_t c : {4, 1, 7}) {
    std::vector<int64_t> mine;
    for (int64_t i = 0; i < d.next; ++i)
      if (d.classes[i] == c) mine.push_back(i);
    std::sort(mine.begin(), mine.end(), [](int64_t a, int64_t b) { return NumberedDraws::score_of(a) > NumberedDraws::score_of(b); });
    std::vector<int64_t> got;
    for (size_t j = 0; j < classes.size(); ++j)
      if (classes[j] == c) got.push_back(r.codes[static_cast<int64_t>(j)][0].item<int64_t>());
    mine.resize(got.size());
    EXPECT_EQ(got, mine) << "class " << c;
  }
  for (int64_t j = 0; j < 9; ++j)
    EXPECT_EQ(r.scores[j].item<double>(), NumberedDraws::score_of(r.codes[j][0].item<int64_t>()));
}

TEST(Rejection, AThresholdDrawsUntilEnoughPassOrTheLimit) {
  NumberedDraws d;
  RejectionOptions o;
  o.threshold = 0.7;
  o.max_draws = 8;
  const std::vector<int64_t> classes{0, 0, 0, 0, 2, 2};
  const auto r = rejection_sample(
      classes, o, [&](const std::vector<int64_t>& ids) { return d.draw(ids); },
      [&](const at::Tensor& c, const std::vector<int64_t>&) { return NumberedDraws::score(c); });
  EXPECT_EQ(r.filled, 0);
  EXPECT_EQ(r.accepted, 6);
  EXPECT_TRUE((r.scores >= 0.7).all().item<bool>()) << r.scores;
  EXPECT_EQ(r.drawn, d.next);
  EXPECT_LT(r.drawn, 8 * 6);
  // Nothing passes: each class draws max_draws times its count, then keeps its best rejects.
  NumberedDraws e;
  o.threshold = 1.0;
  o.max_draws = 3;
  const auto none = rejection_sample(
      classes, o, [&](const std::vector<int64_t>& ids) { return e.draw(ids); },
      [&](const at::Tensor& c, const std::vector<int64_t>&) { return NumberedDraws::score(c); });
  EXPECT_EQ(none.drawn, 3 * 6);
  EXPECT_EQ(none.accepted, 0);
  EXPECT_EQ(none.filled, 6);
  EXPECT_EQ(none.codes.size(0), 6);
  // Both rules at once is a mistake.
  o.fraction = 0.5;
  EXPECT_THROW(rejection_sample(classes, o, [&](const std::vector<int64_t>& ids) { return e.draw(ids); },
                                [&](const at::Tensor& c, const std::vector<int64_t>&) { return NumberedDraws::score(c); }),
               Error);
}
