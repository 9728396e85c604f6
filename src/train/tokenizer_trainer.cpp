#include "train/tokenizer_trainer.h"

#include <ATen/CPUGeneratorImpl.h>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <iomanip>
#include <nlohmann/json.hpp>
#include <sstream>
#include <utility>

#include "core/autocast.h"
#include "losses/discriminator.h"
#include "losses/perceptual.h"
#include "seqgan/checkpoint.h"
#include "seqgan/error.h"
#include "seqgan/image.h"
#include "seqgan/runtime.h"
#include "tokenizer/tokenizer.h"
#include "train/distributed.h"
#include "train/loop.h"
#include "train/optim.h"
#include "train/ema.h"
#include "train/state.h"

namespace seqgan {

namespace {

void set_requires_grad(torch::nn::Module& m, bool on) {
  for (auto& p : m.parameters()) p.set_requires_grad(on);
}

// VQGAN's adaptive weight: |grad L_rec| / |grad L_G| at the decoder's last layer.
at::Tensor adaptive_weight(const at::Tensor& rec_loss, const at::Tensor& g_loss, const at::Tensor& last_layer) {
  const auto g_rec = torch::autograd::grad({rec_loss}, {last_layer}, {}, true)[0];
  const auto g_gan = torch::autograd::grad({g_loss}, {last_layer}, {}, true)[0];
  return (g_rec.norm() / (g_gan.norm() + 1e-4)).clamp(0.0, 1e4).detach();
}

std::string fmt(double v) {
  std::ostringstream os;
  os << std::setprecision(4) << v;
  return os.str();
}

// The tokenizer of a fresh phase-1 run, or phase 2's: the phase-1 tokenizer from `init` with
// B&D attention added to its decoder (its architecture then becomes the run's).
Tokenizer build_tokenizer(const TokenizerTrainOptions& opt, Config& config, const torch::Device& device) {
  // A resumed phase-2 run's configuration holds the attention already.
  if (opt.phase == 1 || opt.resume) return Tokenizer(config.tokenizer, config.quantizer, config.data.channels);
  SEQGAN_CHECK_HINT(!opt.init.empty(), "pass --init RUN/tokenizer.safetensors of a phase-1 run",
                    "phase 2 starts from a phase-1 tokenizer");
  LoadedTokenizer init = load_tokenizer(opt.init, device);
  SEQGAN_CHECK(init.phase == 1, opt.init, " is already a phase-", init.phase, " tokenizer");
  SEQGAN_CHECK_HINT(init.config.data.channels == config.data.channels && init.config.data.resolution == config.data.resolution,
                    "use the data settings of the phase-1 run", "phase-1 tokenizer was trained on ", init.config.data.channels,
                    "-channel ", init.config.data.resolution, "px images, this run uses ", config.data.channels, "-channel ",
                    config.data.resolution, "px");
  config.tokenizer = init.config.tokenizer;
  config.quantizer = init.config.quantizer;
  config.tokenizer.decoder_attn_pairs += config.phase2.attn_pairs;
  init.model->decoder->add_attention(config.phase2.attn_pairs, config.tokenizer);
  return init.model;
}

// Phase 2's discriminator continues from the phase-1 run's training state beside `init`.
void load_phase1_discriminator(Discriminator& disc, const std::string& init) {
  const std::string phase1_state = (std::filesystem::path(init).parent_path() / "checkpoint.safetensors").string();
  SEQGAN_CHECK_HINT(file_exists(phase1_state), "keep the phase-1 run directory whole, or --set phase2.fresh_discriminator=true",
                    "the discriminator continues from phase 1, but '", phase1_state, "' is missing");
  load_state_dict(*disc, with_prefix(safetensors::load(phase1_state).tensors, "disc."), {}, phase1_state);
}

// A fixed batch of held-out images for the reconstruction grids (the training set's when the
// data have no test split).
at::Tensor preview_batch(const Config& config, const std::shared_ptr<Dataset>& train_set, const torch::Device& device) {
  std::shared_ptr<Dataset> test_set;
  try {
    test_set = open_dataset(config.data, "test");
  } catch (const Error&) {
    test_set = train_set;
  }
  const Transform t(eval_transform(config.data));
  std::vector<at::Tensor> imgs;
  for (int64_t i = 0; i < std::min<int64_t>(8, test_set->size()); ++i)
    imgs.push_back(image_to_tensor(t.apply(test_set->load(i).image, config.seed, 0, i)));
  return at::stack(imgs).to(device);
}

// One step's losses.
struct StepLosses {
  at::Tensor rec, l1, perceptual, g_adv;
  QuantizerOutput q;
  double loss = 0, adv_weight = 0;
  bool gan = false;  // the adversarial terms are on
  double d_loss = 0, r1 = 0;  // the discriminator's
};

class TokenizerTrainer {
 public:
  explicit TokenizerTrainer(const TokenizerTrainOptions& opt);
  TrainResult run();

