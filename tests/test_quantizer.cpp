#include <gtest/gtest.h>

#include <ATen/CPUGeneratorImpl.h>

#include "tokenizer/quantizer.h"

using namespace seqgan;

namespace {
QuantizerConfig qconfig(double gamma, double per_sample = 0.0) {
  QuantizerConfig q;
  q.entropy_gamma = gamma;
  q.per_sample_entropy_gamma = per_sample;
  return q;
}
}  // namespace

TEST(Quantizer, NearestCodeAndLosses) {
  torch::manual_seed(0);
  Quantizer q(16, 4, qconfig(0.0));
  {
    torch::NoGradGuard g;
    q->embedding.normal_();
  }
  const auto z = torch::randn({2, 4, 3, 3}, torch::requires_grad());
  const auto out = q->forward(z);
  // Brute force nearest code.
  const auto flat = z.detach().permute({0, 2, 3, 1}).reshape({-1, 4});
  for (int64_t i = 0; i < flat.size(0); ++i) {
    const auto dist = (q->embedding.detach() - flat[i]).pow(2).sum(1);
    EXPECT_EQ(out.indices.view({-1})[i].item<int64_t>(), dist.argmin().item<int64_t>());
  }
  const auto zq = q->lookup(out.indices);
  EXPECT_TRUE(torch::allclose(out.z_q, zq, 1e-6, 1e-6));
  const double mse = (zq - z.detach()).pow(2).mean().item<double>();
  EXPECT_NEAR(out.codebook_loss.item<double>(), mse, 1e-6);
  EXPECT_NEAR(out.commit_loss.item<double>(), 0.25 * mse, 1e-6);  // beta on the encoder term
  EXPECT_EQ(out.entropy_loss.item<double>(), 0.0);
  EXPECT_GE(out.codes_used, 1);
  EXPECT_LE(out.perplexity, out.codes_used + 1e-9);
}

TEST(Quantizer, StraightThroughAndLossGradientsGoWhereEq2Says) {
  torch::manual_seed(1);
  Quantizer q(8, 3, qconfig(0.0));
  const auto z = torch::randn({1, 3, 2, 2}, torch::requires_grad());
  auto out = q->forward(z);
  // Straight-through: d(sum z_q)/dz = 1.
  auto g = torch::autograd::grad({out.z_q.sum()}, {z}, {}, true)[0];
  EXPECT_TRUE(torch::allclose(g, torch::ones_like(z)));
  // The codebook term moves only the codes, the commitment term only the encoder output.
  auto gz = torch::autograd::grad({out.codebook_loss}, {z}, {}, true, false, true)[0];
  EXPECT_TRUE(!gz.defined() || gz.abs().sum().item<double>() == 0.0);
  auto ge = torch::autograd::grad({out.commit_loss}, {q->embedding}, {}, true, false, true)[0];
  EXPECT_TRUE(!ge.defined() || ge.abs().sum().item<double>() == 0.0);
  auto gc = torch::autograd::grad({out.commit_loss}, {z}, {}, true)[0];
  const auto zq = q->lookup(out.indices).detach();
  EXPECT_TRUE(torch::allclose(gc, 0.25 * 2 * (z.detach() - zq) / z.numel(), 1e-5, 1e-7));
}

