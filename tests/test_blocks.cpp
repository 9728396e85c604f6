#include <gtest/gtest.h>

#include "nn/blocks.h"

using namespace seqgan;

namespace {
// The definition: nearest x2 upsampling, then a 3x3 convolution with padding 1.
at::Tensor upsample_then_conv(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  const auto up = x.repeat_interleave(2, 2).repeat_interleave(2, 3);
  return at::conv2d(up, w, b, 1, 1);
}

double relative_error(const at::Tensor& got, const at::Tensor& want) {
  return (got - want).abs().max().item<double>() / want.abs().max().item<double>();
}
}  // namespace

TEST(UpsampleConv, FoldedKernelsMatchUpsamplingThenConvolvingInDoublePrecision) {
  torch::manual_seed(0);
  struct Case {
    int64_t batch, in, out, h, w;
    bool channels_last, bias;
  };
  // Square and not, odd sizes, 1x1 inputs, both layouts, with and without a bias.
  for (const auto& c : {Case{2, 3, 5, 4, 4, true, true}, Case{1, 4, 2, 3, 5, false, true}, Case{3, 2, 3, 1, 1, true, false},
                        Case{2, 8, 8, 6, 2, false, false}}) {
    const auto opts = at::TensorOptions().dtype(at::kDouble);
    auto x = at::randn({c.batch, c.in, c.h, c.w}, opts);
    auto w = at::randn({c.out, c.in, 3, 3}, opts);
    auto b = c.bias ? at::randn({c.out}, opts) : at::Tensor();
    if (c.channels_last) {
      x = x.contiguous(at::MemoryFormat::ChannelsLast);
      w = w.contiguous(at::MemoryFormat::ChannelsLast);
    }
    x.requires_grad_(true);
    w.requires_grad_(true);
    if (b.defined()) b.requires_grad_(true);

    const auto got = nn::upsample2x_conv3x3(x, w, b, nn::Upsampling::Folded);
    const auto want = upsample_then_conv(x, w, b);
    ASSERT_EQ(got.sizes(), want.sizes());
    EXPECT_LT(relative_error(got, want), 1e-12) << "batch " << c.batch << " in " << c.in << " " << c.h << "x" << c.w;

    const auto g = at::randn_like(want);
    std::vector<at::Tensor> inputs{x, w};
    if (b.defined()) inputs.push_back(b);
    const auto g_got = torch::autograd::grad({got}, inputs, {g});
    const auto g_want = torch::autograd::grad({want}, inputs, {g});
    for (size_t i = 0; i < inputs.size(); ++i) {
      EXPECT_LT(relative_error(g_got[i], g_want[i]), 1e-12) << "gradient " << i << ", " << c.h << "x" << c.w;
    }
  }
}

TEST(UpsampleConv, AutomaticChoiceGivesTheSameValuesBothWays) {
  torch::manual_seed(1);
  for (const int64_t hw : {8, 16}) {  // the plain path below 16x16, the folded one from there
    const auto x = at::randn({2, 4, hw, hw}).contiguous(at::MemoryFormat::ChannelsLast);
    const auto w = at::randn({4, 4, 3, 3}), b = at::randn({4});
    const auto want = upsample_then_conv(x, w, b);
    for (const auto how : {nn::Upsampling::Auto, nn::Upsampling::Plain, nn::Upsampling::Folded})
      EXPECT_LT(relative_error(nn::upsample2x_conv3x3(x, w, b, how), want), 1e-5) << hw << "x" << hw;
  }
}

TEST(UpsampleConv, ModuleKeepsItsParameterNamesAndShapes) {
  nn::Upsample m(6);
  const auto params = m->named_parameters();
  ASSERT_EQ(params.size(), 2u);
  EXPECT_EQ(params["conv.weight"].sizes(), (std::vector<int64_t>{6, 6, 3, 3}));
  EXPECT_EQ(params["conv.bias"].sizes(), (std::vector<int64_t>{6}));
  nn::use_channels_last(*m);
  const auto x = at::randn({2, 6, 3, 4}).contiguous(at::MemoryFormat::ChannelsLast);
  torch::NoGradGuard ng;
  const auto y = m->forward(x);
  EXPECT_LT(relative_error(y, upsample_then_conv(x, params["conv.weight"], params["conv.bias"])), 1e-5);
  // A channels-last float input (the tokenizer's layout) gives a channels-last output.
  EXPECT_TRUE(y.is_contiguous(at::MemoryFormat::ChannelsLast));
}

TEST(UpsampleConv, WrongShapesAreAnError) {
  EXPECT_THROW(nn::upsample2x_conv3x3(at::randn({1, 4, 3, 3}), at::randn({4, 3, 3, 3}), at::Tensor()), std::exception);
  EXPECT_THROW(nn::upsample2x_conv3x3(at::randn({1, 4, 3, 3}), at::randn({4, 4, 1, 1}), at::Tensor()), std::exception);
}
