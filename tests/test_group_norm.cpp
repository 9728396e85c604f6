#include <gtest/gtest.h>

#include "nn/group_norm.h"

using namespace seqgan;

namespace {

struct Result {
  at::Tensor out, dx, dweight, dbias;
};

// Forward and backward of a loss that weights every output differently (so that the gradient is
// not constant over a group), for the fused operator or for ATen's group_norm and silu in double.
Result run(const at::Tensor& x0, const at::Tensor& w0, const at::Tensor& b0, const at::Tensor& probe, int64_t groups,
           bool silu, bool reference) {
  auto x = (reference ? x0.to(at::kDouble) : x0).detach().requires_grad_();
  auto w = (reference ? w0.to(at::kDouble) : w0).detach().requires_grad_();
  auto b = (reference ? b0.to(at::kDouble) : b0).detach().requires_grad_();
  at::Tensor out;
  if (reference) {
    out = at::group_norm(x, groups, w, b, 1e-6);
    if (silu) out = at::silu(out);
  } else {
    out = nn::group_norm_silu(x, groups, w, b, 1e-6, silu);
  }
  (out * probe.to(out.scalar_type())).sum().backward();
  return {out.detach(), x.grad(), w.grad(), b.grad()};
}

double relative_error(const at::Tensor& mine, const at::Tensor& truth) {
  return (mine.to(at::kDouble) - truth).abs().max().item<double>() / std::max(truth.abs().max().item<double>(), 1e-12);
}

}  // namespace

TEST(GroupNormSiLU, FusedChannelsLastKernelMatchesATenInDoublePrecision) {
  torch::manual_seed(0);
  struct Case {
    int64_t n, c, h, w, groups;
  };
  // Widths of the presets (8 groups of 4 to 16 channels), a channel count that is not a multiple of
  // the vector width, a single group, one channel per group, an odd spatial size, and 1,024 positions
  // (the per-channel sums add blocks of 32 rows in float).
  for (const Case k : {Case{3, 32, 8, 8, 8}, Case{2, 64, 5, 7, 8}, Case{4, 12, 6, 6, 3}, Case{1, 20, 9, 4, 1},
                       Case{2, 6, 3, 3, 6}, Case{2, 16, 32, 32, 4}}) {
    for (const bool silu : {true, false}) {
      // An offset and scale per channel so that the statistics are not those of a unit normal.
      auto x = (at::randn({k.n, k.c, k.h, k.w}) * 2.5 + at::randn({1, k.c, 1, 1}) * 3)
                   .contiguous(at::MemoryFormat::ChannelsLast);
      auto w = at::randn({k.c});
      auto b = at::randn({k.c});
      auto probe = at::randn({k.n, k.c, k.h, k.w}).contiguous(at::MemoryFormat::ChannelsLast);
      const auto mine = run(x, w, b, probe, k.groups, silu, false);
      const auto truth = run(x, w, b, probe, k.groups, silu, true);
      SCOPED_TRACE(::testing::Message() << "shape " << k.n << "x" << k.c << "x" << k.h << "x" << k.w << ", groups "
                                        << k.groups << ", silu " << silu);
      EXPECT_TRUE(mine.out.is_contiguous(at::MemoryFormat::ChannelsLast));
      EXPECT_TRUE(mine.dx.is_contiguous(at::MemoryFormat::ChannelsLast));
      EXPECT_LT(relative_error(mine.out, truth.out), 2e-6);
      EXPECT_LT(relative_error(mine.dx, truth.dx), 2e-5);
      EXPECT_LT(relative_error(mine.dweight, truth.dweight), 2e-5);
      EXPECT_LT(relative_error(mine.dbias, truth.dbias), 2e-5);
    }
  }
}

TEST(GroupNormSiLU, OtherLayoutsAndNoGradTakeTheSameValues) {
  torch::manual_seed(1);
  auto x = at::randn({2, 16, 6, 6});
  auto w = at::randn({16}), b = at::randn({16});
  const auto expected = at::silu(at::group_norm(x, 4, w, b, 1e-6));
  // NCHW goes to ATen; channels-last without gradients runs only the fused forward.
  EXPECT_TRUE(nn::group_norm_silu(x, 4, w, b, 1e-6, true).equal(expected));
  torch::NoGradGuard no_grad;
  const auto fused = nn::group_norm_silu(x.contiguous(at::MemoryFormat::ChannelsLast), 4, w, b, 1e-6, true);
  EXPECT_TRUE(fused.is_contiguous(at::MemoryFormat::ChannelsLast));
  EXPECT_LT(relative_error(fused, expected.to(at::kDouble)), 2e-6);
  // A gradient that is not channels-last (here broadcast from a scalar) is accepted.
  torch::AutoGradMode grad_on(true);
  auto xg = x.contiguous(at::MemoryFormat::ChannelsLast).requires_grad_();
  nn::group_norm_silu(xg, 4, w, b, 1e-6, true).sum().backward();
  auto xr = x.clone().requires_grad_();
  at::silu(at::group_norm(xr, 4, w, b, 1e-6)).sum().backward();
  EXPECT_LT(relative_error(xg.grad(), xr.grad().to(at::kDouble)), 1e-4);
}

TEST(GroupNormSiLU, GroupsThatDoNotDivideTheChannelsAreAnError) {
  auto x = at::randn({1, 6, 2, 2}).contiguous(at::MemoryFormat::ChannelsLast);
  EXPECT_THROW(nn::group_norm_silu(x, 4, at::ones({6}), at::zeros({6}), 1e-6, true), std::exception);
}
