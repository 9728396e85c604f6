// Structural similarity (Wang et al. 2004) as scikit-image computes it with
// structural_similarity(x, y, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
// data_range=255, channel_axis=...): local means, variances and covariance under an 11-tap
// Gaussian window (sigma 1.5, truncated at 3.5 sigma, normalised), C1 = (0.01 * 255)^2,
// C2 = (0.03 * 255)^2, and the mean of the SSIM map without its 5-pixel border (where the
// window would reach past the image), averaged over channels.
#pragma once

#include <ATen/core/Tensor.h>

namespace seqgan {

// x, y: [B, C, H, W] pixel values on the 0..255 scale (any floating or integer dtype), H, W >= 11.
// Returns the SSIM of each pair, [B] float64.
at::Tensor ssim(const at::Tensor& x, const at::Tensor& y);

}  // namespace seqgan
