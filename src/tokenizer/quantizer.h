// Nearest-code vector quantiser with straight-through gradients and the entropy regulariser of
// SPEC section 3; optionally ViT-VQGAN's factorised, L2-normalised codes, and k-means
// re-estimation of the codebook (paper Table 5).
#pragma once

#include <functional>
#include <ATen/core/Generator.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>

#include "seqgan/config.h"

namespace seqgan {

struct QuantizerOutput {
  at::Tensor z_q;            // [B, D, h, w]; forward value = nearest code, gradient = straight-through
  at::Tensor indices;        // [B, h, w] int64
  at::Tensor codebook_loss;  // mean (sg[z_e] - z_q)^2
  at::Tensor commit_loss;    // beta * mean (z_e - sg[z_q])^2
  at::Tensor entropy_loss;   // sign * gamma * H(mean soft usage) + per-sample term (0 if disabled)
  at::Tensor lookup_space;   // [N, d] the encoder outputs where codes are looked up (detached; for k-means)
  // Statistics of this batch (detached scalars).
  double perplexity = 0;          // exp(entropy of the hard code histogram)
  double soft_usage_entropy = 0;  // H(mean soft usage), nats
  int64_t codes_used = 0;         // distinct codes in the batch
};

class QuantizerImpl : public torch::nn::Module {
 public:
  QuantizerImpl(int64_t codebook_size, int64_t code_dim, const QuantizerConfig& config);
  QuantizerOutput forward(const at::Tensor& z_e);  // z_e: [B, D, h, w]
  at::Tensor nearest(const at::Tensor& z_e);       // [B, D, h, w] -> [B, h, w] (no gradients)
  at::Tensor lookup(const at::Tensor& indices);    // [B, h, w] -> [B, D, h, w]

  // Lloyd iterations of k-means on `points` [N, d] (lookup space, e.g. QuantizerOutput::lookup_space),
  // starting from the current codes; a code that attracts no point is moved onto a random point
  // drawn with `generator`. Writes the codebook in place (no gradients); returns how many codes
  // were moved so.
  int64_t reestimate(const at::Tensor& points, int iterations, at::Generator generator);

  // Sums over all ranks, for the regulariser's mean usage across the global batch (data-parallel
  // training); identity by default. Must be differentiable.
  std::function<at::Tensor(const at::Tensor&)> all_reduce_sum;
  // Adds the regulariser terms (needs the soft assignment; off when nothing trainable feeds it).
  bool regularize = true;

  at::Tensor embedding;  // [K, D], factorized: [K, factor_dim]
  // factorized only: code_dim -> factor_dim before the lookup, factor_dim -> code_dim after.
  torch::nn::Linear in_proj{nullptr}, out_proj{nullptr};

 private:
  bool factorized() const { return !in_proj.is_empty(); }
  int64_t input_dim() const;                              // channels of the encoder output (code_dim)
  at::Tensor to_lookup_space(const at::Tensor& z);  // [N, D] -> [N, d] (L2-normalised if factorized)
  at::Tensor codes() const;                               // [K, d] the codes as looked up

  QuantizerConfig config_;
};
TORCH_MODULE(Quantizer);

// Squared Euclidean distances between rows of z [N, D] and codes [K, D] -> [N, K].
at::Tensor squared_distances(const at::Tensor& z, const at::Tensor& codes);

// The entropy terms on distances d [N, K]: returns {H(mean_i softmax(-d_i / tau)), mean_i H(softmax(-d_i/tau))}.
// `reduce_sum` (may be empty) sums a tensor over ranks; `global_count` is N summed over ranks.
std::pair<at::Tensor, at::Tensor> usage_entropies(const at::Tensor& d, double tau,
                                                  const std::function<at::Tensor(const at::Tensor&)>& reduce_sum);

// Histogram of code indices: [K] int64.
at::Tensor code_histogram(const at::Tensor& indices, int64_t codebook_size);

// What a histogram of code indices says about the codebook: codes chosen at least once, their
// share of the K codes, and the perplexity exp(H) of the histogram.
struct CodeUsage {
  int64_t used = 0;
  double fraction = 0;
  double perplexity = 0;
};
CodeUsage code_usage(const at::Tensor& histogram);

}  // namespace seqgan
