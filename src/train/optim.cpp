#include "train/optim.h"

#include <ATen/Parallel.h>

#include <cmath>

#include "seqgan/error.h"

namespace seqgan {

namespace {

// Whether the update can run as one loop over raw memory: float32 on the CPU, the parameter, its
// gradient and both moments laid out alike (channels-last weights included) with no gaps.
bool flat_cpu(const at::Tensor& p, const at::Tensor& g, const at::Tensor& m, const at::Tensor& v) {
  auto same = [&](const at::Tensor& t) {
    return t.device().is_cpu() && t.scalar_type() == at::kFloat && t.strides() == p.strides() && t.sizes() == p.sizes();
  };
  return same(p) && same(g) && same(m) && same(v) && p.is_non_overlapping_and_dense();
}

// One pass of torch.optim.Adam's update over n floats, instead of eight tensor operations (and two
// temporaries) each reading the whole tensor.
void adam_loop(float* p, const float* g, float* m, float* v, int64_t n, float beta1, float beta2, float bc2_sqrt,
               float eps, float step_size, float decay) {
  at::parallel_for(0, n, 1 << 15, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const float gi = g[i];
      const float mi = m[i] * beta1 + gi * (1 - beta1);
      const float vi = v[i] * beta2 + gi * gi * (1 - beta2);
      m[i] = mi;
      v[i] = vi;
      p[i] = p[i] * decay - step_size * (mi / (std::sqrt(vi) / bc2_sqrt + eps));
    }
  });
}

}  // namespace

void Adam::add(const std::string& name, at::Tensor param, bool decay) {
  for (const auto& s : slots_) SEQGAN_CHECK(s.name != name, "parameter '", name, "' added twice");
  Slot s{name, param, at::zeros_like(param, at::MemoryFormat::Preserve), at::zeros_like(param, at::MemoryFormat::Preserve), decay};
  slots_.push_back(std::move(s));
}

std::vector<at::Tensor> Adam::params() const {
  std::vector<at::Tensor> out;
  for (const auto& s : slots_) out.push_back(s.param);
  return out;
}

std::vector<std::pair<std::string, at::Tensor>> Adam::named_params() const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& s : slots_) out.emplace_back(s.name, s.param);
  return out;
}

bool Adam::decays(const std::string& name) const {
  for (const auto& s : slots_)
    if (s.name == name) return s.decay;
  return false;
}

void Adam::zero_grad() {
  for (auto& s : slots_)
    if (s.param.grad().defined()) s.param.mutable_grad() = at::Tensor();
}

void Adam::step() {
  torch::NoGradGuard no_grad;
  ++step_;
  const double bc1 = 1 - std::pow(options_.beta1, static_cast<double>(step_));
  const double bc2 = 1 - std::pow(options_.beta2, static_cast<double>(step_));
  const double step_size = options_.lr / bc1;
  const double bc2_sqrt = std::sqrt(bc2);
  for (auto& s : slots_) {
    const auto& g = s.param.grad();
    if (!g.defined()) continue;
    const double decay = s.decay && options_.weight_decay > 0 ? 1 - options_.lr * options_.weight_decay : 1.0;
    if (flat_cpu(s.param, g, s.exp_avg, s.exp_avg_sq)) {
      adam_loop(s.param.data_ptr<float>(), g.data_ptr<float>(), s.exp_avg.data_ptr<float>(),
                s.exp_avg_sq.data_ptr<float>(), s.param.numel(), static_cast<float>(options_.beta1),
                static_cast<float>(options_.beta2), static_cast<float>(bc2_sqrt), static_cast<float>(options_.eps),
                static_cast<float>(step_size), static_cast<float>(decay));
      continue;
    }
    if (decay != 1.0) s.param.mul_(decay);
    s.exp_avg.mul_(options_.beta1).add_(g, 1 - options_.beta1);
    s.exp_avg_sq.mul_(options_.beta2).addcmul_(g, g, 1 - options_.beta2);
    const auto denom = (s.exp_avg_sq.sqrt() / bc2_sqrt).add_(options_.eps);
    s.param.addcdiv_(s.exp_avg, denom, -step_size);
  }
}

void Adam::save_state(safetensors::TensorMap& out, const std::string& prefix) const {
  for (const auto& s : slots_) {
    out[prefix + s.name + ".exp_avg"] = s.exp_avg.detach().cpu().contiguous();
    out[prefix + s.name + ".exp_avg_sq"] = s.exp_avg_sq.detach().cpu().contiguous();
  }
  out[prefix + "step"] = torch::tensor({step_}, torch::kLong);
}

void Adam::load_state(const safetensors::TensorMap& in, const std::string& prefix, const std::string& source) {
  auto get = [&](const std::string& key, const at::Tensor& like) {
    const auto it = in.find(key);
    SEQGAN_CHECK_HINT(it != in.end(), "the checkpoint was written by another model or config; start afresh or pass the matching --config",
                      source, ": optimiser state '", key, "' is missing");
    SEQGAN_CHECK(!like.defined() || it->second.sizes() == like.sizes(), source, ": optimiser state '", key, "' has shape ",
                 it->second.sizes(), ", expected ", like.sizes());
    return it->second;
  };
  torch::NoGradGuard no_grad;
  for (auto& s : slots_) {
    s.exp_avg.copy_(get(prefix + s.name + ".exp_avg", s.exp_avg));
    s.exp_avg_sq.copy_(get(prefix + s.name + ".exp_avg_sq", s.exp_avg_sq));
  }
  step_ = get(prefix + "step", {}).item<int64_t>();
}

double schedule_lr(const std::string& schedule, int64_t step, int64_t total, double lr, double lr_end, int64_t warmup,
                   int64_t decay_start) {
  if (warmup > 0 && step < warmup) return lr * static_cast<double>(step + 1) / static_cast<double>(warmup);
  const double last = static_cast<double>(std::max<int64_t>(1, total - 1));
  if (schedule == "constant") return lr;
  if (schedule == "cosine") {
    const double span = std::max(1.0, last - static_cast<double>(warmup));
    const double t = std::clamp((static_cast<double>(step) - static_cast<double>(warmup)) / span, 0.0, 1.0);
    return lr_end + 0.5 * (lr - lr_end) * (1 + std::cos(M_PI * t));
  }
  const double start = static_cast<double>(std::max(decay_start, warmup));
  if (static_cast<double>(step) <= start) return lr;
  const double t = std::clamp((static_cast<double>(step) - start) / std::max(1.0, last - start), 0.0, 1.0);
  if (schedule == "linear") return lr + (lr_end - lr) * t;
  if (schedule == "exponential") {
    SEQGAN_CHECK_HINT(lr_end > 0, "use a positive lr_end or another schedule", "exponential decay needs lr_end > 0, got ", lr_end);
    return lr * std::pow(lr_end / lr, t);
  }
  throw Error(str("unknown learning-rate schedule '", schedule, "'"), "use constant, cosine, linear or exponential");
}

}  // namespace seqgan
