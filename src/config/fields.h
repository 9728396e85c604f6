// The option registry: every configuration field, named once, with its help and allowed values.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "seqgan/config.h"

namespace seqgan::config_detail {

struct Rule {
  bool has_range = false;
  double lo = 0, hi = 0;
  std::vector<std::string> choices;
  std::string describe() const;
};

inline Rule range(double lo, double hi) {
  Rule r;
  r.has_range = true;
  r.lo = lo;
  r.hi = hi;
  return r;
}
inline Rule one_of(std::vector<std::string> choices) {
  Rule r;
  r.choices = std::move(choices);
  return r;
}

// The rules most fields share.
struct CommonRules {
  Rule none;
  Rule positive = range(1, 1e12);
  Rule nonneg = range(0, 1e12);
  Rule unit = range(0, 1);
  Rule lr = range(0, 1);
  Rule beta = range(0, 0.999999);
};

// The keys of one tokenizer phase's training settings (TokenizerTrainConfig) under `prefix`:
// phase 1's train_tokenizer.* and phase 2's phase2.* are the same list.
template <class T, class V>
void tokenizer_training_fields(V& v, const std::string& prefix, T& t) {
  const CommonRules rules;
  const auto& [none, positive, nonneg, unit, lr, beta] = rules;
  (void)unit;
  v(prefix + "batch_size", t.batch_size, "images per step (all ranks)", positive);
  v(prefix + "iterations", t.iterations, "training steps", positive);
  v(prefix + "lr", t.lr, "peak learning rate", lr);
  v(prefix + "lr_end", t.lr_end, "final learning rate", lr);
  v(prefix + "lr_schedule", t.lr_schedule, "learning-rate schedule", one_of({"constant", "cosine", "linear"}));
  v(prefix + "warmup", t.warmup, "linear warm-up steps", nonneg);
  v(prefix + "beta1", t.beta1, "Adam beta1", beta);
  v(prefix + "beta2", t.beta2, "Adam beta2", beta);
  v(prefix + "d_lr", t.d_lr, "discriminator learning rate", lr);
  v(prefix + "l1_weight", t.l1_weight, "weight of |x - x^|_1", range(0, 1e6));
  v(prefix + "log_every", t.log_every, "steps between log lines", positive);
  v(prefix + "image_every", t.image_every, "steps between reconstruction grids", positive);
  v(prefix + "checkpoint_every", t.checkpoint_every, "steps between checkpoints", positive);
  v(prefix + "max_nonfinite", t.max_nonfinite, "stop after this many non-finite losses in a row", positive);
  v(prefix + "autocast_bf16", t.autocast_bf16, "bf16 autocast (CUDA only)", none);
  v(prefix + "ema_decay", t.ema_decay, "exponential moving average of the weights (0: off; kept beside the raw weights)", range(0, 0.999999));
}

// Calls v(path, field, help, rule) for every field of `c`, in the order the help prints them.
template <class C, class V>
void visit_fields(C& c, V&& v) {
  const CommonRules rules;
  const auto& [none, positive, nonneg, unit, lr, beta] = rules;
  v("preset", c.preset, "the preset this configuration started from", none);
  v("seed", c.seed, "random seed of initialisation, data order and sampling", none);
  v("threads", c.threads, "CPU threads for tensor math (0: all cores)", range(0, 4096));
  v("device", c.device, "where to compute", one_of({"auto", "cpu", "cuda"}));

  auto& d = c.data;
  v("data.dataset", d.dataset, "data source kind", one_of({"fashion-mnist", "idx", "image-folder", "lmdb", "shards"}));
  v("data.root", d.root, "training data: IDX folder, image folder (class sub-folders or loose), LMDB environment, or folder of tar shards", none);
  v("data.val_root", d.val_root, "held-out data of the same kind (image-folder, lmdb, shards; empty: none)", none);
  v("data.val_labels", d.val_labels,
    "image-folder: the classes of a val_root that holds its images directly, as ImageNet's validation set does: "
    "a file of lines 'IMAGE CLASS' or 'IMAGE,CLASS ...' (LOC_val_solution.csv)", none);
  v("data.class_name", d.class_name, "lmdb: one class name for every image (empty: unlabeled)", none);
  v("data.preprocess", d.preprocess, "resize: torchvision Resize + crop; adm: guided-diffusion's center_crop_arr (evaluation and ImageNet references)", one_of({"resize", "adm"}));
  v("data.resize_filter", d.resize_filter, "PIL filter of the resize (torchvision's Resize default: bilinear)", one_of({"box", "bilinear", "bicubic", "lanczos"}));
  v("data.channels", d.channels, "image channels the models see", one_of({"1", "3"}));
  v("data.resolution", d.resolution, "training and evaluation resolution (square)", range(8, 4096));
  v("data.pad", d.pad, "constant padding added before resizing (28x28 MNIST -> 32x32: 2)", range(0, 1024));
  v("data.random_crop", d.random_crop, "random crop for training (centre crop otherwise)", none);
  v("data.hflip", d.hflip, "random horizontal flips for training", none);
  v("data.num_workers", d.num_workers, "loader threads", range(0, 256));
  v("data.prefetch", d.prefetch, "batches prepared ahead", range(1, 1024));
  v("data.skip_bad_files", d.skip_bad_files, "skip unreadable images (counted) instead of failing", none);

  auto& t = c.tokenizer;
  v("tokenizer.base_channels", t.base_channels, "width of the first level", range(1, 4096));
  v("tokenizer.channel_mult", t.channel_mult, "width multiplier per level; f = 2^(levels-1)", none);
  v("tokenizer.num_res_blocks", t.num_res_blocks, "residual blocks per level", range(1, 64));
  v("tokenizer.mid_res_blocks", t.mid_res_blocks, "extra blocks at the lowest resolution", range(0, 64));
  v("tokenizer.code_dim", t.code_dim, "dimension of the codes (n_z)", range(1, 65536));
  v("tokenizer.codebook_size", t.codebook_size, "number of codes K", range(2, 1 << 20));
  v("tokenizer.norm_groups", t.norm_groups, "GroupNorm groups", range(1, 4096));
  v("tokenizer.norm_eps", t.norm_eps, "GroupNorm epsilon", range(0, 1));
  v("tokenizer.maskgit_skip", t.maskgit_skip, "1x1 skip on the block output (MaskGIT) instead of the input", none);
  v("tokenizer.decoder_extra_res_blocks", t.decoder_extra_res_blocks, "extra residual blocks per decoder level (Table 1 +Conv x2: 2)", range(0, 64));
  v("tokenizer.decoder_attn_pairs", t.decoder_attn_pairs, "B&D attention pairs per decoder level (phase 2: 1; +Attention x2: 2)", range(0, 64));
  v("tokenizer.attn_window", t.attn_window, "B&D attention window b", range(1, 1024));
  v("tokenizer.attn_heads", t.attn_heads, "B&D attention heads", range(1, 1024));
  v("tokenizer.input_range", t.input_range,
    "image range the encoder's weights expect: minus1_1 (seqgan's) or 0_1 ((x + 1) / 2 first: MaskGIT's tokenizer)",
    one_of({"minus1_1", "0_1"}));

  auto& q = c.quantizer;
  v("quantizer.beta", q.beta, "commitment weight on the encoder term", range(0, 100));
  v("quantizer.entropy_gamma", q.entropy_gamma, "weight of the entropy of the mean soft usage", range(0, 100));
  v("quantizer.entropy_tau", q.entropy_tau, "softmax temperature of the soft usage", range(1e-6, 1e6));
  v("quantizer.entropy_sign", q.entropy_sign, "sign of the entropy term in the loss (-1 raises usage)", one_of({"-1", "1"}));
  v("quantizer.per_sample_entropy_gamma", q.per_sample_entropy_gamma, "weight of the mean per-position entropy (sharpens assignments)", range(0, 100));
  v("quantizer.init_range", q.init_range, "codes start uniform in [-r, r] (0: r = 1/K)", range(0, 1e3));
  v("quantizer.kind", q.kind, "nearest code, or factorised L2-normalised codes (ViT-VQGAN)", one_of({"nearest", "factorized"}));
  v("quantizer.factor_dim", q.factor_dim, "factorized: dimension of the lookup space", range(1, 65536));
  v("quantizer.kmeans_every", q.kmeans_every, "re-estimate the codes by k-means every N phase-1 steps (0: never)", nonneg);
  v("quantizer.kmeans_until", q.kmeans_until, "last step of the k-means re-estimation (0: the end)", nonneg);
  v("quantizer.kmeans_iters", q.kmeans_iters, "Lloyd iterations per re-estimation", range(1, 1000));

  auto& p = c.perceptual;
  v("perceptual.network", p.network, "loss network: torchvision VGG16 or a classifier from train-classifier", one_of({"vgg16", "classifier"}));
  v("perceptual.weights", p.weights, "safetensors weights of the loss network (required)", none);
  v("perceptual.alpha", p.alpha, "semantic ratio: alpha L_sem + (1 - alpha) L_low", unit);
  v("perceptual.weight", p.weight, "weight of the perceptual loss", range(0, 1e6));
  v("perceptual.lpips_normalize", p.lpips_normalize, "unit-normalise channels of the low-level taps (LPIPS style)", none);
  v("perceptual.low_taps", p.low_taps, "taps of L_low", none);
  v("perceptual.sem_taps", p.sem_taps, "taps of L_sem", none);

  auto& g = c.discriminator;
  v("discriminator.base_channels", g.base_channels, "width at full resolution", range(1, 4096));
  v("discriminator.max_channels", g.max_channels, "width cap", range(1, 8192));
  v("discriminator.mbstd_group", g.mbstd_group, "minibatch standard deviation group size", range(1, 1024));
  v("discriminator.r1_gamma", g.r1_gamma, "R1 penalty weight", range(0, 1e6));
  v("discriminator.r1_interval", g.r1_interval, "lazy R1: every N discriminator steps", range(1, 1e6));
  v("discriminator.adv_weight", g.adv_weight, "generator adversarial weight", range(0, 1e6));
  v("discriminator.start_iter", g.start_iter, "phase-1 iteration the GAN loss starts (phase 2 uses it from its first step)", nonneg);
  v("discriminator.adaptive_weight", g.adaptive_weight, "VQGAN adaptive weight instead of the fixed one", none);

  tokenizer_training_fields(v, "train_tokenizer.", c.train_tokenizer);
  v("phase2.alpha", c.phase2.alpha, "semantic ratio of the phase-2 perceptual loss", unit);
  v("phase2.attn_pairs", c.phase2.attn_pairs, "B&D attention pairs added per decoder level", range(0, 64));
  v("phase2.fresh_discriminator", c.phase2.fresh_discriminator, "start the discriminator afresh", none);
  tokenizer_training_fields(v, "phase2.", c.phase2.train);

  auto& tr = c.transformer;
  v("transformer.layers", tr.layers, "transformer blocks", range(1, 1024));
  v("transformer.width", tr.width, "model width", range(1, 65536));
  v("transformer.heads", tr.heads, "attention heads", range(1, 1024));
  v("transformer.mlp", tr.mlp, "hidden width of the MLP", range(1, 1 << 20));
  v("transformer.dropout", tr.dropout, "dropout", range(0, 0.99));
  v("transformer.num_classes", tr.num_classes, "class tokens (0: unconditional)", range(0, 1 << 20));

  for (auto* which : {"train_ar", "train_nar"}) {
    auto& x = std::string(which) == "train_ar" ? c.train_ar : c.train_nar;
    const std::string s = which;
    v(s + ".batch_size", x.batch_size, "sequences per step (all ranks)", positive);
    v(s + ".iterations", x.iterations, "training steps", positive);
    v(s + ".lr", x.lr, "peak learning rate", lr);
    v(s + ".lr_end", x.lr_end, "final learning rate", lr);
    v(s + ".lr_schedule", x.lr_schedule, "learning-rate schedule", one_of({"constant", "cosine", "linear", "exponential"}));
    v(s + ".warmup", x.warmup, "linear warm-up steps", nonneg);
    v(s + ".decay_start", x.decay_start, "step the decay starts (linear, exponential)", nonneg);
    v(s + ".beta1", x.beta1, "AdamW beta1", beta);
    v(s + ".beta2", x.beta2, "AdamW beta2", beta);
    v(s + ".weight_decay", x.weight_decay, "AdamW weight decay (weight matrices only)", range(0, 10));
    v(s + ".label_smoothing", x.label_smoothing, "label smoothing of the cross-entropy", range(0, 0.99));
    v(s + ".val_fraction", x.val_fraction, "fraction of token sequences held out for validation", range(0, 0.5));
    v(s + ".log_every", x.log_every, "steps between log lines", positive);
    v(s + ".val_every", x.val_every, "steps between validation losses", positive);
    v(s + ".checkpoint_every", x.checkpoint_every, "steps between checkpoints", positive);
    v(s + ".max_nonfinite", x.max_nonfinite, "stop after this many non-finite losses in a row", positive);
    v(s + ".autocast_bf16", x.autocast_bf16, "bf16 autocast (CUDA only)", none);
    v(s + ".class_dropout", x.class_dropout, "class-conditional: share of sequences trained with the null condition (classifier-free guidance needs it)", range(0, 1));
    v(s + ".ema_decay", x.ema_decay, "exponential moving average of the weights (0: off; kept beside the raw weights)", range(0, 0.999999));
  }
  auto& sm = c.sample;
  v("sample.temperature", sm.temperature, "AR: logits are divided by this", range(1e-6, 1e6));
  v("sample.top_k", sm.top_k, "AR: sample among the k most likely codes (0: all)", nonneg);
  v("sample.top_p", sm.top_p, "AR: sample among the fewest codes holding this much probability (1: all)", range(1e-6, 1));
  v("sample.steps", sm.steps, "NAR: refinement steps", range(1, 4096));
  v("sample.sample_temperature", sm.sample_temperature, "NAR: temperature of token sampling", range(1e-6, 1e6));
  v("sample.choice_temperature", sm.choice_temperature, "NAR: Gumbel temperature of the choice of kept tokens (annealed to 0)", range(0, 1e6));
  v("sample.guidance", sm.guidance, "classifier-free guidance scale s: logits u + s (c - u) (1: plain conditional; 0: the null condition)", range(0, 1e3));
  v("sample.guidance_schedule", sm.guidance_schedule, "guidance over the steps: constant s; linear ramp 1 -> s; cosine: power-cosine ramp 1 -> s", one_of({"constant", "linear", "cosine"}));
  v("sample.guidance_power", sm.guidance_power, "cosine schedule: the ramp is 1 + (s - 1) (1 - cos(pi r^power)) / 2 at progress r", range(1e-3, 100));
  v("sample.accept_fraction", sm.accept_fraction, "rejection sampling: draw count / fraction images per class, keep the count the classifier scores best (1: off)", range(1e-3, 1));
  v("sample.accept_threshold", sm.accept_threshold, "rejection sampling: keep images whose classifier probability of their class is at least this (0: off)", range(0, 1));
  v("sample.max_draws", sm.max_draws, "rejection by threshold: draw at most this many times the count per class", range(1, 1000));

  auto& e = c.eval;
  v("eval.feature_network", e.feature_network, "network of FID/IS features", one_of({"inception", "classifier"}));
  v("eval.feature_weights", e.feature_weights, "safetensors weights of the feature network", none);
  v("eval.batch_size", e.batch_size, "images per forward pass", positive);
  v("eval.num_samples", e.num_samples, "samples for generation metrics", positive);
  v("eval.is_splits", e.is_splits, "Inception Score splits", range(1, 1000));
  v("eval.inception_resize", e.inception_resize,
    "how InceptionV3 inputs reach 299x299: pytorch-fid (torch bilinear) or adm (TF1 bilinear, as ADM's evaluator)",
    one_of({"pytorch-fid", "adm"}));
  v("eval.lpips_weights", e.lpips_weights, "LPIPS weights from tools/convert_lpips.py (evaluate lpips|tokenizer)", none);
}

}  // namespace seqgan::config_detail

