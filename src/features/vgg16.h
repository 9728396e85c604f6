// torchvision's VGG16 (configuration "D", no batch norm) with torchvision's module names, so a
// converted public state dict ("features.0.weight" ... "classifier.6.bias") loads by name.
#pragma once

#include <array>
#include <string>
#include <vector>

#include "features/feature_net.h"

namespace seqgan {

// torchvision's vgg16().features: 13 (Conv2d 3x3, ReLU) with a 2x2 max-pool after each of the
// five stages, indices 0..30.
torch::nn::Sequential vgg16_features();

class Vgg16 : public FeatureNetwork {
 public:
  // Indices in `features` of the ReLUs whose outputs are relu1_2 ... relu5_3.
  static constexpr std::array<int, 5> kTapIndices{3, 8, 15, 22, 29};
  static constexpr int kNumClasses = 1000;

  // Weights are torch's default initialisation: load real ones before use (load_feature_network).
  Vgg16();

  std::map<std::string, at::Tensor> taps(const at::Tensor& x, const std::vector<std::string>& names) override;
  std::vector<std::string> tap_names() const override { return standard_tap_names(); }
  std::string description() const override { return "vgg16 (torchvision layout)"; }

  // [B, 1|3, H, W] in [-1, 1] -> [B, 3, H, W] normalised with ImageNet's mean and std, the input
  // torchvision's weights were trained on. Grey images are repeated to three channels.
  static at::Tensor preprocess(const at::Tensor& x);

  // Children numbered as in torchvision: features = 13 x (Conv2d, ReLU) with a MaxPool2d after
  // each of the five stages (indices 0..30); classifier = Linear, ReLU, Dropout, Linear, ReLU,
  // Dropout, Linear (indices 0..6). avgpool has no parameters.
  torch::nn::Sequential features{nullptr};
  torch::nn::AdaptiveAvgPool2d avgpool{nullptr};
  torch::nn::Sequential classifier{nullptr};
};

}  // namespace seqgan
