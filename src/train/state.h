// Counters and random state a training loop needs to resume exactly.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "seqgan/checkpoint.h"
#include "seqgan/config.h"
#include "seqgan/safetensors.h"

namespace seqgan {

struct TrainState {
  int64_t step = 0;       // optimiser steps done
  int64_t epoch = 0;      // data epoch in progress
  int64_t position = 0;   // batches of that epoch already consumed
  int64_t d_steps = 0;    // discriminator steps (lazy R1 cadence)
  int64_t nonfinite_in_row = 0;

  // Call with every step's loss: a non-finite one is counted and warned about (true: skip the
  // step), and throws once `max_in_row` come in a row; a finite one resets the count (false).
  bool skip_nonfinite(double loss, int64_t max_in_row);

  // Counters go into the metadata, the RNG states (CPU, and CUDA when present) into tensors.
  void to_meta(CheckpointMeta& meta, safetensors::TensorMap& tensors) const;
  // Reads the counters and restores the RNG states.
  static TrainState from_meta(const CheckpointMeta& meta, const safetensors::TensorMap& tensors);
};

// A run's training checkpoint opened for --resume: the file and its metadata. Checks that it
// exists and has `kind`; replaces `config` by the run's own configuration (it fixed what is
// trained), keeping only where to run (threads, device) from the caller's, then applies the
// command line's `overrides` ("key=value", as --set; a key set twice takes its last value) that a
// resumed run may change: the training schedule (train_tokenizer.*, phase2.*, train_ar.*,
// train_nar.*: the step budget, learning rate and schedule, logging and checkpoints; batch sizes,
// class dropout, EMA decay and phase 2's alpha, attention and discriminator excepted) and where
// the data are read from (data.root, data.val_root, data.num_workers, data.prefetch,
// data.skip_bad_files). Any other override is refused, naming the key.
struct ResumePoint {
  safetensors::File file;
  CheckpointMeta meta;
};
ResumePoint open_resume(const std::string& checkpoint_path, const std::string& kind, Config& config,
                        const std::vector<std::string>& overrides = {});

// Whether a resumed run may take `--set key=...` (see open_resume).
bool resumable_override(const std::string& key);

// The tensors whose names start with `prefix`, with the prefix removed.
safetensors::TensorMap with_prefix(const safetensors::TensorMap& tensors, const std::string& prefix);

}  // namespace seqgan
