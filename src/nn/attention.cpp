#include "nn/attention.h"

namespace seqgan::nn {

at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask,
                     bool causal, double dropout, bool training) {
  const double p = training ? dropout : 0.0;
#if TORCH_VERSION_MAJOR >= 2
  // The fused kernels (flash / memory-efficient) take a boolean mask or the causal flag, not both.
  if (!mask.defined()) return at::scaled_dot_product_attention(q, k, v, {}, p, causal);
  if (!causal) return at::scaled_dot_product_attention(q, k, v, mask, p, false);
#endif
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  auto scores = at::matmul(q, k.transpose(-2, -1)) * scale;  // [B, h, Lq, Lk]
  if (causal) {
    const int64_t lq = q.size(-2), lk = k.size(-2);
    // Query i (of the last lq positions) sees keys up to lk - lq + i.
    auto allowed = at::ones({lq, lk}, q.options().dtype(at::kBool)).tril(lk - lq);
    scores = scores.masked_fill(allowed.logical_not(), -std::numeric_limits<float>::infinity());
  }
  if (mask.defined()) {
    scores = mask.scalar_type() == at::kBool
                 ? scores.masked_fill(mask.logical_not(), -std::numeric_limits<float>::infinity())
                 : scores + mask;
  }
  auto weights = at::softmax(scores, -1);
  if (p > 0) weights = at::dropout(weights, p, true);
  return at::matmul(weights, v);
}

}  // namespace seqgan::nn
