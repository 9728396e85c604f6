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

#include "seqgan/train.h"  // TokenizerTrainOptions, train_tokenizer
