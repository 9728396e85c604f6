// Semantic-enhanced perceptual loss (paper Eq. 3).
#include "losses/perceptual.h"

#include "seqgan/error.h"

namespace seqgan {
namespace {

std::string join(const std::vector<std::string>& names) {
  std::string s;
  for (const auto& n : names) s += (s.empty() ? "" : ", ") + n;
  return s;
}

// [B, C, ...] -> the same, each position's channel vector divided by sqrt(|f|^2 + eps).
at::Tensor unit_normalize(const at::Tensor& f, double eps) {
  return f * torch::rsqrt(f.pow(2).sum(1, /*keepdim=*/true) + eps);
}

}  // namespace

PerceptualOptions PerceptualOptions::from_config(const PerceptualConfig& config, double alpha) {
  PerceptualOptions o;
  o.alpha = alpha;
  o.weight = config.weight;
  o.lpips_normalize = config.lpips_normalize;
  o.low_taps = config.low_taps;
  o.sem_taps = config.sem_taps;
  return o;
}

PerceptualLossImpl::PerceptualLossImpl(PerceptualOptions options, std::shared_ptr<FeatureNetwork> network)
    : options_(std::move(options)), network_(std::move(network)) {
  SEQGAN_CHECK(network_ != nullptr, "expected a feature network, found none");
  const auto& o = options_;
  SEQGAN_CHECK_HINT(o.alpha >= 0 && o.alpha <= 1, "set perceptual.alpha in [0, 1]", "expected alpha in [0, 1], found ",
                    o.alpha);
  SEQGAN_CHECK_HINT(o.weight >= 0, "set perceptual.weight >= 0", "expected a non-negative weight, found ", o.weight);
  SEQGAN_CHECK(o.lpips_eps > 0, "expected lpips_eps > 0, found ", o.lpips_eps);
  SEQGAN_CHECK_HINT(o.alpha == 1 || !o.low_taps.empty(), "name the low taps or set alpha = 1",
                    "alpha = ", o.alpha, " weighs L_low, but low_taps is empty");
  SEQGAN_CHECK_HINT(o.alpha == 0 || !o.sem_taps.empty(), "name the semantic taps or set alpha = 0",
                    "alpha = ", o.alpha, " weighs L_sem, but sem_taps is empty");

  // Every name is checked (even of an unused group), so a typo fails at start-up, not later.
  const std::vector<std::string> offered = network_->tap_names();
  for (const auto* group : {&o.low_taps, &o.sem_taps})
    for (size_t i = 0; i < group->size(); ++i) {
      const std::string& name = (*group)[i];
      SEQGAN_CHECK_HINT(std::find(offered.begin(), offered.end(), name) != offered.end(),
                        str("use one of: ", join(offered)), network_->description(), " has no tap '", name, "'");
      SEQGAN_CHECK(std::count(group->begin(), group->end(), name) == 1, "tap '", name, "' is listed twice in ",
                   group == &o.low_taps ? "low_taps" : "sem_taps");
    }

  auto add = [&](const std::vector<std::string>& group) {
    for (const auto& n : group)
      if (std::find(needed_.begin(), needed_.end(), n) == needed_.end()) needed_.push_back(n);
  };
  if (o.alpha < 1) add(o.low_taps);
  if (o.alpha > 0) add(o.sem_taps);

  network_->freeze();
  register_module("network", network_);
}

void PerceptualLossImpl::train(bool on) {
  torch::nn::Module::train(on);
  network_->eval();
}

PerceptualResult PerceptualLossImpl::forward(const at::Tensor& reconstruction, const at::Tensor& target) {
  SEQGAN_CHECK(reconstruction.sizes() == target.sizes(), "expected reconstruction and target of the same shape, found ",
               reconstruction.sizes(), " and ", target.sizes());
  const auto& o = options_;
  std::map<std::string, at::Tensor> ref;
  {
    torch::NoGradGuard no_grad;  // the target is a constant of the loss
    ref = network_->taps(target, needed_);
  }
  const std::map<std::string, at::Tensor> rec = network_->taps(reconstruction, needed_);

  PerceptualResult result;
  // Sum over a group of 1 / (H W C) |f(x^) - f(x)|^2, batch mean: the mean over all elements.
  auto group_loss = [&](const std::vector<std::string>& taps, bool normalize, const char* prefix) {
    at::Tensor total;
    for (const auto& name : taps) {
      at::Tensor a = rec.at(name), b = ref.at(name);
      if (normalize) {
        a = unit_normalize(a, o.lpips_eps);
        b = unit_normalize(b, o.lpips_eps);
      }
      const at::Tensor d = (a - b).pow(2).mean();
      result.terms[str(prefix, "/", name)] = d.detach();
      total = total.defined() ? total + d : d;
    }
    return total;
  };

  at::Tensor loss;
  if (o.alpha > 0) {
    const at::Tensor sem = group_loss(o.sem_taps, false, "sem");
    result.sem = sem.detach();
    loss = o.alpha * sem;
  }
  if (o.alpha < 1) {
    const at::Tensor low = group_loss(o.low_taps, o.lpips_normalize, "low");
    result.low = low.detach();
    loss = loss.defined() ? loss + (1 - o.alpha) * low : (1 - o.alpha) * low;
  }
  result.loss = o.weight * loss;
  return result;
}

PerceptualLoss make_perceptual_loss(const PerceptualConfig& config, const torch::Device& device) {
  return PerceptualLoss(PerceptualOptions::from_config(config, config.alpha), load_feature_network(config.network, config.weights, device));
}

}  // namespace seqgan
