// Training of the AR and NAR transformers on a token file (SPEC section 4).
//
// AR: teacher forcing, cross-entropy on every position. Class-conditional models trained with
// class dropout see the null condition for that share of the sequences (classifier-free guidance). NAR: a cos(pi r / 2) share of the tokens
// (at least one) replaced by the mask token, cross-entropy with label smoothing on those only.
// AdamW with decay on weight matrices only; warm-up then the configured decay.
//
// A run directory holds config.json, metrics.jsonl (kinds "train" and "val"),
// transformer.safetensors (kind "transformer-ar" / "transformer-nar", with the token space) and
// checkpoint.safetensors (model, optimiser, RNG, data position: the run resumes exactly).
//
// Data-parallel: every rank takes its contiguous share of each global batch; AR training is then
// the same as one process with the whole batch (within float rounding). NAR masks and dropout
// draw from each rank's own generator, so they match one process in distribution only.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>
#include <c10/util/Optional.h>

#include "seqgan/config.h"
#include "seqgan/train.h"  // TransformerTrainOptions, train_transformer

namespace seqgan {

// NAR training input: for tokens [B, L], the positions to mask [B, L] bool, cos(pi r / 2) of
// them per row (r uniform in [0, 1), at least one), drawn from `gen` or the default generator.
at::Tensor nar_training_mask(const at::Tensor& tokens, c10::optional<at::Generator> gen = c10::nullopt);

// Class dropout: labels [b] with each replaced by `null_id` with probability p. The draws are
// those of sequences offset .. offset + b - 1 of a global batch of `global_batch` at `step`,
// from a generator seeded by (seed, step).
at::Tensor drop_classes(const at::Tensor& labels, double p, int64_t null_id, uint64_t seed, int64_t step,
                        int64_t global_batch, int64_t offset);

// Mean loss and top-1 accuracy of a transformer on a token set, deterministic (NAR masks from a
// generator seeded with `seed`).
struct TokenSetScore {
  double loss = 0, accuracy = 0;
};
class TransformerImpl;
TokenSetScore score_tokens(TransformerImpl& model, const at::Tensor& indices, const at::Tensor& labels,
                           int64_t batch_size, double label_smoothing, uint64_t seed);

}  // namespace seqgan
