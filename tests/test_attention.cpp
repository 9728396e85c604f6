#include <gtest/gtest.h>

#include "nn/attention.h"
#include "nn/blocks.h"

using namespace seqgan;
using Mode = nn::WindowAttentionImpl::Mode;

namespace {
// Reference: attention restricted to pairs of positions in the same group, written per pair.
at::Tensor reference(nn::WindowAttention& m, const at::Tensor& x, int64_t b, Mode mode) {
  torch::NoGradGuard g;
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  auto params = m->named_parameters();
  auto norm = torch::group_norm(x, m->named_modules()["norm"]->as<torch::nn::GroupNorm>()->options.num_groups(),
                                params["norm.weight"], params["norm.bias"], 1e-6);
  auto t = norm.permute({0, 2, 3, 1}).reshape({B, H * W, C});
  auto q = torch::linear(t, params["q.weight"], params["q.bias"]);
  auto k = torch::linear(t, params["k.weight"], params["k.bias"]);
  auto v = torch::linear(t, params["v.weight"], params["v.bias"]);
  auto scores = torch::matmul(q, k.transpose(1, 2)) / std::sqrt(static_cast<double>(C));
  auto same = torch::zeros({H * W, H * W}, torch::kBool);
  for (int64_t i = 0; i < H * W; ++i)
    for (int64_t j = 0; j < H * W; ++j) {
      const int64_t yi = i / W, xi = i % W, yj = j / W, xj = j % W;
      const bool s = mode == Mode::Regional ? (yi / b == yj / b && xi / b == xj / b) : (yi % b == yj % b && xi % b == xj % b);
      same[i][j] = s;
    }
  scores = scores.masked_fill(same.logical_not(), -1e30);
  auto out = torch::linear(torch::matmul(torch::softmax(scores, -1), v), params["proj_out.weight"], params["proj_out.bias"]);
  return x + out.view({B, H, W, C}).permute({0, 3, 1, 2});
}
}  // namespace

TEST(WindowAttention, MatchesPairwiseReference) {
  torch::manual_seed(0);
  for (auto mode : {Mode::Regional, Mode::Dilated}) {
    for (auto hw : {std::pair<int64_t, int64_t>{8, 8}, {6, 10}}) {  // divisible, and padded
      nn::WindowAttention m(16, 1, 4, mode, nn::NormSpec{4, 1e-6});
      {
        torch::NoGradGuard g;
        for (auto& p : m->parameters()) p.normal_(0, 0.3);
      }
      const auto x = torch::randn({2, 16, hw.first, hw.second});
      const auto got = m->forward(x);
      const auto want = reference(m, x, 4, mode);
      EXPECT_TRUE(torch::allclose(got, want, 1e-4, 1e-5)) << "mode " << static_cast<int>(mode) << " size " << hw.first
                                                          << "x" << hw.second << " max diff "
                                                          << (got - want).abs().max().item<double>();
    }
  }
}

TEST(WindowAttention, OutputProjectionStartsAtZero) {
  nn::WindowAttention m(16, 2, 4, Mode::Dilated, nn::NormSpec{4, 1e-6});
  const auto x = torch::randn({1, 16, 5, 7});
  EXPECT_TRUE(torch::equal(m->forward(x), x));
}

TEST(Attention, CausalMatchesExplicitMask) {
  torch::manual_seed(0);
  const auto q = torch::randn({2, 3, 5, 8}), k = torch::randn({2, 3, 5, 8}), v = torch::randn({2, 3, 5, 8});
  const auto causal = nn::attention(q, k, v, {}, true);
  const auto mask = torch::ones({5, 5}, torch::kBool).tril();
  const auto masked = nn::attention(q, k, v, mask, false);
  EXPECT_TRUE(torch::allclose(causal, masked, 1e-5, 1e-6));
  // Row 0 attends only to key 0.
  EXPECT_TRUE(torch::allclose(causal.select(2, 0), v.select(2, 0), 1e-5, 1e-6));
}