TEST(Quantizer, EntropyTermMatchesFiniteDifferencesInFloat64) {
  torch::manual_seed(2);
  const auto d0 = torch::rand({6, 5}, torch::kDouble) * 3;
  const auto d = d0.clone().requires_grad_(true);
  auto [h_mean, mean_h] = usage_entropies(d, 0.7, {});
  auto loss = -0.01 * h_mean + 0.02 * mean_h;
  const auto grad = torch::autograd::grad({loss}, {d})[0];
  const double eps = 1e-6;
  for (int64_t i = 0; i < d0.size(0); ++i)
    for (int64_t j = 0; j < d0.size(1); ++j) {
      auto plus = d0.clone(), minus = d0.clone();
      plus[i][j] += eps;
      minus[i][j] -= eps;
      auto f = [](const at::Tensor& x) {
        auto [a, b] = usage_entropies(x, 0.7, {});
        return (-0.01 * a + 0.02 * b).item<double>();
      };
      const double numeric = (f(plus) - f(minus)) / (2 * eps);
      EXPECT_NEAR(grad[i][j].item<double>(), numeric, 1e-8) << i << "," << j;
    }
  // Value: H of the mean of the softmaxes.
  const auto p = torch::softmax(-d0 / 0.7, 1);
  const auto m = p.mean(0);
  EXPECT_NEAR(h_mean.item<double>(), -(m * m.log()).sum().item<double>(), 1e-12);
  EXPECT_NEAR(mean_h.item<double>(), -(p * p.log()).sum(1).mean().item<double>(), 1e-12);
}

TEST(Quantizer, MinusSignRaisesSoftUsageEntropy) {
  // A few gradient steps on the regulariser alone make the mean soft usage more uniform.
  torch::manual_seed(3);
  Quantizer q(32, 4, qconfig(1.0));
  {
    torch::NoGradGuard g;
    q->embedding.normal_();
  }
  // Encoder outputs crowd around a few codes: the mean soft usage is far from uniform.
  const auto z = (torch::randn({4, 4, 4, 4}) * 0.3 + 1.0).requires_grad_(true);
  torch::optim::SGD opt({z, q->embedding}, 0.5);
  const double before = q->forward(z).soft_usage_entropy;
  for (int i = 0; i < 20; ++i) {
    opt.zero_grad();
    q->forward(z).entropy_loss.backward();
    opt.step();
  }
  EXPECT_LT(before, std::log(32.0) - 0.1);
  EXPECT_GT(q->forward(z).soft_usage_entropy, before + 1e-2);
}

TEST(Quantizer, ReducerSeesTheGlobalBatch) {
  // Splitting a batch in two "ranks" whose sums are combined gives the single-batch entropy.
  torch::manual_seed(4);
  const auto d = torch::rand({8, 6}, torch::kDouble);
  const auto whole = usage_entropies(d, 1.0, {}).first.item<double>();
  const auto other = d.slice(0, 4, 8);
  auto reduce = [&](const at::Tensor& t) {
    if (t.numel() == 1) return t * 2;  // the count
    return t + torch::softmax(-other, 1).sum(0);
  };
  EXPECT_NEAR(usage_entropies(d.slice(0, 0, 4), 1.0, reduce).first.item<double>(), whole, 1e-12);
}

TEST(Quantizer, HistogramCountsCodes) {
  const auto idx = torch::tensor({0, 3, 3, 7}, torch::kLong).view({1, 2, 2});
  const auto h = code_histogram(idx, 8);
  EXPECT_EQ(h.size(0), 8);
  EXPECT_EQ(h[3].item<int64_t>(), 2);
  EXPECT_EQ(h.sum().item<int64_t>(), 4);
}

TEST(Quantizer, InitialCodesSpanTheConfiguredRange) {
  QuantizerConfig q;
  Quantizer vqgan(64, 8, q);  // default: VQGAN's +-1/K
  EXPECT_LE(vqgan->embedding.abs().max().item<double>(), 1.0 / 64);
  EXPECT_GT(vqgan->embedding.abs().max().item<double>(), 0.5 / 64);
  q.init_range = 0.5;
  Quantizer wide(64, 8, q);
  EXPECT_LE(wide->embedding.abs().max().item<double>(), 0.5);
  EXPECT_GT(wide->embedding.abs().max().item<double>(), 0.25);
}

