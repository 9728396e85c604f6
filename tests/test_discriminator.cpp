#include <gtest/gtest.h>

#include "losses/discriminator.h"

using namespace seqgan;

namespace {
DiscriminatorConfig small() {
  DiscriminatorConfig c;
  c.base_channels = 4;
  c.max_channels = 8;
  c.mbstd_group = 2;
  return c;
}
}  // namespace

TEST(Discriminator, ShapesAndWidths) {
  Discriminator d(small(), 1, 16);
  const auto logits = d->forward(torch::randn({4, 1, 16, 16}));
  EXPECT_EQ(logits.sizes(), (std::vector<int64_t>{4}));
  EXPECT_EQ(d->named_parameters()["blocks.1.conv2.weight"].size(0), 8);  // capped at max_channels
  EXPECT_THROW(Discriminator(small(), 1, 24), std::exception);          // not a power of two
}

TEST(Discriminator, MinibatchStddevValue) {
  const auto x = torch::arange(16, torch::kDouble).view({4, 1, 2, 2});
  const auto y = minibatch_stddev(x, 2);
  ASSERT_EQ(y.size(1), 2);
  // Groups pair samples i and i + 2 (stride M = 2); their values differ by 8 everywhere, std = 4.
  EXPECT_NEAR(y.select(1, 1).mean().item<double>(), 4.0, 1e-6);
  EXPECT_TRUE(torch::equal(y.select(1, 0), x.select(1, 0)));
  EXPECT_THROW(minibatch_stddev(torch::zeros({3, 1, 2, 2}), 2), std::exception);
}

TEST(Discriminator, LossesAreTheLogisticOnes) {
  const auto real = torch::tensor({0.5, -1.0}, torch::kDouble), fake = torch::tensor({2.0, 0.0}, torch::kDouble);
  auto sp = [](double v) { return std::log1p(std::exp(v)); };
  EXPECT_NEAR(discriminator_loss(real, fake).item<double>(), (sp(2) + sp(0)) / 2 + (sp(-0.5) + sp(1)) / 2, 1e-12);
  EXPECT_NEAR(generator_loss(fake).item<double>(), (sp(-2) + sp(0)) / 2, 1e-12);
}

TEST(Discriminator, R1PenaltyGradientMatchesFiniteDifferences) {
  torch::manual_seed(0);
  Discriminator d(small(), 1, 8);
  d->to(torch::kDouble);
  const auto x0 = torch::randn({2, 1, 8, 8}, torch::kDouble);
  auto r1 = [&]() {
    auto x = x0.clone().requires_grad_(true);
    return r1_penalty(d->forward(x), x, 10.0);
  };
  auto w = d->named_parameters()["blocks.0.conv1.weight"];
  const auto g = torch::autograd::grad({r1()}, {w})[0];
  // Value: 5 * mean_i ||grad_x D||^2, checked on the input gradient directly.
  auto x = x0.clone().requires_grad_(true);
  const auto gx = torch::autograd::grad({d->forward(x).sum()}, {x})[0];
  EXPECT_NEAR(r1().item<double>(), 5.0 * gx.pow(2).sum({1, 2, 3}).mean().item<double>(), 1e-10);
  const double eps = 1e-6;
  for (int64_t i : {0, 5, 17, 30}) {
    torch::NoGradGuard ng;
    auto flat = w.view({-1});  // the weight is contiguous; its gradient need not be
    const double orig = flat[i].item<double>();
    flat[i] = orig + eps;
    double plus, minus;
    {
      at::AutoGradMode on(true);
      plus = r1().item<double>();
    }
    flat[i] = orig - eps;
    {
      at::AutoGradMode on(true);
      minus = r1().item<double>();
    }
    flat[i] = orig;
    EXPECT_NEAR(g.reshape({-1})[i].item<double>(), (plus - minus) / (2 * eps), 1e-6 * std::max(1.0, std::abs(g.reshape({-1})[i].item<double>())));
  }
}
