// Small classifiers trained on a data set's labels (SPEC section 5): the perceptual-loss network
// and the evaluation feature network where public VGG16 / InceptionV3 weights are absent. Two
// architectures, so that the loss network and the evaluation network are never the same one:
//   "vgg":    five stages of two (conv3x3, batch norm, ReLU), 2x2 max-pool between stages;
//   "resnet": conv stem, five stages of one residual basic block each, stride-2 convolution
//             (not pooling) between stages.
// Stage widths are width * {1, 2, 4, 8, 8}. Both expose the taps relu1_2 ... relu5_3 (the end of
// each stage, after its ReLU), "features" (global average pool of the last stage, [B, 8 width],
// the vector FID statistics use) and "logit" (a linear layer on the features).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "features/feature_net.h"

namespace seqgan {

struct ClassifierArch {
  std::string kind = "vgg";  // vgg | resnet
  int channels = 1;          // input channels the weights expect (1 or 3)
  int width = 16;            // channels of the first stage
  int num_classes = 10;
  int resolution = 32;       // image size it was trained at (>= 16; four 2x reductions)

  // Throws one error listing every invalid field.
  void validate() const;
  // {"kind": ..., "channels": ..., "width": ..., "num_classes": ..., "resolution": ...}
  std::string to_json() const;
  // Strict: every key required, no unknown key, types checked, then validate().
  static ClassifierArch from_json(const std::string& text, const std::string& where = "<json>");
  bool operator==(const ClassifierArch& o) const;
  bool operator!=(const ClassifierArch& o) const { return !(*this == o); }
};

class Classifier : public FeatureNetwork {
 public:
  explicit Classifier(const ClassifierArch& arch);

  // x: [B, C, H, W] in [-1, 1], H, W >= 16. A grey input to a 3-channel network is repeated; an
  // RGB input to a 1-channel network is reduced to ITU-R 601 luma (as the data loader does).
  std::map<std::string, at::Tensor> taps(const at::Tensor& x, const std::vector<std::string>& names) override;
  std::vector<std::string> tap_names() const override;
  std::string description() const override;

  // Class logits [B, num_classes].
  at::Tensor forward(const at::Tensor& x);
  // The logit head alone: pooled features [B, 8 width] -> logits [B, num_classes].
  at::Tensor classify(const at::Tensor& features) { return head_(features); }

  const ClassifierArch& arch() const { return arch_; }

 private:
  at::Tensor adapt_input(const at::Tensor& x) const;

  ClassifierArch arch_;
  torch::nn::Sequential stem_{nullptr};  // resnet only
  std::vector<torch::nn::Sequential> stages_;
  torch::nn::Linear head_{nullptr};
};

// A classifier checkpoint: the weights, metadata kind "classifier", config JSON
// {"arch": {...}, "train": <train_json>} and `extra` (e.g. test_accuracy). Written atomically.
void save_classifier(const std::string& path, const Classifier& model, const std::string& train_json = "{}",
                     const std::map<std::string, std::string>& extra = {});

// The architecture stored in a classifier checkpoint (reads the header only).
ClassifierArch read_classifier_arch(const std::string& path);

// Rebuilds the architecture from the checkpoint and loads the weights strictly. With a non-empty
// `expected_kind`, a classifier of another kind is refused (the evaluation network must not be
// the loss network). The model is returned in eval mode, not frozen.
std::shared_ptr<Classifier> load_classifier(const std::string& path, const std::string& expected_kind = "");

}  // namespace seqgan
