#include "eval/psnr.h"

#include "seqgan/error.h"

namespace seqgan {

at::Tensor psnr(const at::Tensor& reference, const at::Tensor& test) {
  SEQGAN_CHECK(reference.sizes() == test.sizes(), "images differ in shape: ", reference.sizes(), " vs ", test.sizes());
  SEQGAN_CHECK(reference.dim() == 4, "expected [B, C, H, W], got ", reference.sizes());
  const auto a = (reference.to(at::kDouble).clamp(-1, 1) + 1) / 2;
  const auto b = (test.to(at::kDouble).clamp(-1, 1) + 1) / 2;
  const auto mse = (a - b).pow(2).mean({1, 2, 3}).clamp_min(1e-20);
  return -10.0 * at::log10(mse);
}

}  // namespace seqgan
