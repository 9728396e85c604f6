// `seqgan bench`: the machine's float32 matrix-product peak and memory bandwidth, and the speed
// of seqgan's hot paths measured against them, as a Markdown table or JSON (name, value, unit,
// ratio where a figure is a comparison). Each figure is the best of a few timed repetitions, so
// that a busy moment of a shared machine does not decide it.
#include <sys/resource.h>

#include <chrono>
#include <functional>
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/cli.h"
#include "eval/evaluate.h"
#include "seqgan/data.h"
#include "seqgan/runtime.h"
#include "tokenizer/tokenizer.h"
#include "train/run.h"
#include "transformer/sampling.h"
#include "transformer/transformer.h"

namespace seqgan::cli {
namespace {

using Clock = std::chrono::steady_clock;

struct Figure {
  std::string name, unit, note;
  double value = 0;
  bool is_ratio = false;
};

// Units of work per second of fn(), best of `repeats` runs of at least `min_seconds` each, after
// one untimed call.
double best_rate(const std::function<void()>& fn, double work_per_call, int repeats = 3, double min_seconds = 0.5) {
  fn();
  double best = 0;
  for (int r = 0; r < repeats; ++r) {
    int64_t calls = 0;
    const auto start = Clock::now();
    double secs = 0;
    do {
      fn();
      ++calls;
      secs = std::chrono::duration<double>(Clock::now() - start).count();
    } while (secs < min_seconds);
    best = std::max(best, work_per_call * static_cast<double>(calls) / secs);
  }
  return best;
}

TokenSpace bench_space(int64_t codebook, int64_t length) {
  TokenSpace s;
  s.codebook_size = codebook;
  s.length = length;
  s.num_classes = 10;
  return s;
}

int run_bench(const Args& args) {
  const Config config = load_config(args);
  const bool quick = args.flag("--quick");
  const int repeats = quick ? 1 : 3;
  const double min_s = quick ? 0.2 : 0.5;
  std::vector<Figure> figs;
  torch::manual_seed(0);

  // The machine.
  const int64_t n = 1024;
  const auto a = at::rand({n, n}), b = at::rand({n, n});
  const double peak = best_rate([&] { at::mm(a, b); }, 2.0 * n * n * n / 1e9, repeats, min_s);
  figs.push_back({"matmul_peak_f32", "GFLOP/s", "1024x1024 float32 matrix product", peak});
  const auto big = at::rand({512 * 1024 * 1024 / 4});  // 512 MiB, beyond the largest caches
  auto dst = at::empty_like(big);
  const double bw = best_rate([&] { dst.copy_(big); }, 2.0 * static_cast<double>(big.nbytes()) / 1e9, repeats, min_s);
  figs.push_back({"memory_bandwidth", "GB/s", "copy of 512 MiB (bytes read + written)", bw});

  // Transformer training step: the config's transformer, AR, batch train_ar.batch_size.
  {
    const TokenSpace space = bench_space(1024, 256);
    Transformer m(config.transformer, space, true);
    m->train();
    torch::optim::AdamW opt(m->parameters(), torch::optim::AdamWOptions(1e-4));
    const int64_t batch = quick ? 8 : std::min<int64_t>(config.train_ar.batch_size, 32);
    const auto cond = at::randint(10, {batch}, at::kLong);
    const auto tokens = at::randint(space.codebook_size, {batch, space.length}, at::kLong);
    const double tps = best_rate(
        [&] {
          opt.zero_grad();
          const auto logits = m->forward(cond, tokens.slice(1, 0, space.length - 1));
          at::cross_entropy_loss(logits.reshape({-1, space.codebook_size}), tokens.reshape({-1})).backward();
          opt.step();
        },
        static_cast<double>(batch * space.length), repeats, min_s);
    // Training FLOPs per token: 6 per weight of the blocks and the head, plus attention's
    // score and value products, 12 * layers * length * width.
    int64_t weights = 0;
    for (const auto& p : m->named_parameters())
      if (p.key().find("emb") == std::string::npos && p.value().dim() == 2) weights += p.value().numel();
    const double flops_per_token =
        6.0 * static_cast<double>(weights) + 12.0 * config.transformer.layers * space.length * config.transformer.width;
    const double gflops = tps * flops_per_token / 1e9;
    figs.push_back({"transformer_train", "tokens/s", "config transformer, 256 tokens, batch " + std::to_string(batch), tps});
    figs.push_back({"transformer_train_gflops", "GFLOP/s", "achieved, from the FLOP count", gflops});
    figs.push_back({"transformer_train_peak_fraction", "", "achieved / matmul_peak_f32", gflops / peak, true});
  }

  // AR sampling at batch 1, 256 tokens: with the cache against a full recompute, and against
  // the floor of streaming every weight once per token.
  {
    const TokenSpace space = bench_space(1024, 256);
    Transformer m(config.transformer, space, true);
    m->eval();
    auto gen = make_generator(0);
    const auto cond = at::zeros({1}, at::kLong);
    ArSampleOptions cached, recompute;
    recompute.use_cache = false;
    const double with = best_rate([&] { sample_ar(*m, cond, 1, cached, gen); }, 256.0, repeats, min_s);
    const double without = best_rate([&] { sample_ar(*m, cond, 1, recompute, gen); }, 256.0, 1, min_s);
    figs.push_back({"ar_sample_b1_cache", "tokens/s", "config transformer, 256 tokens, batch 1", with});
    figs.push_back({"ar_sample_b1_recompute", "tokens/s", "the same without the key/value cache", without});
    figs.push_back({"ar_kv_speedup_b1", "", "cache / recompute", with / without, true});
    double bytes = 0;
    for (const auto& p : m->parameters()) bytes += static_cast<double>(p.nbytes());
    const double floor = bw * 1e9 / bytes;
    figs.push_back({"ar_decode_floor_b1", "tokens/s", "memory_bandwidth / weight bytes", floor});
    figs.push_back({"ar_decode_floor_fraction_b1", "", "ar_sample_b1_cache / ar_decode_floor_b1", with / floor, true});
  }

  // NAR sampling: 16 images of 256 tokens in sample.steps rounds.
  {
    const TokenSpace space = bench_space(1024, 256);
    Transformer m(config.transformer, space, false);
    m->eval();
    auto gen = make_generator(0);
    const int64_t batch = 16;
    const auto cond = at::arange(batch, at::kLong) % 10;
    const double rate = best_rate([&] { sample_nar(*m, cond, batch, nar_options(config.sample), gen); },
                                  static_cast<double>(batch), repeats, min_s);
    figs.push_back({"nar_sample", "img/s", "256 tokens, batch 16, " + std::to_string(config.sample.steps) + " steps", rate});
  }

  // FID feature extraction with the configured evaluation network, when its weights exist.
  try {
    EvalNetwork net(config.eval, torch::kCPU);
    const int64_t batch = quick ? 4 : 32;
    const auto x = at::rand({batch, config.data.channels, config.data.resolution, config.data.resolution}) * 2 - 1;
    figs.push_back({"fid_features", "img/s", net.name() + ", batch " + std::to_string(batch),
                    best_rate([&] { net.run(x); }, static_cast<double>(batch), repeats, min_s)});
  } catch (const std::exception& e) {
    std::cerr << "bench: fid_features skipped: " << e.what() << "\n";
  }

  // Tokenizer: a training step (L1 + VQ + entropy terms), encode and decode, at the config's size.
  {
    Tokenizer t(config.tokenizer, config.quantizer, config.data.channels);
    const int64_t batch = quick ? 4 : 16;
    const auto x = at::rand({batch, config.data.channels, config.data.resolution, config.data.resolution}) * 2 - 1;
    const double train = best_rate(
        [&] {
          auto out = t->forward(x);
          ((out.reconstruction - x).abs().mean() + out.quant.codebook_loss + out.quant.commit_loss + out.quant.entropy_loss)
              .backward();
          for (auto& p : t->parameters()) p.mutable_grad() = at::Tensor();
        },
        static_cast<double>(batch), repeats, min_s);
    figs.push_back({"tokenizer_train_step", "img/s", "batch " + std::to_string(batch) + ", config resolution", train});
    torch::NoGradGuard ng;
    t->eval();
    const auto idx = t->encode_indices(x);
    figs.push_back({"tokenizer_encode", "img/s", "", best_rate([&] { t->encode_indices(x); }, batch, repeats, min_s)});
    figs.push_back({"tokenizer_decode", "img/s", "", best_rate([&] { t->decode_indices(idx); }, batch, repeats, min_s)});
    // The data loader with the training transform, as the trainer uses it.
    try {
      auto data = open_dataset(config.data, "train");
      LoaderOptions lo;
      lo.batch_size = 64;
      lo.num_workers = std::max(1, config.data.num_workers);
      Loader loader(data, lo, train_transform(config.data));
      Batch bt;
      const double loader_rate = best_rate(
          [&] {
            if (!loader.next(bt)) loader.start_epoch(loader.epoch() + 1);
          },
          64.0, repeats, min_s);
      figs.push_back({"data_loader", "img/s", data->description(), loader_rate});
      figs.push_back({"data_loader_vs_train_step", "", "data_loader / tokenizer_train_step (goal >= 5)", loader_rate / train, true});
    } catch (const std::exception& e) {
      std::cerr << "bench: data loader skipped: " << e.what() << "\n";
    }
  }

  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  figs.push_back({"peak_memory", "MiB", "peak resident set of this process", static_cast<double>(ru.ru_maxrss) / 1024.0});

  if (args.flag("--json")) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& f : figs) {
      nlohmann::json j{{"name", f.name}, {"value", f.value}, {"unit", f.unit}};
      if (f.is_ratio) j["ratio"] = f.value;
      out.push_back(j);
    }
    std::cout << out.dump(2) << "\n";
  } else {
    std::cout << "| name | value | unit | what |\n|---|---:|---|---|\n";
    for (const auto& f : figs)
      std::cout << "| " << f.name << " | " << std::setprecision(f.value >= 100 ? 0 : 3) << std::fixed << f.value << " | "
                << f.unit << " | " << f.note << " |\n";
    std::cout << "\n" << machine_summary() << "\n";
  }
  return 0;
}

}  // namespace

Command bench_command() {
  Command c;
  c.info.name = "bench";
  c.info.summary =
      "Measure the machine (float32 matrix-product peak, memory bandwidth) and seqgan's hot paths against it:\n"
      "transformer training, AR sampling with and without the cache, NAR sampling, FID features, the tokenizer,\n"
      "the data loader, peak memory";
  c.config_options("fmnist");
  c.flag("--json", "print a JSON list of {name, value, unit, ratio}");
  c.flag("--quick", "one short repetition per figure (for smoke tests)");
  c.run = run_bench;
  return c;
}

}  // namespace seqgan::cli
