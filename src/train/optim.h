// Adam / AdamW with named state, so that optimiser state goes into safetensors checkpoints by name
// and a resumed run continues bit for bit. The update is torch.optim.Adam's (bias-corrected
// moments, eps outside the square root); weight decay is decoupled (AdamW) and applies only to the
// parameters flagged for it.
#pragma once

#include <map>
#include <utility>
#include <string>
#include <vector>

#include "seqgan/safetensors.h"

namespace seqgan {

struct AdamOptions {
  double lr = 1e-4;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;  // decoupled; only for parameters added with decay = true
};

class Adam {
 public:
  explicit Adam(AdamOptions options) : options_(options) {}
  void add(const std::string& name, at::Tensor param, bool decay = false);
  void set_lr(double lr) { options_.lr = lr; }
  double lr() const { return options_.lr; }
  void zero_grad();
  void step();
  int64_t steps() const { return step_; }
  // "<prefix><name>.exp_avg", "<prefix><name>.exp_avg_sq" and "<prefix>step".
  void save_state(safetensors::TensorMap& out, const std::string& prefix) const;
  void load_state(const safetensors::TensorMap& in, const std::string& prefix, const std::string& source);
  std::vector<at::Tensor> params() const;
  // (name, parameter) in the order they were added.
  std::vector<std::pair<std::string, at::Tensor>> named_params() const;
  // Whether the parameter called `name` takes weight decay.
  bool decays(const std::string& name) const;

 private:
  struct Slot {
    std::string name;
    at::Tensor param, exp_avg, exp_avg_sq;
    bool decay;
  };
  AdamOptions options_;
  std::vector<Slot> slots_;
  int64_t step_ = 0;
};

// Learning rate at `step` (0-based) of a schedule: linear warm-up, then
//   constant, cosine (from lr to lr_end over the remaining steps), linear (from decay_start to
//   the last step, down to lr_end), exponential (from decay_start, reaching lr_end at the last
//   step).
double schedule_lr(const std::string& schedule, int64_t step, int64_t total, double lr, double lr_end,
                   int64_t warmup, int64_t decay_start);

}  // namespace seqgan
