// Group normalisation, optionally followed by SiLU, as one operator.
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/nn/modules/normalization.h>

namespace seqgan::nn {

// silu(group_norm(x)) (or group_norm(x) alone), with gradients for x, the weight and the bias.
// For a channels-last float32 CPU tensor it runs its own kernels: libtorch 1.13 has no
// channels-last GroupNorm backward on the CPU and copies both x and the gradient to NCHW for it.
// The forward is two passes over x (per-channel sums; then the affine map and SiLU), the backward
// two passes over x and the gradient (the recomputed normalised value, its SiLU gradient and the
// per-channel sums; then the input gradient). Nothing but the per-group statistics is kept for the
// backward. The sigmoid uses its own vectorisable exp (about 1 ulp), and the loops are compiled
// for AVX-512, AVX2 and the baseline, chosen at load time. Any other tensor (NCHW, CUDA, other
// dtypes) takes ATen's group_norm and silu. Figures: docs/performance.md.
at::Tensor group_norm_silu(const at::Tensor& x, const torch::nn::GroupNorm& norm, bool silu = true);

// The same with explicit parameters (weight and bias of shape [C]).
at::Tensor group_norm_silu(const at::Tensor& x, int64_t groups, const at::Tensor& weight, const at::Tensor& bias,
                           double eps, bool silu);

}  // namespace seqgan::nn
