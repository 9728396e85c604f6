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
#include "train/optim.h"
#include "train/ema.h"
#include "train/state.h"

namespace seqgan {

namespace {

void set_requires_grad(torch::nn::Module& m, bool on) {
  for (auto& p : m.parameters()) p.set_requires_grad(on);
}

// The hyper-parameters of the phase being trained.
struct PhaseSettings {
  int64_t batch_size, iterations;
  double lr, lr_end, beta1, beta2, alpha;
  std::string schedule;
  int64_t warmup;
};

PhaseSettings phase_settings(const Config& c, int phase) {
  const auto& t = c.train_tokenizer;
  if (phase == 1) return {t.batch_size, t.iterations, t.lr, t.lr_end, t.beta1, t.beta2, c.perceptual.alpha, t.lr_schedule, t.warmup};
  const auto& p = c.phase2;
  return {p.batch_size, p.iterations, p.lr, p.lr_end, p.beta1, p.beta2, p.alpha, "cosine", 0};
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

}  // namespace

TokenizerTrainResult train_tokenizer(const TokenizerTrainOptions& opt) {
  SEQGAN_CHECK(opt.phase == 1 || opt.phase == 2, "phase must be 1 or 2, got ", opt.phase);
  SEQGAN_CHECK_HINT(!opt.run_dir.empty(), "pass --out DIR", "no run directory given");
  const bool phase2 = opt.phase == 2;
  const std::string ckpt_path = opt.run_dir + "/checkpoint.safetensors";
  const std::string model_path = opt.run_dir + "/tokenizer.safetensors";
  Config config = opt.config;
  make_data_paths_absolute(config.data);

  // On resume the run's own configuration is authoritative: it fixed the architecture.
  safetensors::File resume_file;
  CheckpointMeta resume_meta;
  // The directory is locked first: no other process may write it while this one reads its state.
  const bool writer = !opt.group || opt.group->rank() == 0;
  RunDir run(opt.run_dir, writer, RunDir::start_mode(opt.resume, opt.overwrite));
  if (opt.resume) {
    auto r = open_resume(ckpt_path, "tokenizer-train", config, opt.resume_overrides);
    make_data_paths_absolute(config.data);
    resume_file = std::move(r.file);
    resume_meta = std::move(r.meta);
    SEQGAN_CHECK_HINT(resume_meta.extra["phase"] == std::to_string(opt.phase), "resume with the phase the run was started with",
                      ckpt_path, " is a phase-", resume_meta.extra["phase"], " run, not phase ", opt.phase);
  }
  const auto device = to_device(resolve_device(config.device));
  const bool cuda = device.is_cuda();
  torch::manual_seed(config.seed);

  // Model.
  LoadedTokenizer init;
  if (phase2 && !opt.resume) {
    SEQGAN_CHECK_HINT(!opt.init.empty(), "pass --init RUN/tokenizer.safetensors of a phase-1 run",
                      "phase 2 starts from a phase-1 tokenizer");
    init = load_tokenizer(opt.init, device);
    SEQGAN_CHECK(init.phase == 1, opt.init, " is already a phase-", init.phase, " tokenizer");
    SEQGAN_CHECK_HINT(init.config.data.channels == config.data.channels && init.config.data.resolution == config.data.resolution,
                      "use the data settings of the phase-1 run", "phase-1 tokenizer was trained on ", init.config.data.channels,
                      "-channel ", init.config.data.resolution, "px images, this run uses ", config.data.channels, "-channel ",
                      config.data.resolution, "px");
    config.tokenizer = init.config.tokenizer;
    config.quantizer = init.config.quantizer;
    config.tokenizer.decoder_attn_pairs += config.phase2.attn_pairs;
  }
  const PhaseSettings ps = phase_settings(config, opt.phase);
  ProcessGroup* const group = opt.group.get();
  const int rank = group ? group->rank() : 0, world = group ? group->world_size() : 1;
  SEQGAN_CHECK_HINT(ps.batch_size % world == 0, "choose a batch size divisible by the number of ranks",
                    "the global batch of ", ps.batch_size, " images does not split evenly over ", world, " ranks");
  Tokenizer model{nullptr};
  if (init.model) {
    model = init.model;
    model->decoder->add_attention(config.phase2.attn_pairs, config.tokenizer);
  } else {
    model = Tokenizer(config.tokenizer, config.quantizer, config.data.channels);
  }
  model->to(device);
  model->train();
  if (phase2) {
    model->encoder->eval();
    model->quantizer->eval();
    set_requires_grad(*model->encoder, false);
    set_requires_grad(*model->quantizer, false);
    model->quantizer->regularize = false;
  }
  Discriminator disc(config.discriminator, config.data.channels, config.data.resolution);
  disc->to(device);
  if (phase2 && !opt.resume && !config.phase2.fresh_discriminator) {
    const std::string phase1_state = (std::filesystem::path(opt.init).parent_path() / "checkpoint.safetensors").string();
    SEQGAN_CHECK_HINT(file_exists(phase1_state), "keep the phase-1 run directory whole, or --set phase2.fresh_discriminator=true",
                      "the discriminator continues from phase 1, but '", phase1_state, "' is missing");
    load_state_dict(*disc, with_prefix(safetensors::load(phase1_state).tensors, "disc."), {}, phase1_state);
  }
  PerceptualOptions per_options = PerceptualOptions::from_config(config.perceptual);
  per_options.alpha = ps.alpha;
  PerceptualLoss per_loss(per_options, load_feature_network(config.perceptual.network, config.perceptual.weights, device));
  per_loss->to(device);

  // Optimisers.
  Adam opt_g({ps.lr, ps.beta1, ps.beta2, 1e-8, 0.0});
  for (const auto& p : model->named_parameters())
    if (p.value().requires_grad()) opt_g.add(p.key(), p.value());
  Adam opt_d({config.train_tokenizer.d_lr, ps.beta1, ps.beta2, 1e-8, 0.0});
  for (const auto& p : disc->named_parameters()) opt_d.add(p.key(), p.value());

  // State.
  TrainState st;
  if (opt.resume) {
    LoadOptions only_model;
    only_model.prefixes = {"encoder.", "quantizer.", "decoder."};
    load_state_dict(*model, resume_file.tensors, only_model, ckpt_path);
    load_state_dict(*disc, with_prefix(resume_file.tensors, "disc."), {}, ckpt_path);
    opt_g.load_state(resume_file.tensors, "opt_g.", ckpt_path);
    opt_d.load_state(resume_file.tensors, "opt_d.", ckpt_path);
    st = TrainState::from_meta(resume_meta, resume_file.tensors);
  }

  if (group) {
    // Every rank starts from rank 0's weights and optimiser state (they agree already when
    // seeded alike; this makes it so whatever happened before).
    std::vector<at::Tensor> shared;
    for (const auto& p : model->parameters()) shared.push_back(p);
    for (const auto& p : disc->parameters()) shared.push_back(p);
    group->broadcast(shared);
    model->quantizer->all_reduce_sum = [group](const at::Tensor& t) { return group->all_reduce_sum(t); };
  }
  // The average of the whole tokenizer; in phase 2 it starts at the phase-1 weights it loaded
  // (the encoder and codebook stay there).
  Ema ema(*model, config.train_tokenizer.ema_decay);
  if (opt.resume) ema.load(resume_file.tensors, "ema.", ckpt_path);
  resume_file = {};

  run.begin(config, st.step);
  const auto train_set = open_dataset(config.data, "train");
  if (run.writer()) train_set->write_class_list(run.path());
  SkippedFiles skipped(train_set, run.writer() ? run.file("skipped_files.txt") : "");
  // Rank r takes global positions r, r + W, ... of the epoch's order: one step of W ranks sees the
  // images one process with the whole batch would.
  LoaderOptions lo;
  lo.batch_size = ps.batch_size / world;
  lo.num_workers = config.data.num_workers;
  lo.prefetch = config.data.prefetch;
  lo.seed = config.seed;
  lo.rank = rank;
  lo.world_size = world;
  Loader loader(train_set, lo, train_transform(config.data));
  SEQGAN_CHECK_HINT(loader.batches_per_epoch() > 0, "lower the batch size", "the data set (", train_set->size(),
                    " images) gives no full batch of ", ps.batch_size);
  loader.start_epoch(st.epoch, st.position);

  // A fixed batch of held-out images for the reconstruction grids.
  at::Tensor preview;
  if (run.writer()) {
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
    preview = at::stack(imgs).to(device);
    std::filesystem::create_directories(run.file("samples"));
  }

  const auto& tt = config.train_tokenizer;
  const int log_every = phase2 && config.phase2.log_every > 0 ? config.phase2.log_every : tt.log_every;
  const int image_every = phase2 && config.phase2.image_every > 0 ? config.phase2.image_every : tt.image_every;
  int64_t saved_at = opt.resume ? st.step : -1;  // a checkpoint of this step exists
  auto save = [&](const std::string& why) {
    if (!run.writer() || st.step == saved_at) return;
    st.epoch = loader.epoch();
    st.position = loader.position();
    safetensors::TensorMap t;
    for (const auto& [k, v] : state_dict(*model)) t[k] = v;
    for (const auto& [k, v] : state_dict(*disc)) t["disc." + k] = v;
    opt_g.save_state(t, "opt_g.");
    opt_d.save_state(t, "opt_d.");
    auto averaged = ema.state(*model, "ema.");
    for (const auto& [k, v] : averaged) t[k] = v;
    CheckpointMeta meta;
    meta.kind = "tokenizer-train";
    meta.config_json = config_to_json(config, -1);
    meta.step = st.step;
    meta.extra["phase"] = std::to_string(opt.phase);
    check_finite_state(t, st.step, ckpt_path, phase2 ? "phase2.lr" : "train_tokenizer.lr");
    st.to_meta(meta, t);
    safetensors::save(ckpt_path, t, meta.to_metadata());
    skipped.report();
    CheckpointMeta model_meta;
    model_meta.kind = "tokenizer";
    model_meta.config_json = meta.config_json;
    model_meta.step = st.step;
    model_meta.extra["phase"] = std::to_string(opt.phase);
    if (ema.enabled()) {
      model_meta.extra["ema_decay"] = nlohmann::json(ema.decay()).dump();
      averaged.erase("ema.__updates");
    }
    save_checkpoint(model_path, *model, model_meta, averaged);
    saved_at = st.step;
    log_info(str("step ", st.step, " | checkpoint written (", why, "): ", model_path));
  };
  auto write_preview = [&]() {
    if (!run.writer()) return;
    torch::NoGradGuard ng;
    // Rank 0 alone runs this forward pass: the quantiser must not wait for the others.
    auto hook = std::exchange(model->quantizer->all_reduce_sum, nullptr);
    struct Restore {
      std::function<at::Tensor(const at::Tensor&)>& slot;
      std::function<at::Tensor(const at::Tensor&)> hook;
      ~Restore() { slot = std::move(hook); }
    } restore{model->quantizer->all_reduce_sum, std::move(hook)};
    model->eval();
    const auto rec = model->forward(preview).reconstruction.to(at::kFloat);
    model->train();
    if (phase2) {
      model->encoder->eval();
      model->quantizer->eval();
    }
    std::ostringstream name;
    name << run.file("samples") << "/recon_" << std::setw(7) << std::setfill('0') << st.step << ".png";
    write_png(name.str(), make_grid(at::cat({preview, rec}), preview.size(0)));
  };

  log_info(str("train-tokenizer phase ", opt.phase, " | ", count_parameters(*model), " parameters (",
               opt_g.params().size(), " tensors trained) | ", train_set->size(), " images of ", train_set->description(), " | batch ", ps.batch_size,
               " | ", ps.iterations, " steps | ", device.str(), " | ", machine_summary()));
  if (opt.resume) log_info(str("resuming at step ", st.step, " (epoch ", st.epoch, ", batch ", st.position, ")"));

  TokenizerTrainResult result;
  Progress progress(str("phase ", opt.phase), ps.iterations);
  std::map<std::string, double> window;  // sums over the log window
  int64_t window_steps = 0, window_images = 0, done_here = 0;
  at::Tensor window_hist = at::zeros({config.tokenizer.codebook_size}, at::kLong);
  auto window_start = std::chrono::steady_clock::now();
  const bool autocast = cuda && tt.autocast_bf16;

  std::string stop_reason = "final";
  while (st.step < ps.iterations) {
    const bool signalled = any_rank(group, opt.stop && opt.stop());
    if (signalled || (opt.max_steps >= 0 && done_here >= opt.max_steps)) {
      result.interrupted = true;
      stop_reason = signalled ? "interrupted" : "--max-steps reached";
      break;
    }
    Batch batch;
    if (!loader.next(batch)) {
      loader.start_epoch(loader.epoch() + 1);
      continue;
    }
    const auto x = batch.images.to(device);
    const double lr = schedule_lr(ps.schedule, st.step, ps.iterations, ps.lr, ps.lr_end, ps.warmup, 0);
    opt_g.set_lr(lr);

    // Generator (tokenizer) step.
    at::Tensor rec, vq_loss = at::zeros({}, x.options());
    QuantizerOutput q;
    {
      AutocastGuard ac(autocast);
      if (phase2) {
        {
          torch::NoGradGuard ng;
          q.indices = model->encode_indices(x);
        }
        rec = model->decoder->forward(model->quantizer->lookup(q.indices)).to(at::kFloat);
      } else {
        auto out = model->forward(x);
        q = out.quant;
        rec = out.reconstruction.to(at::kFloat);
        vq_loss = q.codebook_loss + q.commit_loss + q.entropy_loss;
      }
    }
    const auto l1 = (x - rec).abs().mean();
    const auto per = per_loss->forward(rec, x);
    const auto rec_loss = tt.l1_weight * l1 + per.loss;
    auto loss = rec_loss + vq_loss;
    // Phase 2 inherits a trained discriminator: the GAN term is on from its first step.
    const bool gan = phase2 || st.step >= config.discriminator.start_iter;
    at::Tensor g_adv;
    double adv_w = 0;
    if (gan) {
      set_requires_grad(*disc, false);
      {
        AutocastGuard ac(autocast);
        g_adv = generator_loss(disc->forward(rec).to(at::kFloat));
      }
      adv_w = config.discriminator.adv_weight;
      if (config.discriminator.adaptive_weight)
        adv_w *= adaptive_weight(rec_loss, g_adv, model->decoder->last_layer_weight()).item<double>();
      loss = loss + adv_w * g_adv;
    }
    double loss_value = loss.item<double>();
    // The mean over the ranks, as one process with the whole batch would log it (NaN on any rank: all skip).
    loss_value = global_loss(group, loss_value);
    if (st.skip_nonfinite(loss_value, tt.max_nonfinite)) {
      opt_g.zero_grad();
      continue;
    }
    opt_g.zero_grad();
    loss.backward();
    if (group) group->average_gradients(opt_g.params());
    opt_g.step();
    const auto& qc = config.quantizer;
    if (!phase2 && qc.kmeans_every > 0 && (st.step + 1) % qc.kmeans_every == 0 &&
        (qc.kmeans_until == 0 || st.step + 1 <= qc.kmeans_until)) {
      // Re-estimated from this batch's encoder outputs with a generator of the step alone, so a
      // resumed run repeats it exactly; ranks take rank 0's codes.
      auto gen = at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(config.seed) * 1000003 + st.step);
      const int64_t moved = model->quantizer->reestimate(q.lookup_space, qc.kmeans_iters, gen);
      if (group) group->broadcast({model->quantizer->embedding});
      window["kmeans_moved"] += static_cast<double>(moved);
    }
    ema.update();

    // Discriminator step, with the lazy R1 penalty every r1_interval of its steps.
    double d_loss_value = 0, r1_value = 0;
    if (gan) {
      set_requires_grad(*disc, true);
      ++st.d_steps;
      const bool do_r1 = config.discriminator.r1_gamma > 0 && st.d_steps % config.discriminator.r1_interval == 0;
      auto real = x.detach();
      if (do_r1) real.requires_grad_(true);
      at::Tensor d_loss, real_logits;
      {
        AutocastGuard ac(autocast);
        real_logits = disc->forward(real).to(at::kFloat);
        d_loss = discriminator_loss(real_logits, disc->forward(rec.detach()).to(at::kFloat));
      }
      d_loss_value = d_loss.item<double>();
      if (do_r1) {
        const auto r1 = r1_penalty(real_logits, real, config.discriminator.r1_gamma);
        r1_value = r1.item<double>();
        d_loss = d_loss + r1 * config.discriminator.r1_interval;
      }
      opt_d.zero_grad();
      d_loss.backward();
      if (group) group->average_gradients(opt_d.params());
      opt_d.step();
    }
    ++st.step;
    ++done_here;

    // Logging.
    window["loss"] += loss_value;
    window["l1"] += l1.item<double>();
    window["perceptual"] += per.loss.item<double>();
    if (!phase2) {
      window["codebook"] += q.codebook_loss.item<double>();
      window["commit"] += q.commit_loss.item<double>();
      window["entropy_loss"] += q.entropy_loss.item<double>();
      window["soft_usage_entropy"] += q.soft_usage_entropy;
      window["perplexity"] += q.perplexity;
      window["codes_in_batch"] += static_cast<double>(q.codes_used);
    }
    if (gan) {
      window["g_adv"] += g_adv.item<double>();
      window["adv_weight"] += adv_w;
      window["d_loss"] += d_loss_value;
    }
    if (r1_value > 0) window["r1"] += r1_value * config.discriminator.r1_interval;
    window_hist += code_histogram(q.indices, config.tokenizer.codebook_size);
    ++window_steps;
    window_images += x.size(0) * world;
    progress.update(st.step, str("loss ", fmt(loss_value)));
    if (st.step % log_every == 0 || st.step == ps.iterations) {
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - window_start).count();
      std::map<std::string, double> m;
      for (const auto& [k, v] : window) m[k] = v / static_cast<double>(window_steps);
      if (group) {
        m = group->average(m);  // every rank logs the same keys
        group->all_reduce_sum_(window_hist);
      }
      m["lr"] = lr;
      m["img_per_s"] = static_cast<double>(window_images) / std::max(secs, 1e-9);
      m["usage_window"] = (window_hist > 0).sum().item<double>() / static_cast<double>(config.tokenizer.codebook_size);
      std::ostringstream line;
      line << "step " << st.step << " | loss " << fmt(m["loss"]) << " | l1 " << fmt(m["l1"]) << " | per "
           << fmt(m["perceptual"]);
      if (!phase2)
        line << " | vq " << fmt(m["codebook"] + m["commit"]) << " | ent " << fmt(m["entropy_loss"]) << " | ppl "
             << fmt(m["perplexity"]) << " | usage " << fmt(100 * m["usage_window"]) << "%";
      if (gan) line << " | g_adv " << fmt(m["g_adv"]) << " | d " << fmt(m["d_loss"]);
      line << " | lr " << fmt(lr) << " | " << std::fixed << std::setprecision(1) << m["img_per_s"] << " img/s";
      log_info(line.str());
      run.metrics().write(phase2 ? "tokenizer_phase2" : "tokenizer_phase1", st.step, m);
      skipped.report();
      window.clear();
      window_hist.zero_();
      window_steps = window_images = 0;
      window_start = std::chrono::steady_clock::now();
    }
    if (st.step % image_every == 0 || st.step == ps.iterations) write_preview();
    if (st.step % tt.checkpoint_every == 0 && st.step < ps.iterations) save("periodic");
  }
  if (!result.interrupted) progress.finish();
  model->quantizer->all_reduce_sum = nullptr;
  save(stop_reason);
  result.step = st.step;
  result.tokenizer_path = model_path;
  return result;
}

}  // namespace seqgan
