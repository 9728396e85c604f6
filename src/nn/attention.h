// Scaled dot-product attention: libtorch 2.x's fused kernel where available, the explicit form on
// 1.13. q, k, v: [B, heads, L, d]; mask (optional): boolean, true = may attend, broadcastable to
// [B, heads, Lq, Lk].
#pragma once

#include <ATen/core/Tensor.h>

namespace seqgan::nn {

at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask = {},
                     bool causal = false, double dropout = 0.0, bool training = false);

}  // namespace seqgan::nn
