#include "train/ema.h"

#include <torch/nn/module.h>

#include <algorithm>

#include "seqgan/checkpoint.h"
#include "seqgan/error.h"

namespace seqgan {

Ema::Ema(const torch::nn::Module& module, double decay) : decay_(decay) {
  SEQGAN_CHECK(decay >= 0 && decay < 1, "EMA decay must be in [0, 1), got ", decay);
  if (!enabled()) return;
  torch::NoGradGuard ng;
  for (const auto& p : module.named_parameters()) {
    if (!p.value().is_floating_point()) continue;
    names_.push_back(p.key());
    params_.push_back(p.value());
    average_.push_back(p.value().detach().clone());
  }
}

double Ema::current_decay() const {
  const double n = static_cast<double>(updates_);
  return std::min(decay_, (1.0 + n) / (10.0 + n));
}

void Ema::update() {
  if (!enabled()) return;
  torch::NoGradGuard ng;
  const double weight = 1.0 - current_decay();
  for (size_t i = 0; i < params_.size(); ++i) average_[i].lerp_(params_[i].detach(), weight);
  ++updates_;
}

safetensors::TensorMap Ema::state(const torch::nn::Module& module, const std::string& prefix) const {
  safetensors::TensorMap out;
  if (!enabled()) return out;
  for (const auto& [k, v] : state_dict(module)) out[prefix + k] = v;  // buffers and any integer tensors
  for (size_t i = 0; i < names_.size(); ++i) out[prefix + names_[i]] = average_[i];
  out[prefix + "__updates"] = at::tensor({updates_}, at::kLong);
  return out;
}

void Ema::load(const safetensors::TensorMap& tensors, const std::string& prefix, const std::string& source) {
  if (!enabled()) return;
  const auto count = tensors.find(prefix + "__updates");
  SEQGAN_CHECK_HINT(count != tensors.end(), "resume with the ema_decay the run was started with", source,
                    " holds no moving average of the weights ('", prefix, "__updates' is missing)");
  updates_ = count->second.to(at::kLong).item<int64_t>();
  torch::NoGradGuard ng;
  for (size_t i = 0; i < names_.size(); ++i) {
    const auto it = tensors.find(prefix + names_[i]);
    SEQGAN_CHECK_HINT(it != tensors.end(), "the file is damaged; restore it or start the run again", source,
                      ": the moving average lacks '", prefix + names_[i], "'");
    SEQGAN_CHECK_HINT(it->second.sizes() == average_[i].sizes(), "the file is damaged; restore it or start the run again",
                      source, ": '", prefix + names_[i], "' has shape ", it->second.sizes(), ", expected ", average_[i].sizes());
    average_[i].copy_(it->second);
  }
}

}  // namespace seqgan
