// Sampling from the transformers (SPEC section 4): AR with a key/value cache and temperature,
// top-k and top-p filtering; NAR (MaskGIT) iterative decoding with a cosine schedule and
// Gumbel-annealed choice of the tokens to keep.
//
// Randomness comes from a seeded CPU generator only (uniform draws moved to the model's device),
// so a seed gives the same tokens on every device and thread count.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include "seqgan/config.h"

namespace seqgan {

class TransformerImpl;

// logits [B, K] -> filtered logits: divided by `temperature`; outside the `top_k` most likely
// codes (0: no limit) and outside the smallest set of most likely codes whose probability mass
// reaches `top_p` (1: no limit) set to -inf. The most likely code always stays.
at::Tensor filter_logits(const at::Tensor& logits, double temperature, int64_t top_k, double top_p);

// One draw per row of probs [B, K] using uniforms u [B] in [0, 1): inverse CDF.
at::Tensor sample_categorical(const at::Tensor& probs, const at::Tensor& u);

// Uniform [0, 1) draws of `shape` from `gen`, on `device`.
at::Tensor uniform_like(at::Generator& gen, at::IntArrayRef shape, const at::TensorOptions& options);

at::Generator make_generator(uint64_t seed);

// Classifier-free guidance: logits u + s (c - u) of the conditional (c) and null-condition (u)
// predictions. The scale follows a schedule over the T decoding steps (AR: the tokens; NAR: the
// refinement steps), with progress r = t / (T - 1) at step t (r = 1 when T = 1):
//   constant: s;  linear: 1 + (s - 1) r (as MUSE and VAR ramp it);
//   cosine: 1 + (s - 1) (1 - cos(pi r^power)) / 2 (the power-cosine ramp of MaskGIT-style samplers).
// Scale 1 throughout is plain conditional sampling: no null-condition pass is made at all. A step
// whose scale is exactly 1 takes the conditional logits as they are.
struct Guidance {
  double scale = 1.0;
  std::string schedule = "constant";  // constant | linear | cosine
  double power = 2.75;
  bool active() const { return scale != 1.0; }
  double at(int64_t step, int64_t steps) const;
};
// The guided logits of one step; `scale` 1 returns `cond` itself.
at::Tensor guide_logits(const at::Tensor& cond, const at::Tensor& uncond, double scale);

struct ArSampleOptions {
  double temperature = 1.0;
  int64_t top_k = 0;
  double top_p = 1.0;
  bool use_cache = true;  // false: recompute the whole prefix at every step (reference, benchmark)
  // With the cache, on a CPU with float32 weights: decode with CpuArDecoder (fused steps, see
  // transformer/cpu_decode.h) rather than through the modules. The same results to float rounding.
  bool fused_cpu = true;
  // The conditional and null-condition rows go through the model as one batch of 2B (one
  // key/value cache); the model must have the null condition (class dropout in training).
  Guidance guidance;
};
// cond [B] class ids (ignored when unconditional); returns codes [B, L] int64.
at::Tensor sample_ar(TransformerImpl& model, const at::Tensor& cond, int64_t batch, const ArSampleOptions& options,
                     at::Generator& gen);

struct NarSampleOptions {
  int64_t steps = 12;
  double sample_temperature = 0.65;
  double choice_temperature = 4.5;
  Guidance guidance;  // as for AR: one forward pass of 2B sequences per step
};
// Tokens still masked after step t (0-based) of `steps` for L tokens with `unknown` of them
// unknown before the step: floor(L cos(pi/2 (t+1)/steps)), at least 1, at most unknown - 1.
int64_t nar_masked_after(int64_t t, int64_t steps, int64_t length, int64_t unknown);
// Optional `trace`: the token map after every step ([steps, B, L], mask token where unknown).
at::Tensor sample_nar(TransformerImpl& model, const at::Tensor& cond, int64_t batch, const NarSampleOptions& options,
                      at::Generator& gen, std::vector<at::Tensor>* trace = nullptr);

// Codes [n, L] int64 on the CPU for n class ids, `batch` at a time, with the sampler of the
// model's kind (AR or NAR) drawing from `gen`; `after_batch(done)` runs after every batch.
at::Tensor sample_codes(TransformerImpl& model, const std::vector<int64_t>& class_ids, int64_t batch,
                        const ArSampleOptions& ar, const NarSampleOptions& nar, at::Generator& gen,
                        const std::function<void(int64_t done)>& after_batch = {});

Guidance guidance_of(const SampleConfig& c);
ArSampleOptions ar_options(const SampleConfig& c);
NarSampleOptions nar_options(const SampleConfig& c);

}  // namespace seqgan
