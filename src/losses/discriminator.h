// StyleGAN2-style residual discriminator with minibatch standard deviation, and the GAN losses:
// non-saturating logistic loss, lazy R1 penalty.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>

#include "seqgan/config.h"

namespace seqgan {

// conv3x3, lrelu, conv3x3 + 2x downsampling, lrelu; skip: downsampling + conv1x1; sum / sqrt(2).
class DiscBlockImpl : public torch::nn::Module {
 public:
  DiscBlockImpl(int64_t in_channels, int64_t out_channels);
  at::Tensor forward(const at::Tensor& x);  // [B, Cin, H, W] -> [B, Cout, H/2, W/2]

 private:
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr}, skip{nullptr};
};
TORCH_MODULE(DiscBlock);

class DiscriminatorImpl : public torch::nn::Module {
 public:
  DiscriminatorImpl(const DiscriminatorConfig& config, int image_channels, int resolution);
  at::Tensor forward(const at::Tensor& x);  // [B, c, R, R] -> [B] logits

 private:
  int mbstd_group_;
  torch::nn::Conv2d from_rgb{nullptr}, conv_out{nullptr};
  torch::nn::ModuleList blocks{nullptr};
  torch::nn::Linear fc{nullptr}, out{nullptr};
};
TORCH_MODULE(Discriminator);

// Appends the standard deviation over groups of the batch as one extra feature map.
at::Tensor minibatch_stddev(const at::Tensor& x, int64_t group_size);

// softplus(D(fake)) + softplus(-D(real)), batch means.
at::Tensor discriminator_loss(const at::Tensor& real_logits, const at::Tensor& fake_logits);
// softplus(-D(fake)), batch mean.
at::Tensor generator_loss(const at::Tensor& fake_logits);
// gamma / 2 * E ||d D(real) / d real||^2; `real` must require grad and have produced `real_logits`.
at::Tensor r1_penalty(const at::Tensor& real_logits, const at::Tensor& real, double gamma);

}  // namespace seqgan
