#include "train/transformer_trainer.h"

#include <nlohmann/json.hpp>
#include <chrono>
#include <cmath>
#include <iomanip>
#include <sstream>

#include "core/autocast.h"
#include "seqgan/checkpoint.h"
#include "seqgan/error.h"
#include "seqgan/log.h"
#include "seqgan/runtime.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokens.h"
#include "train/distributed.h"
#include "train/optim.h"
#include "train/ema.h"
#include "train/state.h"
#include "transformer/sampling.h"
#include "transformer/transformer.h"

namespace seqgan {

namespace {

std::string fmt(double v) {
  std::ostringstream os;
  os << std::setprecision(4) << v;
  return os.str();
}

struct LossTerms {
  at::Tensor loss;    // mean cross-entropy over the covered positions
  at::Tensor logits;  // [M, K] of the covered positions
  at::Tensor targets; // [M]
};

// The training objective of either kind for codes [B, L] and class ids [B].
LossTerms objective(TransformerImpl& model, const at::Tensor& codes, const at::Tensor& labels, double smoothing,
                    c10::optional<at::Generator> gen) {
  const int64_t K = model.space().codebook_size, L = codes.size(1);
  LossTerms out;
  if (model.causal()) {
    out.logits = model.forward(labels, codes.narrow(1, 0, L - 1)).reshape({-1, K});
    out.targets = codes.reshape({-1});
  } else {
    const auto mask = nar_training_mask(codes, gen).to(codes.device());
    const auto input = at::where(mask, at::full_like(codes, model.space().mask_token()), codes);
    out.logits = model.forward(labels, input).masked_select(mask.unsqueeze(-1)).view({-1, K});
    out.targets = codes.masked_select(mask);
  }
  out.loss = at::cross_entropy_loss(out.logits.to(at::kFloat), out.targets, {}, at::Reduction::Mean, -100, smoothing);
  return out;
}

// Codes [N, L] and labels [N] of a token file, checked against the token space.
struct TokenSet {
  at::Tensor codes, labels;
};

TokenSet token_set(const TokenFile& f, const TokenSpace& space, const std::string& path) {
  SEQGAN_CHECK_HINT(f.codebook_size == space.codebook_size, "train and validate on tokens of one tokenizer", path,
                    " has codebook size ", f.codebook_size, ", expected ", space.codebook_size);
  SEQGAN_CHECK_HINT(f.indices.size(1) * f.indices.size(2) == space.length, "train and validate on tokens of one tokenizer",
                    path, " has ", f.indices.size(1) * f.indices.size(2), " tokens per image, expected ", space.length);
  TokenSet s{f.indices.reshape({f.indices.size(0), -1}).to(at::kLong), f.labels.to(at::kLong)};
  if (space.num_classes > 0 && s.labels.numel() > 0) {
    const int64_t lo = s.labels.min().item<int64_t>(), hi = s.labels.max().item<int64_t>();
    SEQGAN_CHECK_HINT(lo >= 0 && hi < space.num_classes,
                      "set transformer.num_classes to the data set's class count, or 0 for an unconditional model", path,
                      " has labels from ", lo, " to ", hi, " but transformer.num_classes is ", space.num_classes);
  }
  return s;
}

}  // namespace

at::Tensor nar_training_mask(const at::Tensor& tokens, c10::optional<at::Generator> gen) {
  const int64_t B = tokens.size(0), L = tokens.size(1);
  const auto opts = at::TensorOptions(at::kDouble);
  const auto r = gen ? at::rand({B}, *gen, opts) : at::rand({B}, opts);
  const auto n = at::floor(at::cos(r * (M_PI / 2.0)) * static_cast<double>(L)).clamp(1, L).to(at::kLong);
  const auto scores = gen ? at::rand({B, L}, *gen, opts) : at::rand({B, L}, opts);
  const auto rank = scores.argsort(1, false).argsort(1, false);  // each position's rank among its row's scores
  return rank < n.unsqueeze(1);
}

at::Tensor drop_classes(const at::Tensor& labels, double p, int64_t null_id, uint64_t seed, int64_t step,
                        int64_t global_batch, int64_t offset) {
  // One draw per sequence of the global batch from a generator of (seed, step): every rank
  // takes its share, and a resumed run draws what it would have drawn.
  auto gen = make_generator((seed + 1) * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(step));
  const auto u = at::rand({global_batch}, gen, at::TensorOptions(at::kDouble)).narrow(0, offset, labels.size(0));
  return at::where(u.lt(p).to(labels.device()), at::full_like(labels, null_id), labels);
}

TokenSetScore score_tokens(TransformerImpl& model, const at::Tensor& codes, const at::Tensor& labels,
                           int64_t batch_size, double label_smoothing, uint64_t seed) {
  torch::NoGradGuard ng;
  const bool was_training = model.is_training();
  model.eval();
  auto gen = make_generator(seed);
  const auto device = model.pos_emb.device();
  double loss_sum = 0, correct = 0, count = 0;
  for (int64_t start = 0; start < codes.size(0); start += batch_size) {
    const int64_t n = std::min(batch_size, codes.size(0) - start);
    const auto c = codes.narrow(0, start, n).to(device);
    const auto y = labels.defined() && labels.numel() ? labels.narrow(0, start, n).to(device) : at::Tensor();
    const auto t = objective(model, c, y, label_smoothing, gen);
    const double m = static_cast<double>(t.targets.size(0));
    loss_sum += t.loss.item<double>() * m;
    correct += (t.logits.argmax(1) == t.targets).sum().item<double>();
    count += m;
  }
  model.train(was_training);
  return {loss_sum / std::max(count, 1.0), correct / std::max(count, 1.0)};
}

TransformerTrainResult train_transformer(const TransformerTrainOptions& opt) {
  SEQGAN_CHECK_HINT(!opt.run_dir.empty(), "pass --out DIR", "no run directory given");
  const std::string ckpt_path = opt.run_dir + "/checkpoint.safetensors";
  const std::string model_path = opt.run_dir + "/transformer.safetensors";
  const std::string kind = transformer_kind(opt.causal);
  Config config = opt.config;
  const BlasThreads blas(at::get_num_threads());  // large products dominate here

  safetensors::File resume_file;
  CheckpointMeta resume_meta;
  // The directory is locked first: no other process may write it while this one reads its state.
  const bool writer = !opt.group || opt.group->rank() == 0;
  RunDir run(opt.run_dir, writer, RunDir::start_mode(opt.resume, opt.overwrite));
  if (opt.resume) {
    auto r = open_resume(ckpt_path, "transformer-train", config, opt.resume_overrides);
    resume_file = std::move(r.file);
    resume_meta = std::move(r.meta);
    SEQGAN_CHECK_HINT(resume_meta.extra["model_kind"] == kind, "resume with the --kind the run was started with", ckpt_path,
                      " trains a ", resume_meta.extra["model_kind"], ", not a ", kind);
  }
  const auto& tc = opt.causal ? config.train_ar : config.train_nar;
  const auto device = to_device(resolve_device(config.device));
  const bool autocast = device.is_cuda() && tc.autocast_bf16;
  torch::manual_seed(config.seed);

  // Data.
  SEQGAN_CHECK_HINT(!opt.tokens.empty(), "make one with `seqgan tokenize`", "no training token file given");
  const TokenFile train_file = load_tokens(opt.tokens);
  TokenSpace space;
  space.codebook_size = train_file.codebook_size;
  space.length = train_file.indices.size(1) * train_file.indices.size(2);
  if (!opt.resume && config.transformer.num_classes > 0) {
    // A class-conditional model takes its classes from the tokens it learns: the preset's count
    // (1000 for ImageNet) is only a default.
    const bool labeled = train_file.labels.numel() > 0 && train_file.labels.min().item<int64_t>() >= 0;
    const int64_t named = static_cast<int64_t>(train_file.class_names.size());
    if (!labeled) {
      log_info(str(opt.tokens, " holds unlabeled images: an unconditional model (transformer.num_classes 0)"));
      config.transformer.num_classes = 0;
    } else if (named > 0 && named != config.transformer.num_classes) {
      log_info(str("transformer.num_classes = ", named, ", the classes of ", opt.tokens, " (the configuration said ",
                   config.transformer.num_classes, ")"));
      config.transformer.num_classes = static_cast<int>(named);
    }
  }
  space.num_classes = config.transformer.num_classes;
  // Class dropout trains the null condition that classifier-free guidance samples against.
  space.null_class = space.num_classes > 0 && tc.class_dropout > 0;
  TokenSet train = token_set(train_file, space, opt.tokens);
  TokenSet val;
  if (!opt.val_tokens.empty()) {
    val = token_set(load_tokens(opt.val_tokens), space, opt.val_tokens);
  } else {
    // A fixed, seeded share of the training file, never trained on.
    const int64_t N = train.codes.size(0);
    const int64_t n_val = std::max<int64_t>(1, static_cast<int64_t>(std::llround(tc.val_fraction * static_cast<double>(N))));
    SEQGAN_CHECK_HINT(N - n_val >= tc.batch_size, "use more tokens or a smaller batch", "token file of ", N,
                      " images leaves too few for training after holding out ", n_val);
    auto g = make_generator(config.seed + 7919);
    const auto perm = at::randperm(N, g, at::TensorOptions(at::kLong));
    const auto vi = perm.narrow(0, N - n_val, n_val), ti = perm.narrow(0, 0, N - n_val);
    val = {train.codes.index_select(0, vi), train.labels.index_select(0, vi)};
    train = {train.codes.index_select(0, ti), train.labels.index_select(0, ti)};
  }
  const int64_t N = train.codes.size(0);
  const int64_t batches_per_epoch = N / tc.batch_size;
  SEQGAN_CHECK_HINT(batches_per_epoch > 0, "lower the batch size", "the token set (", N, " images) gives no full batch of ",
                    tc.batch_size);
  const bool conditional = space.num_classes > 0;
  ProcessGroup* const group = opt.group.get();
  const int rank = group ? group->rank() : 0, world = group ? group->world_size() : 1;
  SEQGAN_CHECK_HINT(tc.batch_size % world == 0, "choose a batch size divisible by the number of ranks",
                    "the global batch of ", tc.batch_size, " sequences does not split evenly over ", world, " ranks");
  const int64_t local_batch = tc.batch_size / world;

  // Model and optimiser.
  Transformer model(config.transformer, space, opt.causal);
  model->to(device);
  model->train();
  Adam optimizer({tc.lr, tc.beta1, tc.beta2, 1e-8, tc.weight_decay});
  for (const auto& p : model->named_parameters()) optimizer.add(p.key(), p.value(), decays(p.key()));

  TrainState st;
  if (opt.resume) {
    load_state_dict(*model, with_prefix(resume_file.tensors, "model."), {}, ckpt_path);
    optimizer.load_state(resume_file.tensors, "opt.", ckpt_path);
    st = TrainState::from_meta(resume_meta, resume_file.tensors);
  }

  if (group) {
    std::vector<at::Tensor> shared;
    for (const auto& p : model->parameters()) shared.push_back(p);
    group->broadcast(shared);
  }
  Ema ema(*model, tc.ema_decay);
  if (opt.resume) ema.load(resume_file.tensors, "ema.", ckpt_path);
  resume_file = {};

  run.begin(config, st.step);
  int64_t saved_at = opt.resume ? st.step : -1;  // a checkpoint of this step exists
  auto save = [&](const std::string& why) {
    if (!run.writer() || st.step == saved_at) return;
    safetensors::TensorMap t;
    for (const auto& [k, v] : state_dict(*model)) t["model." + k] = v;
    optimizer.save_state(t, "opt.");
    auto averaged = ema.state(*model, "ema.");
    for (const auto& [k, v] : averaged) t[k] = v;
    CheckpointMeta meta;
    meta.kind = "transformer-train";
    meta.config_json = config_to_json(config, -1);
    meta.step = st.step;
    meta.extra["model_kind"] = kind;
    token_space_to_extra(space, meta.extra);
    check_finite_state(t, st.step, ckpt_path, str(opt.causal ? "train_ar" : "train_nar", ".lr"));
    st.to_meta(meta, t);
    if (conditional && !train_file.class_names.empty())
      meta.extra["class_names"] = nlohmann::json(train_file.class_names).dump();
    safetensors::save(ckpt_path, t, meta.to_metadata());
    CheckpointMeta model_meta;
    model_meta.kind = kind;
    model_meta.config_json = meta.config_json;
    model_meta.step = st.step;
    token_space_to_extra(space, model_meta.extra);
    if (meta.extra.count("class_names")) model_meta.extra["class_names"] = meta.extra["class_names"];
    if (ema.enabled()) {
      model_meta.extra["ema_decay"] = nlohmann::json(ema.decay()).dump();
      averaged.erase("ema.__updates");
    }
    save_checkpoint(model_path, *model, model_meta, averaged);
    saved_at = st.step;
    log_info(str("step ", st.step, " | checkpoint written (", why, "): ", model_path));
  };

  TransformerTrainResult result;
  result.model_path = model_path;
  auto validate = [&]() {
    if (rank != 0) return;  // the others go on to the next step's collectives and wait there
    const auto s = score_tokens(*model, val.codes, conditional ? val.labels : at::Tensor(), tc.batch_size,
                                tc.label_smoothing, config.seed);
    result.val_loss = s.loss;
    result.val_accuracy = s.accuracy;
    log_info(str("step ", st.step, " | val loss ", fmt(s.loss), " | val top-1 ", fmt(100 * s.accuracy), "% (",
                 val.codes.size(0), " images)"));
    if (run.writer()) run.metrics().write("val", st.step, {{"loss", s.loss}, {"accuracy", s.accuracy}});
  };

  log_info(str("train-transformer ", opt.causal ? "AR" : "NAR", " | ", count_parameters(*model), " parameters | ",
               N, " training / ", val.codes.size(0), " validation images of ", space.length, " tokens (K = ",
               space.codebook_size, ", ", conditional ? std::to_string(space.num_classes) + " classes" : "unconditional",
               ") | batch ", tc.batch_size, " | ", tc.iterations, " steps | ", device.str(), " | ", machine_summary()));
  if (opt.resume) log_info(str("resuming at step ", st.step, " (epoch ", st.epoch, ", batch ", st.position, ")"));

  Progress progress(opt.causal ? "AR" : "NAR", tc.iterations);
  std::map<std::string, double> window;
  int64_t window_steps = 0, done_here = 0;
  auto window_start = std::chrono::steady_clock::now();
  at::Tensor perm;
  int64_t perm_epoch = -1;
  std::string stop_reason = "final";
  while (st.step < tc.iterations) {
    const bool signalled = any_rank(group, opt.stop && opt.stop());
    if (signalled || (opt.max_steps >= 0 && done_here >= opt.max_steps)) {
      result.interrupted = true;
      stop_reason = signalled ? "interrupted" : "--max-steps reached";
      break;
    }
    if (st.position >= batches_per_epoch) {
      ++st.epoch;
      st.position = 0;
    }
    if (perm_epoch != st.epoch) {
      auto g = make_generator(config.seed * 1000003ULL + static_cast<uint64_t>(st.epoch));
      perm = at::randperm(N, g, at::TensorOptions(at::kLong));
      perm_epoch = st.epoch;
    }
    const auto idx = perm.narrow(0, st.position * tc.batch_size + rank * local_batch, local_batch);
    ++st.position;
    const auto codes = train.codes.index_select(0, idx).to(device);
    auto labels = conditional ? train.labels.index_select(0, idx).to(device) : at::Tensor();
    if (space.null_class) labels = drop_classes(labels, tc.class_dropout, space.null_class_id(), config.seed, st.step,
                                                tc.batch_size, rank * local_batch);

    const double lr = schedule_lr(tc.lr_schedule, st.step, tc.iterations, tc.lr, tc.lr_end, tc.warmup, tc.decay_start);
    optimizer.set_lr(lr);
    LossTerms terms;
    {
      AutocastGuard ac(autocast);
      terms = objective(*model, codes, labels, tc.label_smoothing, c10::nullopt);
    }
    double loss_value = terms.loss.item<double>();
    // The mean over the ranks, as one process with the whole batch would log it (NaN on any rank: all skip).
    loss_value = global_loss(group, loss_value);
    if (st.skip_nonfinite(loss_value, tc.max_nonfinite)) {
      optimizer.zero_grad();
      continue;
    }
    optimizer.zero_grad();
    terms.loss.backward();
    if (group) group->average_gradients(optimizer.params());
    optimizer.step();
    ema.update();
    ++st.step;
    ++done_here;

    window["loss"] += loss_value;
    window["accuracy"] += (terms.logits.argmax(1) == terms.targets).to(at::kDouble).mean().item<double>();
    ++window_steps;
    progress.update(st.step, str("loss ", fmt(loss_value)));
    if (st.step % tc.log_every == 0 || st.step == tc.iterations) {
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - window_start).count();
      std::map<std::string, double> m;
      for (const auto& [k, v] : window) m[k] = v / static_cast<double>(window_steps);
      if (group) m = group->average(m);
      m["lr"] = lr;
      m["img_per_s"] = static_cast<double>(window_steps * tc.batch_size) / std::max(secs, 1e-9);
      log_info(str("step ", st.step, " | loss ", fmt(m["loss"]), " | top-1 ", fmt(100 * m["accuracy"]), "% | lr ",
                   fmt(lr), " | ", fmt(m["img_per_s"]), " img/s"));
      if (run.writer()) run.metrics().write("train", st.step, m);
      window.clear();
      window_steps = 0;
      window_start = std::chrono::steady_clock::now();
    }
    if (st.step % tc.val_every == 0 && st.step < tc.iterations) validate();
    if (st.step % tc.checkpoint_every == 0 && st.step < tc.iterations) save("periodic");
  }
  if (!result.interrupted) {
    progress.finish();
    validate();
    if (group) {
      // Rank 0 validated; every rank reports its figures.
      std::vector<at::Tensor> v{at::tensor({result.val_loss, result.val_accuracy}, at::kDouble)};
      group->broadcast(v);
      result.val_loss = v[0][0].item<double>();
      result.val_accuracy = v[0][1].item<double>();
    }
  }
  save(stop_reason);
  result.step = st.step;
  return result;
}

}  // namespace seqgan
