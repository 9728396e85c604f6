#include "train/trace.h"

#include <cstdio>
#include <filesystem>
#include <iomanip>
#include <sstream>
#include <nlohmann/json.hpp>

namespace seqgan {

namespace {
at::Tensor stored(const at::Tensor& t) {
  auto c = t.detach().cpu().contiguous();
  return c.scalar_type() == at::kBool ? c.to(at::kByte) : c.clone();
}
}  // namespace

StepTracer::StepTracer(const std::string& dir, bool writer) : on_(!dir.empty() && writer), dir_(dir) {
  if (on_) std::filesystem::create_directories(dir_);
}

void StepTracer::initial(const safetensors::TensorMap& tensors, const safetensors::Metadata& metadata) const {
  if (!on_) return;
  safetensors::TensorMap out;
  for (const auto& [k, v] : tensors) out[k] = stored(v);
  safetensors::save(dir_ + "/initial.safetensors", out, metadata);
}

void StepTracer::input(const std::string& name, const at::Tensor& value) {
  if (on_) tensors_["input." + name] = stored(value);
}

void StepTracer::loss(const std::string& name, double value) {
  if (on_) losses_[name] = value;
}

void StepTracer::meta(const std::string& key, const std::string& value) {
  if (on_) meta_[key] = value;
}

void StepTracer::meta(const std::string& key, double value) {
  if (!on_) return;
  std::ostringstream text;
  text << std::setprecision(17) << value;
  meta_[key] = text.str();
}

void StepTracer::grads(const std::string& prefix, const std::vector<std::pair<std::string, at::Tensor>>& params) {
  if (!on_) return;
  for (const auto& [name, p] : params)
    if (p.grad().defined()) tensors_["grad." + prefix + name] = stored(p.grad());
}

void StepTracer::write(int64_t step) {
  if (!on_) return;
  meta_["losses"] = nlohmann::json(losses_).dump();
  char name[32];
  std::snprintf(name, sizeof name, "/step-%06lld.safetensors", static_cast<long long>(step));
  safetensors::save(dir_ + name, tensors_, meta_);
  tensors_.clear();
  losses_.clear();
  meta_.clear();
}

}  // namespace seqgan
