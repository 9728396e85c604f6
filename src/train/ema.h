// An exponential moving average of a module's weights (Polyak averaging), as image generators
// keep one for sampling: after every optimiser step, ema <- d ema + (1 - d) w with
// d = min(decay, (1 + n) / (10 + n)) at update n (0-based), so that the first updates follow the
// weights closely and short runs are not dominated by the initialisation.
//
// The average covers every floating-point parameter; buffers are taken as they are when saved.
// It is part of the training state (checkpoint.safetensors, under "ema.") so that a resumed run
// continues it exactly, and of the model file (under "ema." beside the raw weights; see
// WeightChoice in seqgan/checkpoint.h).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "seqgan/safetensors.h"

namespace torch::nn {
class Module;
}

namespace seqgan {

class Ema {
 public:
  Ema() = default;
  // Starts the average at the module's current weights; decay 0 makes an Ema that does nothing.
  Ema(const torch::nn::Module& module, double decay);

  bool enabled() const { return decay_ > 0; }
  double decay() const { return decay_; }
  int64_t updates() const { return updates_; }
  // The decay the next update uses.
  double current_decay() const;

  // One update with the module's current weights.
  void update();

  // The averaged weights and the module's buffers, named as state_dict(module) names them,
  // under `prefix`; and the update count as "PREFIX__updates".
  safetensors::TensorMap state(const torch::nn::Module& module, const std::string& prefix) const;
  // Restores the average saved by state(); `source` names the file in errors.
  void load(const safetensors::TensorMap& tensors, const std::string& prefix, const std::string& source);

 private:
  double decay_ = 0;
  int64_t updates_ = 0;
  std::vector<std::string> names_;
  std::vector<at::Tensor> params_;   // the module's parameters
  std::vector<at::Tensor> average_;  // their averages (same dtype and device)
};

}  // namespace seqgan
