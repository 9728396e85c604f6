#pragma once

#include <ATen/core/Tensor.h>

namespace seqgan {

// Per-image PSNR in dB of images in [-1, 1] ([B, C, H, W]), both clamped to [-1, 1] and
// compared on the [0, 1] scale (peak 1): 10 log10(1 / mse). Returns [B] float64. The MSE is
// floored at 1e-20, so identical images give 200 dB rather than an infinity that would poison means.
at::Tensor psnr(const at::Tensor& reference, const at::Tensor& test);

}  // namespace seqgan
