// Tokenizer training, both phases (SPEC sections 1-3).
//
// Phase 1: encoder, codebook and convolution-only decoder with L1 + VQ + entropy regulariser +
// perceptual loss (alpha) + adversarial loss. Phase 2: encoder and codebook frozen (eval mode, no
// gradients, not in the optimiser), B&D attention added to the decoder, decoder fine-tuned with
// the phase-2 alpha; the discriminator continues from phase 1.
//
// A run directory holds config.json, metrics.jsonl, tokenizer.safetensors (the model, kind
// "tokenizer"), checkpoint.safetensors (everything needed to resume exactly: model,
// discriminator, both optimisers, RNG state, data position) and samples/.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "seqgan/config.h"
#include "train/run.h"

namespace seqgan {

struct TokenizerTrainOptions {
  Config config;
  std::string run_dir;
  int phase = 1;
  std::string init;     // phase 2: the phase-1 tokenizer.safetensors
  bool resume = false;  // continue from run_dir/checkpoint.safetensors
  bool overwrite = false;  // a fresh run may replace the run run_dir holds (else: refused)
  // The command line's --set assignments, applied on resume where a resumed run may change them
  // (see open_resume); the rest of the configuration comes from the checkpoint.
  std::vector<std::string> resume_overrides;
  StopFlag stop;        // polled every step; true writes a checkpoint and returns
  int64_t max_steps = -1;  // stop (with a checkpoint) after this many steps of this call
  // Data-parallel training (see train/distributed.h): every rank calls train_tokenizer with the
  // same options and its own group; rank 0 alone writes. nullptr: one process.
  std::shared_ptr<class ProcessGroup> group;
};

struct TokenizerTrainResult {
  int64_t step = 0;          // steps done in total
  bool interrupted = false;  // stopped by `stop` or `max_steps` before the last iteration
  std::string tokenizer_path;
};

TokenizerTrainResult train_tokenizer(const TokenizerTrainOptions& options);

}  // namespace seqgan
