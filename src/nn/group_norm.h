// Group normalisation, optionally followed by SiLU, as one operator.
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/nn/modules/normalization.h>

namespace seqgan::nn {

// silu(group_norm(x)) (or group_norm(x) alone), with gradients for x, the weight and the bias.
// For a channels-last float32 CPU tensor it runs one fused kernel: two passes over memory forward,
// two backward, no intermediate activation kept (the backward recomputes the normalised values from
// x and the per-group statistics). libtorch 1.13 has no channels-last GroupNorm backward on the CPU
// and copies both x and the gradient to NCHW for it; in the fmnist tokenizer's training step those
// copies and the separate SiLU took about a third of the time. Any other tensor (NCHW, CUDA,
// reduced precision, autocast) takes ATen's group_norm and silu.
at::Tensor group_norm_silu(const at::Tensor& x, const torch::nn::GroupNorm& norm, bool silu = true);

// The same with explicit parameters (weight and bias of shape [C]).
at::Tensor group_norm_silu(const at::Tensor& x, int64_t groups, const at::Tensor& weight, const at::Tensor& bias,
                           double eps, bool silu);

}  // namespace seqgan::nn
