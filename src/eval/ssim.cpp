#include "eval/ssim.h"

#include <ATen/ATen.h>

#include <cmath>

#include "seqgan/error.h"

namespace seqgan {
namespace {

constexpr int kRadius = 5;  // int(3.5 * 1.5 + 0.5)
constexpr double kSigma = 1.5;

// The normalised 1-D Gaussian [2 r + 1] as scipy.ndimage builds it.
at::Tensor gaussian_taps() {
  at::Tensor w = at::arange(-kRadius, kRadius + 1, at::kDouble);
  w = (w.pow(2) * (-0.5 / (kSigma * kSigma))).exp();
  return w / w.sum();
}

// Separable Gaussian over H and W without padding: [N, 1, H, W] -> [N, 1, H - 10, W - 10].
at::Tensor filter(const at::Tensor& t, const at::Tensor& taps) {
  const at::Tensor rows = at::conv2d(t, taps.view({1, 1, -1, 1}));
  return at::conv2d(rows, taps.view({1, 1, 1, -1}));
}

}  // namespace

at::Tensor ssim(const at::Tensor& x, const at::Tensor& y) {
  SEQGAN_CHECK_HINT(x.dim() == 4 && x.sizes() == y.sizes(), "compare image batches of one shape [B, C, H, W]",
                    "SSIM: expected two image batches of the same shape [B, C, H, W], found ", x.sizes(), " and ", y.sizes());
  SEQGAN_CHECK_HINT(x.size(2) > 2 * kRadius && x.size(3) > 2 * kRadius, "use images of at least 11x11 pixels",
                    "SSIM: the 11x11 window does not fit images of ", x.size(2), "x", x.size(3));
  const int64_t b = x.size(0), c = x.size(1);
  const at::Tensor X = x.to(at::kDouble).cpu().reshape({b * c, 1, x.size(2), x.size(3)});
  const at::Tensor Y = y.to(at::kDouble).cpu().reshape({b * c, 1, y.size(2), y.size(3)});
  const at::Tensor taps = gaussian_taps();
  const at::Tensor ux = filter(X, taps), uy = filter(Y, taps);
  const at::Tensor vx = filter(X * X, taps) - ux * ux;
  const at::Tensor vy = filter(Y * Y, taps) - uy * uy;
  const at::Tensor vxy = filter(X * Y, taps) - ux * uy;
  const double c1 = std::pow(0.01 * 255, 2), c2 = std::pow(0.03 * 255, 2);
  const at::Tensor map = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2));
  return map.reshape({b, -1}).mean(1);  // every channel's map has the same size: the mean of channel means
}

}  // namespace seqgan
