// A step-by-step record of a training run, for checking its arithmetic against another
// implementation (RunOptions::trace_dir; python/seqgan_torch/train_parity.py replays it in
// PyTorch): DIR/initial.safetensors holds the weights before the first step, the run's
// configuration and the optimiser's parameters; DIR/step-NNNNNN.safetensors each step's inputs
// ("input.*"), every loss term (metadata "losses") and the gradients the optimisers used
// ("grad.model.*", "grad.disc.*"). Off (every call a no-op) without a directory.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "seqgan/safetensors.h"

namespace seqgan {

class StepTracer {
 public:
  StepTracer() = default;
  StepTracer(const std::string& dir, bool writer);

  bool on() const { return on_; }
  // The weights before the first step (names already prefixed) and the run's description.
  void initial(const safetensors::TensorMap& tensors, const safetensors::Metadata& metadata) const;
  void input(const std::string& name, const at::Tensor& value);
  void loss(const std::string& name, double value);
  void meta(const std::string& key, const std::string& value);
  void meta(const std::string& key, double value);  // written to round-trip exactly
  // The gradients of `params` as they stand, as "grad." + prefix + name.
  void grads(const std::string& prefix, const std::vector<std::pair<std::string, at::Tensor>>& params);
  // Writes the step's record (atomically) and starts the next one.
  void write(int64_t step);

 private:
  bool on_ = false;
  std::string dir_;
  safetensors::TensorMap tensors_;
  std::map<std::string, double> losses_;
  safetensors::Metadata meta_;
};

}  // namespace seqgan
