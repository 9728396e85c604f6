// InceptionV3 as FID uses it: the network of pytorch-fid (weights pt_inception-2015-12-05,
// converted from the TensorFlow FID graph). It is torchvision's Inception3 with 1008 classes, no
// auxiliary head, and four pooling differences that reproduce the TensorFlow graph:
//   Mixed_5b/5c/5d (A), Mixed_6b..6e (C) and Mixed_7b (E): the branch average pool does not
//   count the zero padding (count_include_pad = false);
//   Mixed_7c (E): the pool branch takes a 3x3 max pool (stride 1, padding 1) instead.
// Inputs are resized bilinearly (align_corners = false) to 299x299. Parameter names follow
// torchvision ("Conv2d_1a_3x3.conv.weight", "Mixed_5b.branch1x1.bn.running_mean", "fc.weight"),
// which is what the public weight file uses; tools/convert_inception.py writes it as safetensors.
#pragma once

#include <string>
#include <vector>

#include "features/feature_net.h"

namespace seqgan {

class InceptionV3Fid : public FeatureNetwork {
 public:
  static constexpr int kNumClasses = 1008;
  static constexpr int kFeatures = 2048;
  static constexpr int kResize = 299;
  static constexpr int kSpatialChannels = 7;
  static constexpr int kSpatialFeatures = kSpatialChannels * 17 * 17;  // 2023

  // How images reach 299x299: pytorch-fid's way (the default), or the way of ADM's evaluator,
  // whose TensorFlow graph resizes with TF1's legacy bilinear and maps pixels u to (u - 128) / 128.
  enum class Resize { kPytorchFid, kAdm };
  static std::string resize_description(Resize resize);

  // Weights are torch's default initialisation: load real ones before use (load_feature_network).
  InceptionV3Fid();

  // Taps: "spatial" ([B, 2023]: the first 7 channels of Mixed_6d's 1x1 branch, TF's
  // mixed_6/conv, 17x17 flattened channels-last as ADM's sFID takes them), "features" ([B, 2048],
  // the global average pool FID uses) and "logit" ([B, 1008], the classifier IS uses).
  // x: [B, 1|3, H, W] in [-1, 1]; grey is repeated to three channels.
  std::map<std::string, at::Tensor> taps(const at::Tensor& x, const std::vector<std::string>& names) override;
  std::vector<std::string> tap_names() const override { return {"spatial", "features", "logit"}; }
  std::string description() const override { return "inception-v3 (pytorch-fid)"; }

  void set_resize(Resize resize) { resize_ = resize; }
  Resize resize() const { return resize_; }
  // The logit layer's weight [1008, 2048]: ADM's IS applies it without the bias.
  at::Tensor fc_weight() const;
  // The logit layer on pooled features [B, 2048] -> [B, 1008] (with its bias, as the "logit" tap).
  at::Tensor classify(const at::Tensor& features) { return fc_(features); }

 private:
  std::vector<std::shared_ptr<torch::nn::Module>> stem_;    // the seven stem convolutions
  std::vector<std::shared_ptr<torch::nn::Module>> mixed_;   // Mixed_5b ... Mixed_7c
  torch::nn::Linear fc_{nullptr};
  Resize resize_ = Resize::kPytorchFid;
};

}  // namespace seqgan
