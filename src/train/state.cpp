#include "train/state.h"

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <filesystem>

#include "seqgan/error.h"
#include "seqgan/log.h"

namespace seqgan {

namespace {
int64_t get_counter(const CheckpointMeta& meta, const std::string& key) {
  const auto it = meta.extra.find(key);
  SEQGAN_CHECK_HINT(it != meta.extra.end(), "the checkpoint is not a training state of this version; start afresh",
                    "checkpoint metadata has no '", key, "'");
  try {
    return std::stoll(it->second);
  } catch (const std::exception&) {
    throw Error(str("checkpoint metadata '", key, "' is not an integer: '", it->second, "'"));
  }
}
}  // namespace

void TrainState::to_meta(CheckpointMeta& meta, safetensors::TensorMap& tensors) const {
  meta.step = step;
  meta.extra["epoch"] = std::to_string(epoch);
  meta.extra["position"] = std::to_string(position);
  meta.extra["d_steps"] = std::to_string(d_steps);
  meta.extra["nonfinite_in_row"] = std::to_string(nonfinite_in_row);
  auto gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  tensors["rng.cpu"] = gen.get_state().clone();
}

TrainState TrainState::from_meta(const CheckpointMeta& meta, const safetensors::TensorMap& tensors) {
  TrainState s;
  s.step = meta.step;
  s.epoch = get_counter(meta, "epoch");
  s.position = get_counter(meta, "position");
  s.d_steps = get_counter(meta, "d_steps");
  s.nonfinite_in_row = get_counter(meta, "nonfinite_in_row");
  const auto it = tensors.find("rng.cpu");
  if (it != tensors.end()) {
    auto gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(it->second);
  }
  return s;
}

bool TrainState::skip_nonfinite(double loss, int64_t max_in_row) {
  if (std::isfinite(loss)) {
    nonfinite_in_row = 0;
    return false;
  }
  ++nonfinite_in_row;
  log_warn(str("step ", step, ": non-finite loss (", loss, "), step skipped (", nonfinite_in_row, " in a row)"));
  SEQGAN_CHECK_HINT(nonfinite_in_row < max_in_row, "lower the learning rate, or resume from the last checkpoint",
                    "stopping: ", nonfinite_in_row, " non-finite losses in a row");
  return true;
}

ResumePoint open_resume(const std::string& path, const std::string& kind, Config& config) {
  SEQGAN_CHECK_HINT(std::filesystem::exists(path), "start without --resume, or point --out at the interrupted run",
                    "nothing to resume: '", path, "' does not exist");
  ResumePoint r;
  r.file = safetensors::load(path);
  r.meta = CheckpointMeta::from_metadata(r.file.header.metadata, path);
  SEQGAN_CHECK_HINT(r.meta.kind == kind, "point --out at a run of this command", path, " is a '", r.meta.kind,
                    "' checkpoint, not a '", kind, "' training state");
  const int threads = config.threads;
  const std::string device = config.device;
  config = config_from_json(r.meta.config_json, path);
  config.threads = threads;
  config.device = device;
  return r;
}

safetensors::TensorMap with_prefix(const safetensors::TensorMap& tensors, const std::string& prefix) {
  safetensors::TensorMap out;
  for (const auto& [k, v] : tensors)
    if (k.rfind(prefix, 0) == 0) out[k.substr(prefix.size())] = v;
  return out;
}

}  // namespace seqgan