 private:
  void restore_or_share();
  void open_data();
  StepLosses generator_step(const at::Tensor& x, double lr);
  void reestimate_codebook(const QuantizerOutput& q);
  void discriminator_step(const at::Tensor& x, StepLosses& losses);
  void trace_generator_step(const at::Tensor& x, const StepLosses& g, const PerceptualResult& perceptual, double lr);
  void log_step(const StepLosses& g, double lr);
  void save(const std::string& why);
  void write_preview();
  void trace_initial();

  const TokenizerTrainOptions& opt_;
  Config config_;
  TrainingLoop loop_;
  const bool phase2_;
  // The phase's settings, read once: phase 1 reads train_tokenizer and perceptual.alpha, phase 2
  // phase2.
  TokenizerTrainConfig tt_;
  double alpha_ = 0;
  torch::Device device_{torch::kCPU};
  bool autocast_ = false;
  Tokenizer model_{nullptr};
  Discriminator disc_{nullptr};
  PerceptualLoss per_loss_{nullptr};
  std::unique_ptr<Adam> opt_g_, opt_d_;
  Ema ema_;
  std::shared_ptr<Dataset> train_set_;
  std::unique_ptr<Loader> loader_;
  std::unique_ptr<SkippedFiles> skipped_;
  at::Tensor preview_;
  at::Tensor window_hist_;
};

TokenizerTrainer::TokenizerTrainer(const TokenizerTrainOptions& opt)
    : opt_(opt),
      config_(opt.config),
      loop_(opt, "tokenizer-train", "tokenizer.safetensors", config_),
      phase2_(opt.phase == 2) {
  make_data_paths_absolute(config_.data);
  if (loop_.resuming())
    SEQGAN_CHECK_HINT(loop_.resume_meta().extra["phase"] == std::to_string(opt.phase),
                      "resume with the phase the run was started with", loop_.checkpoint_path(), " is a phase-",
                      loop_.resume_meta().extra["phase"], " run, not phase ", opt.phase);
  device_ = to_device(resolve_device(config_.device));
  torch::manual_seed(config_.seed);

  model_ = build_tokenizer(opt, config_, device_);
  tt_ = phase2_ ? config_.phase2.train : config_.train_tokenizer;
  alpha_ = phase2_ ? config_.phase2.alpha : config_.perceptual.alpha;
  autocast_ = device_.is_cuda() && tt_.autocast_bf16;
  SEQGAN_CHECK_HINT(tt_.batch_size % loop_.world() == 0, "choose a batch size divisible by the number of ranks",
                    "the global batch of ", tt_.batch_size, " images does not split evenly over ", loop_.world(), " ranks");
  model_->to(device_);
  model_->train();
  if (phase2_) {
    model_->encoder->eval();
    model_->quantizer->eval();
    set_requires_grad(*model_->encoder, false);
    set_requires_grad(*model_->quantizer, false);
    model_->quantizer->regularize = false;
  }
  disc_ = Discriminator(config_.discriminator, config_.data.channels, config_.data.resolution);
  disc_->to(device_);
  if (phase2_ && !opt.resume && !config_.phase2.fresh_discriminator) load_phase1_discriminator(disc_, opt.init);
  per_loss_ = PerceptualLoss(PerceptualOptions::from_config(config_.perceptual, alpha_),
                             load_feature_network(config_.perceptual.network, config_.perceptual.weights, device_));
  per_loss_->to(device_);

  opt_g_ = std::make_unique<Adam>(AdamOptions{tt_.lr, tt_.beta1, tt_.beta2, 1e-8, 0.0});
  for (const auto& p : model_->named_parameters())
    if (p.value().requires_grad()) opt_g_->add(p.key(), p.value());
  opt_d_ = std::make_unique<Adam>(AdamOptions{tt_.d_lr, tt_.beta1, tt_.beta2, 1e-8, 0.0});
  for (const auto& p : disc_->named_parameters()) opt_d_->add(p.key(), p.value());
  restore_or_share();
  loop_.begin(config_, str("phase ", opt.phase), tt_.iterations);
  open_data();
  trace_initial();
}

// The step trace's start: the weights before the first step and what the steps need to be
// replayed (the configuration this run uses, the parameters the generator's optimiser trains).
void TokenizerTrainer::trace_initial() {
  StepTracer& trace = loop_.tracer();
  if (!trace.on()) return;
  safetensors::TensorMap weights;
  for (const auto& [k, v] : state_dict(*model_)) weights["model." + k] = v;
  for (const auto& [k, v] : state_dict(*disc_)) weights["disc." + k] = v;
  nlohmann::json trained = nlohmann::json::array();
  for (const auto& [name, p] : opt_g_->named_params()) trained.push_back({name, false});
  trace.initial(weights, {{"kind", "tokenizer"},
                          {"phase", std::to_string(opt_.phase)},
                          {"config", config_to_json(config_, -1)},
                          {"trained", trained.dump()}});
}

// On resume: the weights, optimiser states and average of the checkpoint. With ranks: every rank
// starts from rank 0's weights (they agree already when seeded alike; this makes it so whatever
// happened before) and the quantiser's statistics are summed over the ranks.
void TokenizerTrainer::restore_or_share() {
  if (loop_.resuming()) {
    const auto& tensors = loop_.resume_tensors();
    const std::string& path = loop_.checkpoint_path();
    LoadOptions only_model;
    only_model.prefixes = {"encoder.", "quantizer.", "decoder."};
    load_state_dict(*model_, tensors, only_model, path);
    load_state_dict(*disc_, with_prefix(tensors, "disc."), {}, path);
    opt_g_->load_state(tensors, "opt_g.", path);
    opt_d_->load_state(tensors, "opt_d.", path);
  }
  if (ProcessGroup* group = loop_.group()) {
    std::vector<at::Tensor> shared;
    for (const auto& p : model_->parameters()) shared.push_back(p);
    for (const auto& p : disc_->parameters()) shared.push_back(p);
    group->broadcast(shared);
    model_->quantizer->all_reduce_sum = [group](const at::Tensor& t) { return group->all_reduce_sum(t); };
  }
  // The average of the whole tokenizer; in phase 2 it starts at the phase-1 weights it loaded
  // (the encoder and codebook stay there).
  ema_ = Ema(*model_, tt_.ema_decay);
  if (loop_.resuming()) ema_.load(loop_.resume_tensors(), "ema.", loop_.checkpoint_path());
}

// Rank r takes global positions r, r + W, ... of the epoch's order: one step of W ranks sees the
// images one process with the whole batch would.
void TokenizerTrainer::open_data() {
  train_set_ = open_dataset(config_.data, "train");
  if (loop_.writer()) train_set_->write_class_list(loop_.dir().path());
  skipped_ = std::make_unique<SkippedFiles>(train_set_, loop_.writer() ? loop_.dir().file("skipped_files.txt") : "");
  LoaderOptions lo;
  lo.batch_size = tt_.batch_size / loop_.world();
  lo.num_workers = config_.data.num_workers;
  lo.prefetch = config_.data.prefetch;
  lo.seed = config_.seed;
  lo.rank = loop_.rank();
  lo.world_size = loop_.world();
  loader_ = std::make_unique<Loader>(train_set_, lo, train_transform(config_.data));
  SEQGAN_CHECK_HINT(loader_->batches_per_epoch() > 0, "lower the batch size", "the data set (", train_set_->size(),
                    " images) gives no full batch of ", tt_.batch_size);
  loader_->start_epoch(loop_.state().epoch, loop_.state().position);
  if (loop_.writer()) {
    preview_ = preview_batch(config_, train_set_, device_);
    std::filesystem::create_directories(loop_.dir().file("samples"));
  }
  window_hist_ = at::zeros({config_.tokenizer.codebook_size}, at::kLong);
}

TrainResult TokenizerTrainer::run() {
  log_info(str("train-tokenizer phase ", opt_.phase, " | ", count_parameters(*model_), " parameters (",
               opt_g_->params().size(), " tensors trained) | ", train_set_->size(), " images of ",
               train_set_->description(), " | batch ", tt_.batch_size, " | ", tt_.iterations, " steps | ",
               device_.str(), " | ", machine_summary()));
  TrainState& st = loop_.state();
  if (loop_.resuming()) log_info(str("resuming at step ", st.step, " (epoch ", st.epoch, ", batch ", st.position, ")"));
  while (loop_.keep_going()) {
    Batch batch;
    if (!loader_->next(batch)) {
      loader_->start_epoch(loader_->epoch() + 1);
      continue;
    }
    const auto x = batch.images.to(device_);
    const double lr = schedule_lr(tt_.lr_schedule, st.step, tt_.iterations, tt_.lr, tt_.lr_end, tt_.warmup, 0);
    opt_g_->set_lr(lr);
    StepLosses g = generator_step(x, lr);
    if (st.skip_nonfinite(g.loss, tt_.max_nonfinite)) {
      opt_g_->zero_grad();
      continue;
    }
    reestimate_codebook(g.q);
    ema_.update();
    if (g.gan) discriminator_step(x, g);
    loop_.step_taken(g.loss);
    loop_.tracer().write(st.step);
    loop_.count_images(x.size(0) * loop_.world());
    log_step(g, lr);
    if (st.step % tt_.image_every == 0 || st.step == tt_.iterations) write_preview();
    if (st.step % tt_.checkpoint_every == 0 && st.step < tt_.iterations) save("periodic");
  }
  loop_.finish();
  model_->quantizer->all_reduce_sum = nullptr;
  save(loop_.stop_reason());
  return {st.step, loop_.interrupted(), loop_.model_path()};
}

// The tokenizer's losses (L1, perceptual, VQ terms in phase 1, adversarial once the GAN is on),
// backward and the optimiser step; the step is left undone when the loss is not finite on any
// rank (the caller skips it).
StepLosses TokenizerTrainer::generator_step(const at::Tensor& x, double lr) {
  StepLosses g;
  at::Tensor vq_loss = at::zeros({}, x.options());
  {
    AutocastGuard ac(autocast_);
    if (phase2_) {
      {
        torch::NoGradGuard ng;
        g.q.indices = model_->encode_indices(x);
      }
      g.rec = model_->decoder->forward(model_->quantizer->lookup(g.q.indices)).to(at::kFloat);
    } else {
      auto out = model_->forward(x);
      g.q = out.quant;
      g.rec = out.reconstruction.to(at::kFloat);
      vq_loss = g.q.codebook_loss + g.q.commit_loss + g.q.entropy_loss;
    }
  }
  g.l1 = (x - g.rec).abs().mean();
  const PerceptualResult perceptual = per_loss_->forward(g.rec, x);
  g.perceptual = perceptual.loss;
  const auto rec_loss = tt_.l1_weight * g.l1 + g.perceptual;
  auto loss = rec_loss + vq_loss;
  // Phase 2 inherits a trained discriminator: the GAN term is on from its first step.
  g.gan = phase2_ || loop_.state().step >= config_.discriminator.start_iter;
  if (g.gan) {
    set_requires_grad(*disc_, false);
    {
      AutocastGuard ac(autocast_);
      g.g_adv = generator_loss(disc_->forward(g.rec).to(at::kFloat));
    }
    g.adv_weight = config_.discriminator.adv_weight;
    if (config_.discriminator.adaptive_weight)
      g.adv_weight *= adaptive_weight(rec_loss, g.g_adv, model_->decoder->last_layer_weight()).item<double>();
    loss = loss + g.adv_weight * g.g_adv;
  }
  // The mean over the ranks, as one process with the whole batch would log it (NaN on any rank: all skip).
  g.loss = global_loss(loop_.group(), loss.item<double>());
  if (!std::isfinite(g.loss)) return g;
  opt_g_->zero_grad();
  loss.backward();
  if (loop_.group()) loop_.group()->average_gradients(opt_g_->params());
  trace_generator_step(x, g, perceptual, lr);
  opt_g_->step();
  return g;
}

// The generator's part of the step trace: the batch, every loss term, the gradients.
void TokenizerTrainer::trace_generator_step(const at::Tensor& x, const StepLosses& g, const PerceptualResult& perceptual,
                                            double lr) {
  StepTracer& trace = loop_.tracer();
  if (!trace.on()) return;
  trace.input("images", x);
  trace.loss("l1", g.l1.item<double>());
  trace.loss("perceptual", g.perceptual.item<double>());
  if (perceptual.low.defined()) trace.loss("perceptual.low", perceptual.low.item<double>());
  if (perceptual.sem.defined()) trace.loss("perceptual.sem", perceptual.sem.item<double>());
  if (!phase2_) {
    trace.loss("codebook", g.q.codebook_loss.item<double>());
    trace.loss("commit", g.q.commit_loss.item<double>());
    trace.loss("entropy", g.q.entropy_loss.item<double>());
  }
  if (g.gan) {
    trace.loss("g_adv", g.g_adv.item<double>());
    trace.loss("adv_weight", g.adv_weight);
  }
  trace.loss("loss", g.loss);
  trace.meta("lr", lr);
  trace.meta("gan", g.gan ? "1" : "0");
  trace.meta("r1", "0");
  trace.grads("model.", opt_g_->named_params());
}

// Phase 1's periodic k-means re-estimation of the codebook, from this batch's encoder outputs
// with a generator of the step alone, so a resumed run repeats it exactly; ranks take rank 0's
// codes.
void TokenizerTrainer::reestimate_codebook(const QuantizerOutput& q) {
  const auto& qc = config_.quantizer;
  const int64_t next = loop_.state().step + 1;
  if (phase2_ || qc.kmeans_every <= 0 || next % qc.kmeans_every != 0 || (qc.kmeans_until != 0 && next > qc.kmeans_until))
    return;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(config_.seed) * 1000003 + loop_.state().step);
  const int64_t moved = model_->quantizer->reestimate(q.lookup_space, qc.kmeans_iters, gen);
  if (loop_.group()) loop_.group()->broadcast({model_->quantizer->embedding});
  loop_.add("kmeans_moved", static_cast<double>(moved));
}

// The discriminator's step, with the lazy R1 penalty every r1_interval of its steps.
void TokenizerTrainer::discriminator_step(const at::Tensor& x, StepLosses& losses) {
  const auto& dc = config_.discriminator;
  set_requires_grad(*disc_, true);
  const int64_t d_steps = ++loop_.state().d_steps;
  const bool do_r1 = dc.r1_gamma > 0 && d_steps % dc.r1_interval == 0;
  auto real = x.detach();
  if (do_r1) real.requires_grad_(true);
  at::Tensor d_loss, real_logits;
  {
    AutocastGuard ac(autocast_);
    real_logits = disc_->forward(real).to(at::kFloat);
    d_loss = discriminator_loss(real_logits, disc_->forward(losses.rec.detach()).to(at::kFloat));
  }
  losses.d_loss = d_loss.item<double>();
  if (do_r1) {
    const auto r1 = r1_penalty(real_logits, real, dc.r1_gamma);
    losses.r1 = r1.item<double>();
    d_loss = d_loss + r1 * dc.r1_interval;
  }
  opt_d_->zero_grad();
  d_loss.backward();
  if (loop_.group()) loop_.group()->average_gradients(opt_d_->params());
  StepTracer& trace = loop_.tracer();
  trace.loss("d_loss", losses.d_loss);
  if (do_r1) trace.loss("r1", losses.r1);
  trace.meta("r1", do_r1 ? "1" : "0");
  trace.grads("disc.", opt_d_->named_params());
  opt_d_->step();
}

// Adds the step to the log window; at the window's end writes the row and the log line.
void TokenizerTrainer::log_step(const StepLosses& g, double lr) {
  loop_.add("loss", g.loss);
  loop_.add("l1", g.l1.item<double>());
  loop_.add("perceptual", g.perceptual.item<double>());
  if (!phase2_) {
    loop_.add("codebook", g.q.codebook_loss.item<double>());
    loop_.add("commit", g.q.commit_loss.item<double>());
    loop_.add("entropy_loss", g.q.entropy_loss.item<double>());
    loop_.add("soft_usage_entropy", g.q.soft_usage_entropy);
    loop_.add("perplexity", g.q.perplexity);
    loop_.add("codes_in_batch", static_cast<double>(g.q.codes_used));
  }
  if (g.gan) {
    loop_.add("g_adv", g.g_adv.item<double>());
    loop_.add("adv_weight", g.adv_weight);
    loop_.add("d_loss", g.d_loss);
  }
  if (g.r1 > 0) loop_.add("r1", g.r1 * config_.discriminator.r1_interval);
  window_hist_ += code_histogram(g.q.indices, config_.tokenizer.codebook_size);
  if (!loop_.row_due(tt_.log_every)) return;

  auto m = loop_.take_row();
  if (loop_.group()) loop_.group()->all_reduce_sum_(window_hist_);
  m["lr"] = lr;
  m["usage_window"] = (window_hist_ > 0).sum().item<double>() / static_cast<double>(config_.tokenizer.codebook_size);
  window_hist_.zero_();
  std::ostringstream line;
  line << "step " << loop_.state().step << " | loss " << fmt(m["loss"]) << " | l1 " << fmt(m["l1"]) << " | per "
       << fmt(m["perceptual"]);
  if (!phase2_)
    line << " | vq " << fmt(m["codebook"] + m["commit"]) << " | ent " << fmt(m["entropy_loss"]) << " | ppl "
         << fmt(m["perplexity"]) << " | usage " << fmt(100 * m["usage_window"]) << "%";
  if (g.gan) line << " | g_adv " << fmt(m["g_adv"]) << " | d " << fmt(m["d_loss"]);
  line << " | lr " << fmt(lr) << " | " << std::fixed << std::setprecision(1) << m["img_per_s"] << " img/s";
  log_info(line.str());
  loop_.write_row(phase2_ ? "tokenizer_phase2" : "tokenizer_phase1", m);
  skipped_->report();
}

void TokenizerTrainer::save(const std::string& why) {
  if (!loop_.writer()) return;
  TrainState& st = loop_.state();
  st.epoch = loader_->epoch();
  st.position = loader_->position();
  TrainingLoop::Save parts;
  for (const auto& [k, v] : state_dict(*model_)) parts.state[k] = v;
  for (const auto& [k, v] : state_dict(*disc_)) parts.state["disc." + k] = v;
  opt_g_->save_state(parts.state, "opt_g.");
  opt_d_->save_state(parts.state, "opt_d.");
  parts.state_extra["phase"] = parts.model_extra["phase"] = std::to_string(opt_.phase);
  parts.model_kind = "tokenizer";
  parts.lr_key = phase2_ ? "phase2.lr" : "train_tokenizer.lr";
  loop_.save(why, config_, *model_, ema_, std::move(parts));
  skipped_->report();
}

// The preview batch and its reconstruction, side by side, as samples/recon_STEP.png. Rank 0
// alone runs this forward pass: the quantiser must not wait for the others.
void TokenizerTrainer::write_preview() {
  if (!loop_.writer()) return;
  torch::NoGradGuard ng;
  auto hook = std::exchange(model_->quantizer->all_reduce_sum, nullptr);
  struct Restore {
    std::function<at::Tensor(const at::Tensor&)>& slot;
    std::function<at::Tensor(const at::Tensor&)> hook;
    ~Restore() { slot = std::move(hook); }
  } restore{model_->quantizer->all_reduce_sum, std::move(hook)};
  model_->eval();
  const auto rec = model_->forward(preview_).reconstruction.to(at::kFloat);
  model_->train();
  if (phase2_) {
    model_->encoder->eval();
    model_->quantizer->eval();
  }
  std::ostringstream name;
  name << loop_.dir().file("samples") << "/recon_" << std::setw(7) << std::setfill('0') << loop_.state().step << ".png";
  write_png(name.str(), make_grid(at::cat({preview_, rec}), preview_.size(0)));
}

}  // namespace

TrainResult train_tokenizer(const TokenizerTrainOptions& options) {
  SEQGAN_CHECK(options.phase == 1 || options.phase == 2, "phase must be 1 or 2, got ", options.phase);
  return TokenizerTrainer(options).run();
}

}  // namespace seqgan
