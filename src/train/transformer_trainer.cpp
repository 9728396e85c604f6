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
#include "train/loop.h"
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
  at::Tensor mask;    // NAR: [B, L], the masked positions
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
    out.mask = nar_training_mask(codes, gen).to(codes.device());
    const auto input = at::where(out.mask, at::full_like(codes, model.space().mask_token()), codes);
    out.logits = model.forward(labels, input).masked_select(out.mask.unsqueeze(-1)).view({-1, K});
    out.targets = codes.masked_select(out.mask);
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

namespace {

class TransformerTrainer {
 public:
  explicit TransformerTrainer(const TransformerTrainOptions& opt);
  TrainResult run();

 private:
  void load_token_sets();
  void restore_or_share();
  // The codes [b, L] and class ids [b] of this rank's share of the step's batch.
  std::pair<at::Tensor, at::Tensor> next_batch();
  void log_step(const LossTerms& terms, double loss, double lr);
  void trace_initial();
  void trace_step(const at::Tensor& codes, const at::Tensor& labels, const LossTerms& terms, double loss, double lr);
  void validate();
  void save(const std::string& why);

  const TransformerTrainOptions& opt_;
  Config config_;
  TrainingLoop loop_;
  const std::string kind_;
  TransformerTrainConfig tc_;
  torch::Device device_{torch::kCPU};
  bool autocast_ = false;
  TokenFile train_file_;
  TokenSpace space_;
  TokenSet train_, val_;
  int64_t local_batch_ = 0, batches_per_epoch_ = 0;
  Transformer model_{nullptr};
  std::unique_ptr<Adam> optimizer_;
  Ema ema_;
  at::Tensor perm_;  // the epoch's order
  int64_t perm_epoch_ = -1;
  TrainResult result_;
};

TransformerTrainer::TransformerTrainer(const TransformerTrainOptions& opt)
    : opt_(opt),
      config_(opt.config),
      loop_(opt, "transformer-train", "transformer.safetensors", config_),
      kind_(transformer_kind(opt.causal)) {
  if (loop_.resuming())
    SEQGAN_CHECK_HINT(loop_.resume_meta().extra["model_kind"] == kind_, "resume with the --kind the run was started with",
                      loop_.checkpoint_path(), " trains a ", loop_.resume_meta().extra["model_kind"], ", not a ", kind_);
  tc_ = opt.causal ? config_.train_ar : config_.train_nar;
  device_ = to_device(resolve_device(config_.device));
  autocast_ = device_.is_cuda() && tc_.autocast_bf16;
  torch::manual_seed(config_.seed);
  load_token_sets();

  model_ = Transformer(config_.transformer, space_, opt.causal);
  model_->to(device_);
  model_->train();
  optimizer_ = std::make_unique<Adam>(AdamOptions{tc_.lr, tc_.beta1, tc_.beta2, 1e-8, tc_.weight_decay});
  for (const auto& p : model_->named_parameters()) optimizer_->add(p.key(), p.value(), decays(p.key()));
  restore_or_share();
  loop_.begin(config_, opt.causal ? "AR" : "NAR", tc_.iterations);
  result_.model_path = loop_.model_path();
  trace_initial();
}

// The step trace's start: the weights before the first step, the configuration, the token space
// and the optimiser's parameters with their weight decay.
void TransformerTrainer::trace_initial() {
  StepTracer& trace = loop_.tracer();
  if (!trace.on()) return;
  safetensors::TensorMap weights;
  for (const auto& [k, v] : state_dict(*model_)) weights["model." + k] = v;
  nlohmann::json trained = nlohmann::json::array();
  for (const auto& [name, p] : optimizer_->named_params()) trained.push_back({name, optimizer_->decays(name)});
  const nlohmann::json space{{"codebook_size", space_.codebook_size},
                             {"length", space_.length},
                             {"num_classes", space_.num_classes},
                             {"null_class", space_.null_class}};
  trace.initial(weights, {{"kind", "transformer"},
                          {"causal", opt_.causal ? "1" : "0"},
                          {"config", config_to_json(config_, -1)},
                          {"trained", trained.dump()},
                          {"space", space.dump()}});
}

// A step of the trace: the batch (and the NAR mask), the loss, the gradients.
void TransformerTrainer::trace_step(const at::Tensor& codes, const at::Tensor& labels, const LossTerms& terms,
                                    double loss, double lr) {
  StepTracer& trace = loop_.tracer();
  if (!trace.on()) return;
  trace.input("codes", codes);
  if (labels.defined()) trace.input("labels", labels);
  if (terms.mask.defined()) trace.input("mask", terms.mask);
  trace.loss("loss", loss);
  trace.meta("lr", lr);
  trace.grads("model.", optimizer_->named_params());
}

// The training and validation codes, and the token space they fix.
void TransformerTrainer::load_token_sets() {
  SEQGAN_CHECK_HINT(!opt_.tokens.empty(), "make one with `seqgan tokenize`", "no training token file given");
  train_file_ = load_tokens(opt_.tokens);
  space_.codebook_size = train_file_.codebook_size;
  space_.length = train_file_.indices.size(1) * train_file_.indices.size(2);
  if (!loop_.resuming() && config_.transformer.num_classes > 0) {
    // A class-conditional model takes its classes from the tokens it learns: the preset's count
    // (1000 for ImageNet) is only a default.
    const bool labeled = train_file_.labels.numel() > 0 && train_file_.labels.min().item<int64_t>() >= 0;
    const int64_t named = static_cast<int64_t>(train_file_.class_names.size());
    if (!labeled) {
      log_info(str(opt_.tokens, " holds unlabeled images: an unconditional model (transformer.num_classes 0)"));
      config_.transformer.num_classes = 0;
    } else if (named > 0 && named != config_.transformer.num_classes) {
      log_info(str("transformer.num_classes = ", named, ", the classes of ", opt_.tokens, " (the configuration said ",
                   config_.transformer.num_classes, ")"));
      config_.transformer.num_classes = static_cast<int>(named);
    }
  }
  space_.num_classes = config_.transformer.num_classes;
  // Class dropout trains the null condition that classifier-free guidance samples against.
  space_.null_class = space_.num_classes > 0 && tc_.class_dropout > 0;
  train_ = token_set(train_file_, space_, opt_.tokens);
  if (!opt_.val_tokens.empty()) {
    val_ = token_set(load_tokens(opt_.val_tokens), space_, opt_.val_tokens);
  } else {
    // A fixed, seeded share of the training file, never trained on.
    const int64_t N = train_.codes.size(0);
    const int64_t n_val = std::max<int64_t>(1, static_cast<int64_t>(std::llround(tc_.val_fraction * static_cast<double>(N))));
    SEQGAN_CHECK_HINT(N - n_val >= tc_.batch_size, "use more tokens or a smaller batch", "token file of ", N,
                      " images leaves too few for training after holding out ", n_val);
    auto g = make_generator(config_.seed + 7919);
    const auto perm = at::randperm(N, g, at::TensorOptions(at::kLong));
    const auto vi = perm.narrow(0, N - n_val, n_val), ti = perm.narrow(0, 0, N - n_val);
    val_ = {train_.codes.index_select(0, vi), train_.labels.index_select(0, vi)};
    train_ = {train_.codes.index_select(0, ti), train_.labels.index_select(0, ti)};
  }
  const int64_t N = train_.codes.size(0);
  batches_per_epoch_ = N / tc_.batch_size;
  SEQGAN_CHECK_HINT(batches_per_epoch_ > 0, "lower the batch size", "the token set (", N, " images) gives no full batch of ",
                    tc_.batch_size);
  SEQGAN_CHECK_HINT(tc_.batch_size % loop_.world() == 0, "choose a batch size divisible by the number of ranks",
                    "the global batch of ", tc_.batch_size, " sequences does not split evenly over ", loop_.world(), " ranks");
  local_batch_ = tc_.batch_size / loop_.world();
}

// On resume: the weights, optimiser state and average of the checkpoint; with ranks, every rank
// starts from rank 0's weights.
void TransformerTrainer::restore_or_share() {
  if (loop_.resuming()) {
    load_state_dict(*model_, with_prefix(loop_.resume_tensors(), "model."), {}, loop_.checkpoint_path());
    optimizer_->load_state(loop_.resume_tensors(), "opt.", loop_.checkpoint_path());
  }
  if (ProcessGroup* group = loop_.group()) {
    std::vector<at::Tensor> shared;
    for (const auto& p : model_->parameters()) shared.push_back(p);
    group->broadcast(shared);
  }
  ema_ = Ema(*model_, tc_.ema_decay);
  if (loop_.resuming()) ema_.load(loop_.resume_tensors(), "ema.", loop_.checkpoint_path());
}

TrainResult TransformerTrainer::run() {
  const int64_t N = train_.codes.size(0);
  TrainState& st = loop_.state();
  log_info(str("train-transformer ", opt_.causal ? "AR" : "NAR", " | ", count_parameters(*model_), " parameters | ",
               N, " training / ", val_.codes.size(0), " validation images of ", space_.length, " tokens (K = ",
               space_.codebook_size, ", ", space_.num_classes > 0 ? std::to_string(space_.num_classes) + " classes" : "unconditional",
               ") | batch ", tc_.batch_size, " | ", tc_.iterations, " steps | ", device_.str(), " | ", machine_summary()));
  if (loop_.resuming()) log_info(str("resuming at step ", st.step, " (epoch ", st.epoch, ", batch ", st.position, ")"));

  while (loop_.keep_going()) {
    const auto [codes, labels] = next_batch();
    const double lr = schedule_lr(tc_.lr_schedule, st.step, tc_.iterations, tc_.lr, tc_.lr_end, tc_.warmup, tc_.decay_start);
    optimizer_->set_lr(lr);
    LossTerms terms;
    {
      AutocastGuard ac(autocast_);
      terms = objective(*model_, codes, labels, tc_.label_smoothing, c10::nullopt);
    }
    // The mean over the ranks, as one process with the whole batch would log it (NaN on any rank: all skip).
    const double loss_value = global_loss(loop_.group(), terms.loss.item<double>());
    if (st.skip_nonfinite(loss_value, tc_.max_nonfinite)) {
      optimizer_->zero_grad();
      continue;
    }
    optimizer_->zero_grad();
    terms.loss.backward();
    if (loop_.group()) loop_.group()->average_gradients(optimizer_->params());
    trace_step(codes, labels, terms, loss_value, lr);
    optimizer_->step();
    ema_.update();
    loop_.step_taken(loss_value);
    loop_.tracer().write(st.step);
    loop_.count_images(tc_.batch_size);
    log_step(terms, loss_value, lr);
    if (st.step % tc_.val_every == 0 && st.step < tc_.iterations) validate();
    if (st.step % tc_.checkpoint_every == 0 && st.step < tc_.iterations) save("periodic");
  }
  if (!loop_.interrupted()) {
    loop_.finish();
    validate();
    if (ProcessGroup* group = loop_.group()) {
      // Rank 0 validated; every rank reports its figures.
      std::vector<at::Tensor> v{at::tensor({result_.val_loss, result_.val_accuracy}, at::kDouble)};
      group->broadcast(v);
      result_.val_loss = v[0][0].item<double>();
      result_.val_accuracy = v[0][1].item<double>();
    }
  }
  save(loop_.stop_reason());
  result_.step = st.step;
  result_.interrupted = loop_.interrupted();
  return result_;
}

std::pair<at::Tensor, at::Tensor> TransformerTrainer::next_batch() {
  TrainState& st = loop_.state();
  if (st.position >= batches_per_epoch_) {
    ++st.epoch;
    st.position = 0;
  }
  if (perm_epoch_ != st.epoch) {
    auto g = make_generator(config_.seed * 1000003ULL + static_cast<uint64_t>(st.epoch));
    perm_ = at::randperm(train_.codes.size(0), g, at::TensorOptions(at::kLong));
    perm_epoch_ = st.epoch;
  }
  const auto idx = perm_.narrow(0, st.position * tc_.batch_size + loop_.rank() * local_batch_, local_batch_);
  ++st.position;
  const auto codes = train_.codes.index_select(0, idx).to(device_);
  auto labels = space_.num_classes > 0 ? train_.labels.index_select(0, idx).to(device_) : at::Tensor();
  if (space_.null_class)
    labels = drop_classes(labels, tc_.class_dropout, space_.null_class_id(), config_.seed, st.step, tc_.batch_size,
                          loop_.rank() * local_batch_);
  return {codes, labels};
}

void TransformerTrainer::log_step(const LossTerms& terms, double loss, double lr) {
  loop_.add("loss", loss);
  loop_.add("accuracy", (terms.logits.argmax(1) == terms.targets).to(at::kDouble).mean().item<double>());
  if (!loop_.row_due(tc_.log_every)) return;
  auto m = loop_.take_row();
  m["lr"] = lr;
  log_info(str("step ", loop_.state().step, " | loss ", fmt(m["loss"]), " | top-1 ", fmt(100 * m["accuracy"]), "% | lr ",
               fmt(lr), " | ", fmt(m["img_per_s"]), " img/s"));
  loop_.write_row("train", m);
}

// The loss and top-1 accuracy on the held-out codes (rank 0; the others go on to the next
// step's collectives and wait there).
void TransformerTrainer::validate() {
  if (loop_.rank() != 0) return;
  const bool conditional = space_.num_classes > 0;
  const auto s = score_tokens(*model_, val_.codes, conditional ? val_.labels : at::Tensor(), tc_.batch_size,
                              tc_.label_smoothing, config_.seed);
  result_.val_loss = s.loss;
  result_.val_accuracy = s.accuracy;
  log_info(str("step ", loop_.state().step, " | val loss ", fmt(s.loss), " | val top-1 ", fmt(100 * s.accuracy), "% (",
               val_.codes.size(0), " images)"));
  loop_.write_row("val", {{"loss", s.loss}, {"accuracy", s.accuracy}});
}

void TransformerTrainer::save(const std::string& why) {
  TrainingLoop::Save parts;
  for (const auto& [k, v] : state_dict(*model_)) parts.state["model." + k] = v;
  optimizer_->save_state(parts.state, "opt.");
  token_space_to_extra(space_, parts.model_extra);
  if (space_.num_classes > 0 && !train_file_.class_names.empty())
    parts.model_extra["class_names"] = nlohmann::json(train_file_.class_names).dump();
  parts.state_extra = parts.model_extra;
  parts.state_extra["model_kind"] = kind_;
  parts.model_kind = kind_;
  parts.lr_key = str(opt_.causal ? "train_ar" : "train_nar", ".lr");
  loop_.save(why, config_, *model_, ema_, std::move(parts));
}

}  // namespace

TrainResult train_transformer(const TransformerTrainOptions& options) {
  const BlasThreads blas(at::get_num_threads());  // large products dominate here
  return TransformerTrainer(options).run();
}

}  // namespace seqgan
