#include "transformer/sampling.h"

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <limits>
#include <memory>

#include "seqgan/error.h"
#include "transformer/cpu_decode.h"
#include "transformer/transformer.h"

namespace seqgan {

at::Tensor filter_logits(const at::Tensor& logits, double temperature, int64_t top_k, double top_p) {
  SEQGAN_CHECK(temperature > 0, "sampling temperature must be positive, got ", temperature);
  SEQGAN_CHECK(top_p > 0 && top_p <= 1, "top-p must be in (0, 1], got ", top_p);
  SEQGAN_CHECK(top_k >= 0, "top-k must be >= 0, got ", top_k);
  const double neg_inf = -std::numeric_limits<double>::infinity();
  auto out = logits.to(at::kFloat) / temperature;
  const int64_t K = out.size(-1);
  if (top_k > 0 && top_k < K) {
    const auto kth = std::get<0>(out.topk(top_k, -1)).narrow(-1, top_k - 1, 1);
    out = out.masked_fill(out < kth, neg_inf);
  }
  if (top_p < 1) {
    const auto [sorted, order] = out.sort(-1, /*descending=*/true);
    const auto probs = at::softmax(sorted, -1);
    // Mass of the codes ranked strictly before each one: once it reaches top_p, drop the code.
    const auto before = probs.cumsum(-1) - probs;
    const auto drop_sorted = before >= top_p;
    const auto drop = at::zeros_like(drop_sorted).scatter(-1, order, drop_sorted);
    out = out.masked_fill(drop, neg_inf);
  }
  return out;
}

at::Tensor sample_categorical(const at::Tensor& probs, const at::Tensor& u) {
  const int64_t K = probs.size(-1);
  const auto p = probs.reshape({-1, K}).to(at::kDouble);
  const auto cdf = p.cumsum(1);
  const auto target = u.reshape({-1, 1}).to(at::kDouble) * cdf.narrow(1, K - 1, 1);
  auto idx = (cdf <= target).sum(1).clamp_max(K - 1);
  // Never land on a zero-probability code through rounding at the top of the CDF.
  const auto zero = p.gather(1, idx.unsqueeze(1)).squeeze(1) <= 0;
  if (zero.any().item<bool>()) idx = at::where(zero, p.argmax(1), idx);
  return idx.view(u.sizes());
}

at::Generator make_generator(uint64_t seed) { return at::detail::createCPUGenerator(seed); }

at::Tensor uniform_like(at::Generator& gen, at::IntArrayRef shape, const at::TensorOptions& options) {
  return at::rand(shape, gen, at::TensorOptions(at::kDouble)).to(options.device());
}

double Guidance::at(int64_t step, int64_t steps) const {
  const double r = steps > 1 ? static_cast<double>(step) / static_cast<double>(steps - 1) : 1.0;
  if (schedule == "constant") return scale;
  if (schedule == "linear") return 1.0 + (scale - 1.0) * r;
  if (schedule == "cosine") return 1.0 + (scale - 1.0) * (1.0 - std::cos(M_PI * std::pow(r, power))) / 2.0;
  throw Error(str("unknown guidance schedule '", schedule, "'"), "use sample.guidance_schedule constant, linear or cosine");
}

at::Tensor guide_logits(const at::Tensor& cond, const at::Tensor& uncond, double scale) {
  if (scale == 1.0) return cond;
  return uncond + scale * (cond - uncond);
}

namespace {

// Class ids [2B]: the batch's, then the null condition for each; checks the model can be guided.
at::Tensor guided_conditions(const TransformerImpl& model, const at::Tensor& c, const Guidance& g) {
  const auto& space = model.space();
  SEQGAN_CHECK_HINT(space.num_classes > 0, "sample with sample.guidance=1",
                    "classifier-free guidance needs a class-conditional model; this one is unconditional");
  SEQGAN_CHECK_HINT(space.null_class, "sample with sample.guidance=1, or train with train_ar.class_dropout / train_nar.class_dropout > 0",
                    "classifier-free guidance (sample.guidance ", g.scale,
                    ") needs the null condition, and this model was trained without class dropout");
  return at::cat({c, at::full_like(c, space.null_class_id())});
}

}  // namespace

at::Tensor sample_ar(TransformerImpl& model, const at::Tensor& cond, int64_t batch, const ArSampleOptions& o,
                     at::Generator& gen) {
  SEQGAN_CHECK(model.causal(), "AR sampling needs the causal transformer (train-transformer --kind ar)");
  c10::InferenceMode inference;  // lighter than NoGradGuard: no version counters or views tracked
  const auto device = model.pos_emb.device();
  const int64_t L = model.space().length;
  auto c = cond.defined() ? cond.to(device) : at::zeros({batch}, at::TensorOptions(at::kLong).device(device));
  // Guided: the conditional rows, then their null-condition twins, decoded as one batch that is
  // fed the same tokens.
  const bool guided = o.guidance.active();
  if (guided) c = guided_conditions(model, c, o.guidance);
  const int64_t rows = guided ? 2 * batch : batch;
  auto out = at::zeros({batch, L}, at::TensorOptions(at::kLong).device(device));
  at::Tensor logits;
  KVCache cache;
  std::unique_ptr<CpuArDecoder> fused;
  if (o.use_cache && o.fused_cpu && CpuArDecoder::supports(model)) {
    fused = std::make_unique<CpuArDecoder>(model, rows);
    logits = fused->step(model.condition_tokens(c, rows, device));
  } else if (o.use_cache) {
    cache = model.start(c, &logits);
  }
  for (int64_t i = 0; i < L; ++i) {
    if (!o.use_cache) {
      const auto prefix = out.narrow(1, 0, i);
      logits = model.forward(c, guided ? at::cat({prefix, prefix}) : prefix).select(1, i);
    }
    const auto step_logits =
        guided ? guide_logits(logits.narrow(0, 0, batch), logits.narrow(0, batch, batch), o.guidance.at(i, L)) : logits;
    const auto probs = at::softmax(filter_logits(step_logits, o.temperature, o.top_k, o.top_p), -1);
    const auto next = sample_categorical(probs, uniform_like(gen, {batch}, probs.options()));
    out.select(1, i).copy_(next);
    const auto fed = guided ? at::cat({next, next}) : next;
    if (i + 1 < L && fused) {
      logits = fused->step(fed);
    } else if (i + 1 < L && o.use_cache) {
      logits = model.step(cache, fed);
    }
  }
  return out;
}

int64_t nar_masked_after(int64_t t, int64_t steps, int64_t length, int64_t unknown) {
  const double ratio = std::cos(M_PI / 2.0 * static_cast<double>(t + 1) / static_cast<double>(steps));
  auto n = static_cast<int64_t>(std::floor(static_cast<double>(length) * ratio + 1e-9));
  n = std::max<int64_t>(n, 1);
  return std::min<int64_t>(n, unknown - 1);
}

at::Tensor sample_nar(TransformerImpl& model, const at::Tensor& cond, int64_t batch, const NarSampleOptions& o,
                      at::Generator& gen, std::vector<at::Tensor>* trace) {
  SEQGAN_CHECK(!model.causal(), "NAR sampling needs the bidirectional transformer (train-transformer --kind nar)");
  SEQGAN_CHECK(o.steps >= 1, "NAR sampling needs at least one step, got ", o.steps);
  SEQGAN_CHECK(o.sample_temperature > 0, "NAR sample temperature must be positive, got ", o.sample_temperature);
  c10::InferenceMode inference;
  const auto device = model.pos_emb.device();
  const int64_t L = model.space().length, mask = model.space().mask_token();
  auto c = cond.defined() ? cond.to(device) : at::zeros({batch}, at::TensorOptions(at::kLong).device(device));
  const bool guided = o.guidance.active();
  if (guided) c = guided_conditions(model, c, o.guidance);
  auto tokens = at::full({batch, L}, mask, at::TensorOptions(at::kLong).device(device));
  int64_t unknown = L;
  for (int64_t t = 0; t < o.steps; ++t) {
    at::Tensor logits;  // [B, L, K]
    if (guided) {
      const auto both = model.forward(c, at::cat({tokens, tokens})).to(at::kFloat);
      logits = guide_logits(both.narrow(0, 0, batch), both.narrow(0, batch, batch), o.guidance.at(t, o.steps));
    } else {
      logits = model.forward(c, tokens).to(at::kFloat);
    }
    const auto logp = at::log_softmax(logits / o.sample_temperature, -1);
    const auto u = uniform_like(gen, {batch, L}, logits.options());
    const auto is_unknown = tokens == mask;
    const auto sampled = at::where(is_unknown, sample_categorical(logp.exp(), u), tokens);
    if (t + 1 == o.steps || unknown <= 1) {
      tokens = sampled;
      if (trace) trace->push_back(tokens.cpu());
      break;
    }
    const int64_t n = nar_masked_after(t, o.steps, L, unknown);
    // Confidence: log p of the sampled code plus annealed Gumbel noise; decided tokens are kept.
    const auto g = -at::log(-at::log(uniform_like(gen, {batch, L}, logits.options()).clamp(1e-20, 1.0 - 1e-12)));
    const double anneal = o.choice_temperature * (1.0 - static_cast<double>(t + 1) / static_cast<double>(o.steps));
    auto confidence = logp.gather(-1, sampled.unsqueeze(-1)).squeeze(-1).to(at::kDouble) + anneal * g;
    confidence = confidence.masked_fill(is_unknown.logical_not(), std::numeric_limits<double>::infinity());
    tokens = sampled.clone();
    if (n > 0) {
      const auto lowest = confidence.argsort(1, false).narrow(1, 0, n);
      tokens.scatter_(1, lowest, mask);
    }
    unknown = n;
    if (trace) trace->push_back(tokens.cpu());
  }
  return tokens;
}

at::Tensor sample_codes(TransformerImpl& model, const std::vector<int64_t>& class_ids, int64_t batch,
                        const ArSampleOptions& ar, const NarSampleOptions& nar, at::Generator& gen,
                        const std::function<void(int64_t done)>& after_batch) {
  const int64_t n_all = static_cast<int64_t>(class_ids.size());
  std::vector<at::Tensor> codes;
  for (int64_t s = 0; s < n_all; s += batch) {
    const int64_t n = std::min(batch, n_all - s);
    const auto c = at::tensor(std::vector<int64_t>(class_ids.begin() + s, class_ids.begin() + s + n), at::kLong);
    codes.push_back((model.causal() ? sample_ar(model, c, n, ar, gen) : sample_nar(model, c, n, nar, gen)).cpu());
    if (after_batch) after_batch(s + n);
  }
  return at::cat(codes);
}

Guidance guidance_of(const SampleConfig& c) {
  Guidance g;
  g.scale = c.guidance;
  g.schedule = c.guidance_schedule;
  g.power = c.guidance_power;
  return g;
}

ArSampleOptions ar_options(const SampleConfig& c) {
  ArSampleOptions o;
  o.temperature = c.temperature;
  o.top_k = c.top_k;
  o.top_p = c.top_p;
  o.guidance = guidance_of(c);
  return o;
}

NarSampleOptions nar_options(const SampleConfig& c) {
  NarSampleOptions o;
  o.steps = c.steps;
  o.sample_temperature = c.sample_temperature;
  o.choice_temperature = c.choice_temperature;
  o.guidance = guidance_of(c);
  return o;
}

}  // namespace seqgan
