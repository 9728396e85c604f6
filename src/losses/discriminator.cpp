#include "losses/discriminator.h"

#include <cmath>

#include "seqgan/error.h"

namespace seqgan {

namespace {
constexpr double kSlope = 0.2;
at::Tensor lrelu(const at::Tensor& x) { return at::leaky_relu(x, kSlope); }
torch::nn::Conv2d conv(int64_t in, int64_t out, int64_t k, bool bias) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, k).padding(k / 2).bias(bias));
}
}  // namespace

DiscBlockImpl::DiscBlockImpl(int64_t in, int64_t out) {
  conv1 = register_module("conv1", conv(in, in, 3, true));
  conv2 = register_module("conv2", conv(in, out, 3, true));
  skip = register_module("skip", conv(in, out, 1, false));
}

at::Tensor DiscBlockImpl::forward(const at::Tensor& x) {
  auto h = lrelu(conv1(x));
  h = lrelu(at::avg_pool2d(conv2(h), 2));
  const auto s = skip(at::avg_pool2d(x, 2));
  return (h + s) * (1.0 / std::sqrt(2.0));
}

at::Tensor minibatch_stddev(const at::Tensor& x, int64_t group_size) {
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t G = std::min(group_size, B);
  SEQGAN_CHECK_HINT(B % G == 0, "use a per-rank batch size divisible by discriminator.mbstd_group",
                    "batch of ", B, " is not divisible by the minibatch-stddev group ", G);
  auto y = x.reshape({G, B / G, C, H, W});                  // [G, M, C, H, W]
  y = (y - y.mean(0)).pow(2).mean(0).add(1e-8).sqrt();       // [M, C, H, W]
  y = y.mean({1, 2, 3}).reshape({B / G, 1, 1, 1});            // [M, 1, 1, 1]
  y = y.repeat({G, 1, H, W});                                 // [B, 1, H, W]
  return at::cat({x, y}, 1);
}

DiscriminatorImpl::DiscriminatorImpl(const DiscriminatorConfig& c, int image_channels, int resolution)
    : mbstd_group_(c.mbstd_group) {
  SEQGAN_CHECK(resolution >= 8 && (resolution & (resolution - 1)) == 0,
               "the discriminator needs a power-of-two resolution >= 8, got ", resolution);
  auto width = [&](int res) {
    return static_cast<int64_t>(std::min<int64_t>(c.max_channels, static_cast<int64_t>(c.base_channels) * (resolution / res)));
  };
  from_rgb = register_module("from_rgb", conv(image_channels, width(resolution), 1, true));
  blocks = register_module("blocks", torch::nn::ModuleList());
  for (int res = resolution; res > 4; res /= 2) blocks->push_back(DiscBlock(width(res), width(res / 2)));
  const int64_t w4 = width(4);
  conv_out = register_module("conv_out", conv(w4 + 1, w4, 3, true));
  fc = register_module("fc", torch::nn::Linear(w4 * 16, w4));
  out = register_module("out", torch::nn::Linear(w4, 1));
}

at::Tensor DiscriminatorImpl::forward(const at::Tensor& x) {
  auto h = lrelu(from_rgb(x));
  for (const auto& b : *blocks) h = b->as<DiscBlock>()->forward(h);
  h = lrelu(conv_out(minibatch_stddev(h, mbstd_group_)));  // [B, C, 4, 4]
  h = lrelu(fc(h.flatten(1)));
  return out(h).view({-1});
}

at::Tensor discriminator_loss(const at::Tensor& real_logits, const at::Tensor& fake_logits) {
  return at::softplus(fake_logits).mean() + at::softplus(-real_logits).mean();
}

at::Tensor generator_loss(const at::Tensor& fake_logits) { return at::softplus(-fake_logits).mean(); }

at::Tensor r1_penalty(const at::Tensor& real_logits, const at::Tensor& real, double gamma) {
  const auto grad = torch::autograd::grad({real_logits.sum()}, {real}, {}, true, true)[0];
  return 0.5 * gamma * grad.pow(2).sum({1, 2, 3}).mean();
}

}  // namespace seqgan
