// Feature networks: frozen image networks whose intermediate activations ("taps") feed the
// perceptual loss (VGG16, paper 3.3.2) and the evaluation metrics (a classifier trained on the
// data set's labels when no public weights are available, SPEC section 5).
#pragma once

#include <torch/torch.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "seqgan/error.h"

namespace seqgan {

// The taps every feature network offers, shallow to deep: the ReLU output at the end of each of
// the five convolution stages, then the class logits (before any softmax). Networks may offer
// more (the classifiers add "features", the pooled vector the logit head reads).
inline const std::vector<std::string>& standard_tap_names() {
  static const std::vector<std::string> names{"relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3", "logit"};
  return names;
}

class FeatureNetwork : public torch::nn::Module {
 public:
  // x: [B, C, H, W] in [-1, 1], C = 1 or 3 (converted to what the network expects). Returns
  // exactly the requested taps, each [B, C_l, H_l, W_l] (spatial taps) or [B, D] (logit,
  // features); the network runs only as deep as the deepest requested tap. Throws for a name
  // the network does not offer, listing the ones it does.
  virtual std::map<std::string, at::Tensor> taps(const at::Tensor& x, const std::vector<std::string>& names) = 0;

  // All tap names this network offers, shallow to deep.
  virtual std::vector<std::string> tap_names() const = 0;

  // What the network is, for logs and reports ("vgg16 (torchvision layout)", "classifier vgg ...").
  virtual std::string description() const = 0;

  // Eval mode (dropout off, batch norm on running statistics) and requires_grad(false) on every
  // parameter: how a loss or evaluation network is used. Gradients still flow through to x.
  void freeze() {
    eval();
    for (auto& p : parameters()) p.set_requires_grad(false);
  }

 protected:
  // The position of each requested name in tap_names() (throws for unknown or duplicate names);
  // the largest one is how deep taps() must run.
  std::vector<int> tap_positions(const std::vector<std::string>& names) const {
    const std::vector<std::string> offered = tap_names();
    std::vector<int> positions;
    for (size_t i = 0; i < names.size(); ++i) {
      const auto it = std::find(offered.begin(), offered.end(), names[i]);
      if (it == offered.end()) {
        std::string list;
        for (const auto& n : offered) list += (list.empty() ? "" : ", ") + n;
        throw Error(str("FeatureNetwork::taps: ", description(), " has no tap '", names[i], "'"),
                    str("use one of: ", list));
      }
      SEQGAN_CHECK(std::find(names.begin(), names.begin() + static_cast<long>(i), names[i]) == names.begin() + static_cast<long>(i),
                   "tap '", names[i], "' is requested twice");
      positions.push_back(static_cast<int>(it - offered.begin()));
    }
    return positions;
  }
};

// Loads a frozen feature network from a weight file. kind:
//   "vgg16":      torchvision's VGG16 in safetensors (tools/convert_vgg16.py writes it; a plain
//                 safetensors copy of torchvision's state dict loads too);
//   "inception":  pytorch-fid's InceptionV3 in safetensors (tools/convert_inception.py writes it);
//   "classifier": a checkpoint written by train_classifier (its architecture is read from the
//                 checkpoint's metadata).
// Loading is strict: a missing file, an empty path, a file of another kind or any missing,
// unexpected or misshapen tensor is an error naming the file and the way to fix it. There is no
// fallback to random weights. The network is moved to `device`.
std::shared_ptr<FeatureNetwork> load_feature_network(const std::string& kind, const std::string& path,
                                                     const torch::Device& device = torch::kCPU);

}  // namespace seqgan
