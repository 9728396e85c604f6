// Training from a program: the tokenizer's two phases and the AR/NAR transformers, each into a
// run directory exactly as `seqgan train-tokenizer` and `seqgan train-transformer` write it
// (config.json, metrics.jsonl, checkpoint.safetensors, the model file), resumable, with a
// callback for every metrics row and a stop flag polled every step. Errors are seqgan::Error.
//
//   #include <seqgan/train.h>
//
//   seqgan::Config config = seqgan::make_preset("fmnist");
//   seqgan::config_set(config, "train_tokenizer.iterations", "200");
//
//   std::atomic<bool> stop{false};           // set from another thread or a signal handler
//   seqgan::TokenizerTrainOptions phase1;
//   phase1.config = config;
//   phase1.run_dir = "runs/mine/tokenizer-phase1";
//   phase1.stop = [&] { return stop.load(); };
//   phase1.on_metrics = [](const seqgan::MetricsRow& row) {
//     if (row.series == "tokenizer_phase1") std::printf("step %lld: L1 %.4f\n", (long long)row.step, row.values.at("l1"));
//   };
//   const auto r1 = seqgan::train_tokenizer(phase1);   // r1.model_path: the phase-1 tokenizer
//
//   seqgan::TokenizerTrainOptions phase2 = phase1;
//   phase2.phase = 2;
//   phase2.init = r1.model_path;
//   phase2.run_dir = "runs/mine/tokenizer-phase2";
//   seqgan::train_tokenizer(phase2);
//
// A stopped run (the flag, or max_steps) writes its checkpoint and returns with `interrupted`;
// the same options with resume = true continue it exactly.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "seqgan/config.h"

namespace seqgan {

class ProcessGroup;

// Polled every step; true: write a checkpoint and return.
using StopFlag = std::function<bool()>;

// One row of a run's metrics.jsonl, as it is written: the series ("tokenizer_phase1",
// "tokenizer_phase2", "train", "val"), the step and the values averaged over the log window.
struct MetricsRow {
  std::string series;
  int64_t step = 0;
  int64_t total_steps = 0;  // the run's last step
  std::map<std::string, double> values;
};
using MetricsCallback = std::function<void(const MetricsRow&)>;

// What every training run takes besides its configuration.
struct RunOptions {
  Config config;
  std::string run_dir;
  bool resume = false;     // continue from run_dir/checkpoint.safetensors
  bool overwrite = false;  // a fresh run may replace the run run_dir holds (else: refused)
  // `--set`-style assignments ("train_tokenizer.lr=1e-4") applied on resume where a resumed run
  // may change them: the step budget, learning rate and schedule, logging and where the data
  // are read. Others (architecture, data, seed, batch size) are refused with an Error naming them;
  // the rest of the configuration comes from the checkpoint.
  std::vector<std::string> resume_overrides;
  StopFlag stop;
  int64_t max_steps = -1;  // stop (with a checkpoint) after this many steps of this call
  MetricsCallback on_metrics;
  // Non-empty: a record of every step in this directory (DIR/initial.safetensors, the weights
  // before the first step; DIR/step-NNNNNN.safetensors, each step's inputs, loss terms and
  // gradients), for checking the training against another implementation, e.g.
  // `python3 -m seqgan_torch.train_parity DIR`. Costs a file per step: for short runs.
  std::string trace_dir;
  // Data-parallel training: every rank calls with the same options and its own group; rank 0
  // alone writes. nullptr: one process (what a program embedding seqgan uses).
  std::shared_ptr<ProcessGroup> group;
};

struct TokenizerTrainOptions : RunOptions {
  int phase = 1;
  std::string init;  // phase 2: the phase-1 tokenizer.safetensors
};

struct TransformerTrainOptions : RunOptions {
  bool causal = true;      // AR (true) or NAR
  std::string tokens;      // training token file (`seqgan tokenize`)
  std::string val_tokens;  // held-out token file; empty: hold out train_*.val_fraction of `tokens`
};

struct TrainResult {
  int64_t step = 0;          // steps done in total
  bool interrupted = false;  // stopped by `stop` or `max_steps` before the last step
  std::string model_path;    // tokenizer.safetensors / transformer.safetensors of the run
  double val_loss = 0;       // transformers: the last validation loss
  double val_accuracy = 0;   // transformers: top-1 on the positions the loss covers
};
using TokenizerTrainResult = TrainResult;
using TransformerTrainResult = TrainResult;

// Phase 1: encoder, codebook and convolution-only decoder. Phase 2: the decoder fine-tuned with
// B&D attention from `init`, the encoder and codebook frozen (config.phase2).
TrainResult train_tokenizer(const TokenizerTrainOptions& options);

// The AR (causal) or NAR (MaskGIT) transformer on a token file (config.transformer, train_ar or
// train_nar).
TrainResult train_transformer(const TransformerTrainOptions& options);

}  // namespace seqgan
