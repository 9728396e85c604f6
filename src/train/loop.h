// The frame the tokenizer and transformer trainers run in, so that each trainer reads as its own
// steps: the locked run directory, the resume point, the stop rule, the log window that becomes
// metrics rows, and the pair of files a save writes (the training state and the model).
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "seqgan/checkpoint.h"
#include "seqgan/log.h"
#include "seqgan/safetensors.h"
#include "seqgan/train.h"
#include "train/run.h"
#include "train/state.h"
#include "train/trace.h"

namespace torch::nn {
class Module;
}

namespace seqgan {

class Ema;

// The model file of a run as the trainers write it: the module's weights and `meta` (kind,
// configuration, step, extra) and, where `ema` averages, the average under "ema." with its decay
// in the metadata; `tensors` are stored beside them. Atomic.
void save_model_file(const std::string& path, const torch::nn::Module& model, CheckpointMeta meta, const Ema* ema,
                     safetensors::TensorMap tensors = {});

class TrainingLoop {
 public:
  // Locks the run directory (refusing a fresh start over a run unless told to overwrite); on
  // resume opens its checkpoint, which must be of `state_kind`, and replaces `config` by the
  // run's own with the allowed overrides. `model_file` is the model's name in the directory.
  TrainingLoop(const RunOptions& options, std::string state_kind, const std::string& model_file, Config& config);

  ProcessGroup* group() const { return group_; }
  int rank() const { return rank_; }
  int world() const { return world_; }
  bool writer() const { return run_.writer(); }
  RunDir& dir() { return run_; }
  // The step trace (RunOptions::trace_dir; off without one).
  StepTracer& tracer() { return tracer_; }
  const std::string& checkpoint_path() const { return checkpoint_path_; }
  const std::string& model_path() const { return model_path_; }

  bool resuming() const { return resuming_; }
  // The checkpoint's tensors and metadata (resuming only, until begin()).
  const safetensors::TensorMap& resume_tensors() const { return resume_file_.tensors; }
  CheckpointMeta& resume_meta() { return resume_meta_; }
  TrainState& state() { return state_; }

  // Reads the counters and RNG state of the checkpoint (resuming), forgets its tensors, writes
  // config.json, opens metrics.jsonl, and starts the progress line `label` of `iterations` steps.
  void begin(const Config& config, const std::string& label, int64_t iterations);

  // Whether to take another step: false once `iterations` steps are done, or (interrupted) when
  // the stop flag is raised on any rank or this call has taken max_steps steps.
  bool keep_going();
  // After an optimiser step: counts it and shows `loss` on the progress line.
  void step_taken(double loss);
  bool interrupted() const { return interrupted_; }
  // What the last save is for: "final", "interrupted" or "--max-steps reached".
  const std::string& stop_reason() const { return stop_reason_; }
  void finish();  // the progress line, when the run ran to its end

  // The log window: per-step values summed, then averaged (over the steps and the ranks) into
  // one metrics row.
  void add(const std::string& key, double value) { window_[key] += value; }
  void count_images(int64_t n) { window_images_ += n; }
  // Whether this step ends a window (every `every` steps, and the last step).
  bool row_due(int64_t every) const;
  // The window's averages, with img_per_s; empties the window.
  std::map<std::string, double> take_row();
  // Writes the row to metrics.jsonl (the writer alone) and hands it to the caller's callback.
  void write_row(const std::string& series, const std::map<std::string, double>& values);

  // What a save writes besides the loop's own part (kind, configuration, step, counters).
  struct Save {
    safetensors::TensorMap state;                       // the training state's tensors
    std::map<std::string, std::string> state_extra;     // its metadata
    std::string model_kind;                             // the model file's kind
    std::map<std::string, std::string> model_extra;     // its metadata
    std::string lr_key;                                 // the learning-rate setting, for the hint on NaN
  };
  // Writes checkpoint.safetensors and the model file (with the average where `ema` has one),
  // atomically, once per step (the writer alone); `why` goes into the log line.
  void save(const std::string& why, const Config& config, const torch::nn::Module& model, const Ema& ema, Save parts);

 private:
  // What the loop keeps of the caller's options.
  bool resuming_;
  StopFlag stop_;
  int64_t max_steps_;
  MetricsCallback on_metrics_;
  std::string state_kind_;
  std::string checkpoint_path_, model_path_;
  ProcessGroup* group_;
  int rank_, world_;
  RunDir run_;
  StepTracer tracer_;
  safetensors::File resume_file_;
  CheckpointMeta resume_meta_;
  TrainState state_;
  int64_t iterations_ = 0;
  int64_t done_here_ = 0;
  int64_t saved_at_ = -1;  // a checkpoint of this step exists
  bool interrupted_ = false;
  std::string stop_reason_ = "final";
  std::optional<Progress> progress_;
  std::map<std::string, double> window_;
  int64_t window_steps_ = 0, window_images_ = 0;
  std::chrono::steady_clock::time_point window_start_;
};

}  // namespace seqgan
