#include "train/state.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
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
  SEQGAN_CHECK_HINT(nonfinite_in_row < max_in_row,
                    "resume from the last checkpoint with a lower learning rate (--resume --set KEY.lr=SMALLER)",
                    "stopping: ", nonfinite_in_row, " non-finite losses in a row");
  return true;
}

bool resumable_override(const std::string& key) {
  // Phase 2's own settings (the loss, the architecture, the discriminator's start) are fixed.
  const bool phase2_training = key.rfind("phase2.", 0) == 0 && key != "phase2.alpha" && key != "phase2.attn_pairs" &&
                               key != "phase2.fresh_discriminator";
  for (const char* section : {"train_tokenizer.", "train_ar.", "train_nar."})
    if (phase2_training || key.rfind(section, 0) == 0)
      // The batch fixes the data order; the null condition is part of the vocabulary; an average
      // restarted halfway would not be the one the run keeps.
      return key.find("batch_size") == std::string::npos && key.find("class_dropout") == std::string::npos &&
             key.find("ema_decay") == std::string::npos;
  for (const char* k : {"data.root", "data.val_root", "data.num_workers", "data.prefetch", "data.skip_bad_files",
                        "threads", "device"})
    if (key == k) return true;
  return false;
}

ResumePoint open_resume(const std::string& path, const std::string& kind, Config& config,
                        const std::vector<std::string>& overrides) {
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
  const auto value_of = [](const Config& c, const std::string& key) {
    for (const auto& f : config_fields(c))
      if (f.path == key) return f.value;
    return std::string("?");
  };
  // As when a configuration loads, a key set more than once takes its last value: layered --set
  // lists (an experiment's budget, then the user's) resume to what they started with.
  for (const auto& assignment : last_assignments(overrides)) {
    const std::string key = assignment.substr(0, assignment.find('='));
    Config changed = config;
    config_apply_override(changed, assignment);
    const std::string before = value_of(config, key), after = value_of(changed, key);
    if (before == after) continue;  // what the run has already
    SEQGAN_CHECK_HINT(resumable_override(key),
                      "a resumed run keeps the settings it was started with, except the training schedule "
                      "(train_tokenizer.*, phase2.* but alpha, attn_pairs and fresh_discriminator, train_ar.*, "
                      "train_nar.*; batch sizes, class dropout and EMA decay excepted) and where the data are read; "
                      "start a new run to change the rest",
                      "--set ", assignment, " cannot apply to the resumed run in ", path, " (it has ", key, " = ", before, ")");
    config = std::move(changed);
    log_info(str("resuming with ", key, " = ", after, " (the run had ", before, ")"));
  }
  if (!overrides.empty()) validate(config);
  return r;
}

safetensors::TensorMap with_prefix(const safetensors::TensorMap& tensors, const std::string& prefix) {
  safetensors::TensorMap out;
  for (const auto& [k, v] : tensors)
    if (k.rfind(prefix, 0) == 0) out[k.substr(prefix.size())] = v;
  return out;
}

}  // namespace seqgan
