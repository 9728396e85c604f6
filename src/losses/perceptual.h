// Semantic-enhanced perceptual loss (paper 3.3.2, Eq. 3):
//   per tap l:  d_l = 1 / (H_l W_l C_l) |f_l(x^) - f_l(x)|^2, averaged over the batch
//   L_low = sum of d_l over low_taps, L_sem = sum of d_l over sem_taps
//   L = weight * (alpha L_sem + (1 - alpha) L_low)
// The paper's L_low uses relu1_2 ... relu5_3, its L_sem relu5_3 and the logit; alpha = 1 in
// phase 1, 0 in phase 2.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "features/feature_net.h"
#include "seqgan/config.h"

namespace seqgan {

struct PerceptualOptions {
  double alpha = 1.0;   // semantic ratio, in [0, 1]
  double weight = 1.0;  // lambda_per
  // LPIPS-style: before the difference, each position's channel vector f of a low tap is divided
  // by sqrt(|f|^2 + lpips_eps) (inside the root, so an all-zero ReLU vector has a finite gradient).
  bool lpips_normalize = false;
  double lpips_eps = 1e-10;
  std::vector<std::string> low_taps{"relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3"};
  std::vector<std::string> sem_taps{"relu5_3", "logit"};

  // `alpha`: the semantic ratio of the phase being trained (phase 1: config.alpha; phase 2:
  // phase2.alpha).
  static PerceptualOptions from_config(const PerceptualConfig& config, double alpha);
};

struct PerceptualResult {
  at::Tensor loss;  // scalar: the weighted total; differentiable w.r.t. the reconstruction only
  // Detached scalars for logging, undefined when not computed (alpha = 1 skips L_low, alpha = 0
  // skips L_sem): the unweighted sums, and each tap's d_l keyed "low/<tap>" or "sem/<tap>".
  at::Tensor low, sem;
  std::map<std::string, at::Tensor> terms;
};

class PerceptualLossImpl : public torch::nn::Module {
 public:
  // Checks the options against the network's taps. The network is registered as the frozen
  // submodule "network" (so .to(device) moves it); don't checkpoint this module with a model.
  PerceptualLossImpl(PerceptualOptions options, std::shared_ptr<FeatureNetwork> network);

  // reconstruction, target: [B, C, H, W] in [-1, 1], same shape. The target's features are
  // computed without autograd: gradients reach only `reconstruction`.
  PerceptualResult forward(const at::Tensor& reconstruction, const at::Tensor& target);

  // Keeps the network in eval mode whatever the mode of the modules around this one: dropout
  // or batch statistics in a loss network would make the loss noisy.
  void train(bool on = true) override;

  const PerceptualOptions& options() const { return options_; }
  FeatureNetwork& network() { return *network_; }

 private:
  PerceptualOptions options_;
  std::shared_ptr<FeatureNetwork> network_;
  std::vector<std::string> needed_;  // taps computed per call: only those with a non-zero weight
};
TORCH_MODULE(PerceptualLoss);

// The loss of a config section: loads config.network from config.weights (strictly, see
// load_feature_network), freezes it and moves it to `device`.
PerceptualLoss make_perceptual_loss(const PerceptualConfig& config, const torch::Device& device = torch::kCPU);

}  // namespace seqgan