TEST(Quantizer, FactorizedLooksUpUnitVectorsByCosineAndMapsBack) {
  torch::manual_seed(7);
  QuantizerConfig c = qconfig(0.0);
  c.kind = "factorized";
  c.factor_dim = 3;
  Quantizer q(32, 8, c);
  EXPECT_EQ(q->embedding.sizes(), (std::vector<int64_t>{32, 3}));
  const auto z = torch::randn({2, 8, 3, 3}, torch::requires_grad());
  const auto out = q->forward(z);
  // Nearest by cosine similarity between the projected output and the codes, brute force.
  const auto flat = z.detach().permute({0, 2, 3, 1}).reshape({-1, 8});
  const auto low = q->in_proj->forward(flat).detach();
  const auto codes = q->embedding.detach();
  for (int64_t i = 0; i < flat.size(0); ++i) {
    const auto cos = (codes * low[i]).sum(1) / (codes.norm(2, 1) * low[i].norm());
    EXPECT_EQ(out.indices.view({-1})[i].item<int64_t>(), cos.argmax().item<int64_t>());
  }
  // The output is the chosen unit code mapped back to the code dimension; lookup agrees.
  const auto idx = out.indices.view({-1});
  const auto unit = codes.index_select(0, idx) / codes.index_select(0, idx).norm(2, 1, true);
  const auto up = q->out_proj->forward(unit).detach().view({2, 3, 3, 8}).permute({0, 3, 1, 2});
  EXPECT_TRUE(torch::allclose(out.z_q.detach(), up, 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(q->lookup(out.indices).detach(), up, 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(q->nearest(z.detach()), out.indices));
  // Losses live in the normalised lookup space: both are mean squared distances of unit vectors.
  const auto low_unit = low / low.norm(2, 1, true);
  const double mse = (unit - low_unit).pow(2).mean().item<double>();
  EXPECT_NEAR(out.codebook_loss.item<double>(), mse, 1e-6);
  EXPECT_NEAR(out.commit_loss.item<double>(), 0.25 * mse, 1e-6);
  // Gradients reach the encoder output (straight-through, through both projections) and the maps.
  out.z_q.sum().backward();
  EXPECT_GT(z.grad().abs().sum().item<double>(), 0.0);
  EXPECT_GT(q->in_proj->weight.grad().abs().sum().item<double>(), 0.0);
  EXPECT_GT(q->out_proj->weight.grad().abs().sum().item<double>(), 0.0);
}

TEST(Quantizer, KMeansReestimationMovesCodesOntoClusterMeans) {
  torch::manual_seed(8);
  Quantizer q(4, 2, qconfig(0.0));
  // Points in three tight clusters; one of the four codes starts far from all of them.
  const auto centres = torch::tensor({{5.0f, 5.0f}, {-5.0f, 5.0f}, {0.0f, -5.0f}});
  const auto points = centres.repeat_interleave(50, 0) + 0.01 * torch::randn({150, 2});
  {
    torch::NoGradGuard g;
    q->embedding.copy_(torch::tensor({{4.0f, 4.0f}, {-4.0f, 4.0f}, {0.0f, -4.0f}, {100.0f, 100.0f}}));
  }
  auto gen = at::make_generator<at::CPUGeneratorImpl>(1);
  const int64_t moved = q->reestimate(points, 5, gen);
  EXPECT_EQ(moved, 1);  // the far code attracted nothing
  const auto e = q->embedding.detach();
  for (int k = 0; k < 3; ++k) {
    const auto mean = points.slice(0, 50 * k, 50 * (k + 1)).mean(0);
    EXPECT_TRUE(torch::allclose(e[k], mean, 1e-5, 1e-5)) << k;
  }
  // The moved code now sits on one of the points.
  EXPECT_LT((points - e[3]).pow(2).sum(1).min().item<double>(), 1e-10);
  // Every point's nearest code is its own cluster's (or the moved code, inside a cluster).
  const auto idx = q->nearest(points.t().reshape({1, 2, 150, 1}).contiguous()).view({-1});
  EXPECT_EQ(idx.slice(0, 100, 150).eq(2).sum().item<int64_t>() + idx.slice(0, 100, 150).eq(3).sum().item<int64_t>(), 50);
}
