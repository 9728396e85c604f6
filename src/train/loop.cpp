#include "train/loop.h"

#include <iomanip>
#include <nlohmann/json.hpp>
#include <sstream>

#include "seqgan/error.h"
#include "train/distributed.h"
#include "train/ema.h"

namespace seqgan {

namespace {

bool is_writer(const RunOptions& o) { return !o.group || o.group->rank() == 0; }

const std::string& checked_run_dir(const RunOptions& o) {
  SEQGAN_CHECK_HINT(!o.run_dir.empty(), "pass --out DIR", "no run directory given");
  return o.run_dir;
}

}  // namespace

void save_model_file(const std::string& path, const torch::nn::Module& model, CheckpointMeta meta, const Ema* ema,
                     safetensors::TensorMap tensors) {
  if (ema && ema->enabled()) {
    meta.extra["ema_decay"] = nlohmann::json(ema->decay()).dump();
    auto averaged = ema->state(model, "ema.");
    averaged.erase("ema.__updates");
    tensors.insert(averaged.begin(), averaged.end());
  }
  save_checkpoint(path, model, meta, tensors);
}

TrainingLoop::TrainingLoop(const RunOptions& options, std::string state_kind, const std::string& model_file,
                           Config& config)
    : resuming_(options.resume),
      stop_(options.stop),
      max_steps_(options.max_steps),
      on_metrics_(options.on_metrics),
      state_kind_(std::move(state_kind)),
      checkpoint_path_(options.run_dir + "/checkpoint.safetensors"),
      model_path_(options.run_dir + "/" + model_file),
      group_(options.group.get()),
      rank_(group_ ? group_->rank() : 0),
      world_(group_ ? group_->world_size() : 1),
      // The directory is locked first: no other process may write it while this one reads its state.
      run_(checked_run_dir(options), is_writer(options), RunDir::start_mode(options.resume, options.overwrite)),
      tracer_(options.trace_dir, is_writer(options)) {
  if (options.resume) {
    auto r = open_resume(checkpoint_path_, state_kind_, config, options.resume_overrides);
    resume_file_ = std::move(r.file);
    resume_meta_ = std::move(r.meta);
  }
}

void TrainingLoop::begin(const Config& config, const std::string& label, int64_t iterations) {
  if (resuming()) {
    state_ = TrainState::from_meta(resume_meta_, resume_file_.tensors);
    saved_at_ = state_.step;
  }
  resume_file_ = {};
  iterations_ = iterations;
  run_.begin(config, state_.step);
  progress_.emplace(label, iterations);
  window_start_ = std::chrono::steady_clock::now();
}

bool TrainingLoop::keep_going() {
  if (state_.step >= iterations_) return false;
  const bool signalled = any_rank(group_, stop_ && stop_());
  if (signalled || (max_steps_ >= 0 && done_here_ >= max_steps_)) {
    interrupted_ = true;
    stop_reason_ = signalled ? "interrupted" : "--max-steps reached";
    return false;
  }
  return true;
}

void TrainingLoop::step_taken(double loss) {
  ++state_.step;
  ++done_here_;
  ++window_steps_;
  std::ostringstream status;
  status << "loss " << std::setprecision(4) << loss;
  progress_->update(state_.step, status.str());
}

void TrainingLoop::finish() {
  if (!interrupted_ && progress_) progress_->finish();
}

bool TrainingLoop::row_due(int64_t every) const { return state_.step % every == 0 || state_.step == iterations_; }

std::map<std::string, double> TrainingLoop::take_row() {
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - window_start_).count();
  std::map<std::string, double> m;
  for (const auto& [k, v] : window_) m[k] = v / static_cast<double>(std::max<int64_t>(window_steps_, 1));
  if (group_) m = group_->average(m);  // every rank logs the same keys
  m["img_per_s"] = static_cast<double>(window_images_) / std::max(secs, 1e-9);
  window_.clear();
  window_steps_ = window_images_ = 0;
  window_start_ = std::chrono::steady_clock::now();
  return m;
}

void TrainingLoop::write_row(const std::string& series, const std::map<std::string, double>& values) {
  if (writer()) run_.metrics().write(series, state_.step, values);
  if (on_metrics_) on_metrics_({series, state_.step, iterations_, values});
}

void TrainingLoop::save(const std::string& why, const Config& config, const torch::nn::Module& model, const Ema& ema,
                        Save parts) {
  if (!writer() || state_.step == saved_at_) return;
  auto averaged = ema.state(model, "ema.");
  for (const auto& [k, v] : averaged) parts.state[k] = v;
  CheckpointMeta meta;
  meta.kind = state_kind_;
  meta.config_json = config_to_json(config, -1);
  meta.step = state_.step;
  meta.extra = std::move(parts.state_extra);
  check_finite_state(parts.state, state_.step, checkpoint_path_, parts.lr_key);
  state_.to_meta(meta, parts.state);
  safetensors::save(checkpoint_path_, parts.state, meta.to_metadata());

  CheckpointMeta model_meta;
  model_meta.kind = parts.model_kind;
  model_meta.config_json = meta.config_json;
  model_meta.step = state_.step;
  model_meta.extra = std::move(parts.model_extra);
  save_model_file(model_path_, model, std::move(model_meta), &ema);
  saved_at_ = state_.step;
  log_info(str("step ", state_.step, " | checkpoint written (", why, "): ", model_path_));
}

}  // namespace seqgan
