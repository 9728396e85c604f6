// `seqgan bench`: the machine's float32 matrix-product peak and memory bandwidth, and the speed
// of seqgan's hot paths measured against them, as a Markdown table or JSON (name, value, unit,
// ratio where a figure is a comparison). Each figure is the best of a few timed repetitions, so
// that a busy moment of a shared machine does not decide it.
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <nlohmann/json.hpp>

#include "cli/cli.h"
#include "eval/evaluate.h"
#include "features/inception.h"
#include "seqgan/checkpoint.h"
#include "seqgan/data.h"
#include "seqgan/error.h"
#include "seqgan/safetensors.h"
#include "seqgan/runtime.h"
#include "tokenizer/tokenizer.h"
#include "train/optim.h"
#include "train/run.h"
#include "train/ema.h"
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

// A measurement that is repeated in PyTorch eager mode by tools/reference/bench.py: the same
// architecture, weights and input, saved here with seqgan's outputs for that input (which the
// reference checks), then timed there the same way.
struct ReferenceCase {
  std::string name, unit;
  std::string suffix;  // of the name, after "tokenizer_train" or "transformer_train": "_paper64"
  double rate = 0;  // seqgan's
  std::string file;
  std::function<double()> retime;  // seqgan's rate measured again (for the second round)
  double flops_per_unit = 0;       // for the derived GFLOP/s and peak fraction figures
};

// Writes DIR/NAME.safetensors for the Python reference: the model's weights ("param.*"), the
// case's inputs and expected outputs ("input.*", "output.*") and metadata; returns the path.
std::string write_case_file(const std::string& dir, const std::string& name, const torch::nn::Module& m,
                            safetensors::TensorMap tensors, const safetensors::Metadata& meta) {
  for (const auto& [key, value] : state_dict(m)) tensors["param." + key] = value.detach().clone();
  const std::string path = dir + "/" + name + ".safetensors";
  safetensors::save(path, tensors, meta);
  return path;
}

safetensors::Metadata case_metadata(const std::string& name, const std::string& kind, const Config& c, int repeats,
                                    double min_s) {
  return {{"case", name},
          {"kind", kind},
          {"config", config_to_json(c, -1)},
          {"image_channels", std::to_string(c.data.channels)},
          {"repeats", std::to_string(repeats)},
          {"min_seconds", std::to_string(min_s)},
          {"threads", std::to_string(at::get_num_threads())},
          {"lr", "0.0001"}};
}

// One training step of the tokenizer without the perceptual and adversarial terms: L1
// reconstruction, codebook, commitment and entropy terms, backward, Adam.
ReferenceCase tokenizer_case(const std::string& name, const Config& c, int64_t batch, int repeats, double min_s,
                             const std::string& dir) {
  torch::manual_seed(0);
  Tokenizer t(c.tokenizer, c.quantizer, c.data.channels);
  {
    // Attention output projections start at zero (the block starts as the identity); give them
    // values, as training would, so that the attention's output takes part in the comparison.
    torch::NoGradGuard ng;
    for (auto& p : t->named_parameters())
      if (p.key().find("proj_out") != std::string::npos) p.value().normal_(0.0, 0.05);
  }
  const auto x = at::rand({batch, c.data.channels, c.data.resolution, c.data.resolution}) * 2 - 1;
  auto loss_of = [&](const TokenizerOutput& out) {
    return (out.reconstruction - x).abs().mean() + out.quant.codebook_loss + out.quant.commit_loss + out.quant.entropy_loss;
  };
  ReferenceCase rc;
  rc.name = name;
  rc.unit = "img/s";
  if (!dir.empty()) {
    torch::NoGradGuard ng;
    const auto out = t->forward(x);
    rc.file = write_case_file(dir, name, *t,
                              {{"input.x", x}, {"output.reconstruction", out.reconstruction}, {"output.loss", loss_of(out)},
                               {"output.indices", out.quant.indices}},
                              case_metadata(name, "tokenizer", c, repeats, min_s));
  }
  rc.retime = [=] { return tokenizer_case(name, c, batch, repeats, min_s, "").rate; };
  Adam opt({1e-4, 0.9, 0.999, 1e-8, 0.0});  // the trainer's optimiser; the reference runs torch.optim.Adam
  for (const auto& p : t->named_parameters()) opt.add(p.key(), p.value());
  rc.rate = best_rate(
      [&] {
        opt.zero_grad();
        loss_of(t->forward(x)).backward();
        opt.step();
      },
      static_cast<double>(batch), repeats, min_s);
  return rc;
}

// One AR training step: forward with dropout, cross-entropy over K codes, backward, AdamW.
ReferenceCase transformer_case(const std::string& name, const Config& c, const TokenSpace& space, int64_t batch,
                               int repeats, double min_s, const std::string& dir) {
  torch::manual_seed(0);
  Transformer m(c.transformer, space, true);
  const auto cond = at::randint(space.num_classes, {batch}, at::kLong);
  const auto tokens = at::randint(space.codebook_size, {batch, space.length}, at::kLong);
  const auto inputs = tokens.slice(1, 0, space.length - 1);
  ReferenceCase rc;
  rc.name = name;
  rc.unit = "tokens/s";
  if (!dir.empty()) {
    torch::NoGradGuard ng;
    m->eval();
    auto meta = case_metadata(name, "transformer", c, repeats, min_s);
    meta["causal"] = "1";
    meta["codebook_size"] = std::to_string(space.codebook_size);
    meta["length"] = std::to_string(space.length);
    meta["num_classes"] = std::to_string(space.num_classes);
    rc.file = write_case_file(dir, name, *m,
                              {{"input.cond", cond}, {"input.tokens", tokens}, {"output.logits", m->forward(cond, inputs)}}, meta);
  }
  rc.retime = [=] { return transformer_case(name, c, space, batch, repeats, min_s, "").rate; };
  m->train();
  const BlasThreads blas(at::get_num_threads());  // as transformer training runs
  Adam opt({1e-4, 0.9, 0.999, 1e-8, 0.01});  // as torch.optim.AdamW's defaults, decay on every tensor
  for (const auto& p : m->named_parameters()) opt.add(p.key(), p.value(), true);
  rc.rate = best_rate(
      [&] {
        opt.zero_grad();
        const auto logits = m->forward(cond, inputs);
        at::cross_entropy_loss(logits.reshape({-1, space.codebook_size}), tokens.reshape({-1})).backward();
        opt.step();
      },
      static_cast<double>(batch * space.length), repeats, min_s);
  return rc;
}

// Training FLOPs per token: 6 per weight of the blocks and the head, plus attention's score and
// value products, 12 * layers * length * width.
double transformer_flops_per_token(const Config& c, const TokenSpace& space) {
  Transformer m(c.transformer, space, true);
  int64_t weights = 0;
  for (const auto& p : m->named_parameters())
    if (p.key().find("emb") == std::string::npos && p.value().dim() == 2) weights += p.value().numel();
  return 6.0 * static_cast<double>(weights) + 12.0 * c.transformer.layers * space.length * c.transformer.width;
}

std::string default_reference_dir() {
  if (const char* env = std::getenv("SEQGAN_REFERENCE_DIR")) return env;
#ifdef SEQGAN_REFERENCE_DIR
  return SEQGAN_REFERENCE_DIR;
#else
  return "tools/reference";
#endif
}

// Runs the reference on every case file; returns its JSON list, or null (after saying why) when
// it could not run.
nlohmann::json run_reference(const std::vector<ReferenceCase>& cases, const std::string& python,
                             const std::string& reference_dir, const std::string& dir) {
  const std::string script = reference_dir + "/bench.py";
  if (!std::filesystem::exists(script)) {
    std::cerr << "bench: the Python comparisons are skipped: " << script
              << " not found\n---> HINT: pass --reference DIR (the tools/reference folder of a seqgan source tree)\n";
    return nullptr;
  }
  std::string cmd = "'" + python + "' '" + script + "'";
  for (const auto& c : cases) cmd += " '" + c.file + "'";
  cmd += " > '" + dir + "/reference.json'";
  std::cerr << "bench: timing the Python reference (" << python << ")\n";
  const int rc = std::system(cmd.c_str());
  if (rc != 0) {
    std::cerr << "bench: the Python reference failed (exit status " << rc << "): " << cmd
              << "\n---> HINT: it needs python3 with torch (Debian: apt-get install python3-torch), or pass --no-python\n";
    return nullptr;
  }
  std::ifstream in(dir + "/reference.json");
  return nlohmann::json::parse(in);
}

// What the figures of one run share: its options, the machine's figures that later ones are
// measured against, the cases for the Python reference, and the figures so far, in print order.
struct Bench {
  Config config;
  bool quick = false;
  bool python = true;          // compare with the PyTorch reference
  std::string python_exe;      // --python
  int repeats = 3;
  double min_s = 0.5;
  std::string preset;          // the config's preset as a name suffix: tokenizer_train_fmnist
  std::string reference_dir;   // bench.py and loader.py
  std::string case_dir;        // the reference's case files and JPEGs; empty without the reference
  double peak = 0;             // matmul_peak_f32, GFLOP/s
  double bandwidth = 0;        // memory_bandwidth, GB/s
  double tokenizer_train = 0;  // tokenizer_train_PRESET, img/s
  std::vector<at::Tensor> machine_operands;  // 1 GiB, alive until peak_memory is read
  std::vector<ReferenceCase> cases;
  std::vector<Figure> figs;
};

Bench bench_options(const Args& args) {
  Bench b;
  b.config = load_config(args);
  b.quick = args.flag("--quick");
  b.python = !args.flag("--no-python");
  b.python_exe = args.get("--python");
  b.repeats = b.quick ? 1 : 3;
  b.min_s = b.quick ? 0.2 : 0.5;
  // Names of the config's own cases end in its preset: tokenizer_train_fmnist.
  b.preset = b.config.preset;
  for (char& ch : b.preset)
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  b.reference_dir = args.get("--reference").empty() ? default_reference_dir() : args.get("--reference");
  return b;
}

// A temporary folder, removed with its contents when the object goes; none when `create` is false.
struct TempDir {
  std::string path;
  explicit TempDir(bool create) {
    if (!create) return;
    std::string pattern = (std::filesystem::temp_directory_path() / "seqgan-bench-XXXXXX").string();
    SEQGAN_CHECK(::mkdtemp(pattern.data()) != nullptr, "cannot create a temporary folder under ",
                 std::filesystem::temp_directory_path().string());
    path = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    if (!path.empty()) std::filesystem::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
};

// The machine: the float32 matrix-product peak and the memory bandwidth.
void machine_figures(Bench& b) {
  const int64_t n = 1024;
  const auto x = at::rand({n, n}), y = at::rand({n, n});
  b.peak = best_rate([&] { at::mm(x, y); }, 2.0 * n * n * n / 1e9, b.repeats, b.min_s);
  b.figs.push_back({"matmul_peak_f32", "GFLOP/s", "1024x1024 float32 matrix product", b.peak});
  const auto big = at::rand({512 * 1024 * 1024 / 4});  // 512 MiB, beyond the largest caches
  auto dst = at::empty_like(big);
  b.bandwidth = best_rate([&] { dst.copy_(big); }, 2.0 * static_cast<double>(big.nbytes()) / 1e9, b.repeats, b.min_s);
  b.figs.push_back({"memory_bandwidth", "GB/s", "copy of 512 MiB (bytes read + written)", b.bandwidth});
  b.machine_operands = {x, y, big, dst};
}

// Transformer training: the paper's width (768, 16 heads, MLP 3072; 2 of its 24 layers, which
// the per-token cost scales with) and the config's own transformer.
void transformer_train_figures(Bench& b) {
  const Config& config = b.config;
  Config wide = config;
  wide.transformer = make_preset("paper").transformer;
  wide.transformer.layers = b.quick ? 1 : 2;
  const TokenSpace space = bench_space(1024, b.quick ? 64 : 256);
  const int64_t batch = b.quick ? 1 : 4;
  auto rc = transformer_case("transformer_train", wide, space, batch, b.repeats, b.min_s, b.case_dir);
  rc.flops_per_unit = transformer_flops_per_token(wide, space);
  const double gflops = rc.rate * rc.flops_per_unit / 1e9;
  b.figs.push_back({"transformer_train", "tokens/s",
                    "paper width 768, " + std::to_string(wide.transformer.layers) + " layers, " +
                        std::to_string(space.length) + " tokens, batch " + std::to_string(batch),
                    rc.rate});
  b.figs.push_back({"transformer_train_gflops", "GFLOP/s", "achieved, from the FLOP count", gflops});
  b.figs.push_back({"transformer_train_peak_fraction", "", "achieved / matmul_peak_f32 (goal >= 0.5)", gflops / b.peak, true});
  b.cases.push_back(rc);

  const TokenSpace small = bench_space(1024, 256);
  const int64_t small_batch = b.quick ? 4 : std::min<int64_t>(config.train_ar.batch_size, 32);
  auto rs = transformer_case("transformer_train_" + b.preset, config, small, small_batch, b.repeats, b.min_s, b.case_dir);
  rs.suffix = "_" + b.preset;
  rs.flops_per_unit = transformer_flops_per_token(config, small);
  const double small_gflops = rs.rate * rs.flops_per_unit / 1e9;
  b.figs.push_back({rs.name, "tokens/s",
                    "config transformer (width " + std::to_string(config.transformer.width) + "), 256 tokens, batch " +
                        std::to_string(small_batch),
                    rs.rate});
  b.figs.push_back({rs.name + "_peak_fraction", "", "its achieved GFLOP/s / matmul_peak_f32", small_gflops / b.peak, true});
  b.cases.push_back(rs);
}

// AR sampling at batch 1, 256 tokens, of one transformer: with the cache against a full
// recompute, and against the floor of streaming every weight once per token.
void ar_sample_figures(Bench& b, const Config& c, const std::string& suffix, const std::string& what) {
  const TokenSpace space = bench_space(1024, b.quick ? 64 : 256);
  Transformer m(c.transformer, space, true);
  m->eval();
  auto gen = make_generator(0);
  const auto cond = at::zeros({1}, at::kLong);
  ArSampleOptions cached, recompute;
  recompute.use_cache = false;
  const double L = static_cast<double>(space.length);
  const double with = best_rate([&] { sample_ar(*m, cond, 1, cached, gen); }, L, b.repeats, b.min_s);
  const double without = best_rate([&] { sample_ar(*m, cond, 1, recompute, gen); }, L, 1, b.min_s);
  const std::string tokens = std::to_string(space.length) + " tokens, batch 1";
  b.figs.push_back({"ar_sample_b1_cache" + suffix, "tokens/s", what + ", " + tokens, with});
  b.figs.push_back({"ar_sample_b1_recompute" + suffix, "tokens/s", "the same without the key/value cache", without});
  b.figs.push_back({"ar_kv_speedup_b1" + suffix, "", "cache / recompute (goal >= 10)", with / without, true});
  // Bytes read per token: every weight, but one row of each embedding table.
  double bytes = 0;
  for (const auto& p : m->named_parameters())
    bytes += p.key().find("emb") == std::string::npos
                 ? static_cast<double>(p.value().nbytes())
                 : static_cast<double>(p.value().nbytes()) / static_cast<double>(p.value().numel() / c.transformer.width);
  const double floor = b.bandwidth * 1e9 / bytes;
  b.figs.push_back({"ar_decode_floor_b1" + suffix, "tokens/s",
                    "memory_bandwidth / weight bytes (" + std::to_string(static_cast<int64_t>(bytes / 1e6)) + " MB)", floor});
  b.figs.push_back({"ar_decode_floor_fraction_b1" + suffix, "", "ar_sample_b1_cache / ar_decode_floor_b1 (goal >= 0.5)",
                    with / floor, true});
}

// AR sampling for the paper-width transformer (its weights, 64 MB for 2 layers, do not fit in
// the caches, so the floor is real) and for the config's own (3.5 MB for fmnist: cache-resident,
// bound by per-operator cost instead).
void ar_sample_figures(Bench& b) {
  Config wide = b.config;
  wide.transformer = make_preset("paper").transformer;
  wide.transformer.layers = b.quick ? 1 : 2;
  ar_sample_figures(b, wide, "", "paper width 768, " + std::to_string(wide.transformer.layers) + " layers");
  ar_sample_figures(b, b.config, "_" + b.preset, "config transformer");
}

// NAR sampling: 16 images of 256 tokens in sample.steps rounds.
void nar_sample_figures(Bench& b) {
  const TokenSpace space = bench_space(1024, 256);
  Transformer m(b.config.transformer, space, false);
  m->eval();
  auto gen = make_generator(0);
  const int64_t batch = 16;
  const auto cond = at::arange(batch, at::kLong) % 10;
  const double rate = best_rate([&] { sample_nar(*m, cond, batch, nar_options(b.config.sample), gen); },
                                static_cast<double>(batch), b.repeats, b.min_s);
  b.figs.push_back({"nar_sample", "img/s", "256 tokens, batch 16, " + std::to_string(b.config.sample.steps) + " steps", rate});
}

// Classifier-free guidance: AR sampling whose null-condition rows share the batch and the
// key/value cache, against plain conditional sampling of the same images.
void guidance_figures(Bench& b) {
  TokenSpace space = bench_space(1024, b.quick ? 64 : 256);
  space.null_class = true;
  Transformer m(b.config.transformer, space, true);
  m->eval();
  auto gen = make_generator(0);
  const int64_t batch = 8;
  const auto cond = at::arange(batch, at::kLong) % 10;
  ArSampleOptions plain, guided;
  guided.guidance.scale = 2.0;
  const double images = static_cast<double>(batch);
  const double p = best_rate([&] { sample_ar(*m, cond, batch, plain, gen); }, images, b.repeats, b.min_s);
  const double g = best_rate([&] { sample_ar(*m, cond, batch, guided, gen); }, images, b.repeats, b.min_s);
  const std::string what = "config transformer, " + std::to_string(space.length) + " tokens, batch 8";
  b.figs.push_back({"ar_sample_b8_plain_" + b.preset, "img/s", what, p});
  b.figs.push_back({"ar_sample_b8_guided_" + b.preset, "img/s", what + ", classifier-free guidance 2", g});
  b.figs.push_back({"ar_guided_vs_plain", "", "time of guided / plain AR sampling (goal <= 2.1)", p / g, true});
}

const ReferenceCase& case_named(const Bench& b, const std::string& name) {
  const auto it = std::find_if(b.cases.begin(), b.cases.end(), [&](const ReferenceCase& c) { return c.name == name; });
  SEQGAN_CHECK(it != b.cases.end(), "bench: no case ", name, " has been measured");
  return *it;
}

// The exponential moving average of the weights: one update against a training step of the
// config's transformer (batch and tokens as transformer_train_PRESET).
void transformer_ema_figures(Bench& b) {
  const TokenSpace space = bench_space(1024, 256);
  Transformer m(b.config.transformer, space, true);
  Ema ema(*m, 0.999);
  const double updates = best_rate([&] { ema.update(); }, 1.0, b.repeats, b.min_s);
  const double tokens_per_s = case_named(b, "transformer_train_" + b.preset).rate;
  const int64_t small_batch = b.quick ? 4 : std::min<int64_t>(b.config.train_ar.batch_size, 32);
  const double step_s = static_cast<double>(small_batch * space.length) / tokens_per_s;
  b.figs.push_back({"ema_update_" + b.preset, "updates/s",
                    "config transformer, " + std::to_string(count_parameters(*m)) + " parameters", updates});
  b.figs.push_back({"ema_update_vs_transformer_step", "", "EMA update time / transformer_train_" + b.preset + " step time (goal < 0.05)",
                    1.0 / updates / step_s, true});
}

// FID feature extraction with the configured evaluation network, when its weights exist.
void fid_feature_figures(Bench& b) {
  const Config& config = b.config;
  try {
    EvalNetwork net(config.eval, torch::kCPU);
    const int64_t batch = b.quick ? 4 : 32;
    const auto x = at::rand({batch, config.data.channels, config.data.resolution, config.data.resolution}) * 2 - 1;
    b.figs.push_back({"fid_features", "img/s", net.name() + ", batch " + std::to_string(batch),
                      best_rate([&] { net.run(x); }, static_cast<double>(batch), b.repeats, b.min_s)});
  } catch (const std::exception& e) {
    std::cerr << "bench: fid_features skipped: " << e.what() << "\n";
  }
}

// ADM's evaluation of 50,000 samples against a 10,000-image reference batch, projected from
// shorter runs of its parts: the InceptionV3 on 256x256 images (ADM's resize; random weights,
// which cost the same), the Gaussian fits and Frechet distances (2048 and 2023 dimensions),
// and precision/recall, whose cost is the number of feature pairs it measures:
// 10k^2 + 50k^2 (the radii) + 10k * 50k (the cross check).
void adm_eval_figures(Bench& b) {
  const auto device = to_device(resolve_device(b.config.device));
  InceptionV3Fid inception;
  inception.set_resize(InceptionV3Fid::Resize::kAdm);
  inception.freeze();
  inception.to(device);
  const int64_t batch = b.quick ? 2 : (device.is_cuda() ? 100 : 8);
  const auto x = (at::rand({batch, 3, 256, 256}) * 2 - 1).to(device);
  const double images = best_rate(
      [&] {
        torch::NoGradGuard ng;
        auto out = inception.taps(x, {"spatial", "features"});
        if (device.is_cuda()) out.at("features").cpu();
      },
      static_cast<double>(batch), b.repeats, b.min_s);
  const int64_t n = b.quick ? 300 : 2000;
  const auto ref = at::randn({n, 2048}), gen = at::randn({n, 2048});
  const double pairs = best_rate([&] { precision_recall(ref, gen); }, 3.0 * static_cast<double>(n * n), b.repeats, b.min_s);
  const int64_t fit_n = b.quick ? 500 : 5000;
  const auto f = at::randn({fit_n, 2048}, at::kDouble);
  const double fits = best_rate([&] { fit_gaussian(f); }, static_cast<double>(fit_n), b.repeats, b.min_s);
  const FeatureStats s = fit_gaussian(f), t = fit_gaussian(f + 0.1);
  const double distances = best_rate([&] { frechet_distance(s.mu, s.sigma, t.mu, t.sigma); }, 1.0, 1, b.min_s);
  const double total_pairs = 1e8 + 2.5e9 + 5e8;
  // Images through the network; pool and spatial fits of both sides; FID and sFID.
  const double projected = 60000.0 / images + 2 * 60000.0 / fits + total_pairs / pairs + 2.0 / distances;
  const std::string on = device.is_cuda() ? "cuda" : "cpu";
  b.figs.push_back({"adm_inception_256_" + on, "img/s", "InceptionV3 (ADM resize) on 256x256, batch " + std::to_string(batch), images});
  b.figs.push_back({"adm_pr_pairs_cpu", "pairs/s", "precision/recall distance pairs, 2048 dims, " + std::to_string(n) + " per side", pairs});
  b.figs.push_back({"adm_gaussian_fit_cpu", "rows/s", "mean and covariance of 2048-dim features", fits});
  b.figs.push_back({"adm_frechet_cpu", "distances/s", "Frechet distance of 2048-dim statistics", distances});
  b.figs.push_back({"adm_eval_50k_projected_" + on, "s", "evaluate adm: 50k samples vs a 10k reference batch (projected)", projected});
}

// Tokenizer training: a step (L1 + VQ + entropy terms, Adam) at the config's size, the EMA
// update against it, and a step of the paper's architecture at 64x64.
void tokenizer_train_figures(Bench& b) {
  const Config& config = b.config;
  const int64_t batch = b.quick ? 4 : 16;
  auto rc = tokenizer_case("tokenizer_train_" + b.preset, config, batch, b.repeats, b.min_s, b.case_dir);
  rc.suffix = "_" + b.preset;
  b.tokenizer_train = rc.rate;
  b.figs.push_back({rc.name, "img/s", "config tokenizer, batch " + std::to_string(batch), rc.rate});
  b.cases.push_back(rc);
  // The EMA update of the whole tokenizer against this step (which leaves out the perceptual
  // and GAN terms of real training: an upper bound on the EMA's share).
  Tokenizer tok(config.tokenizer, config.quantizer, config.data.channels);
  Ema ema(*tok, 0.999);
  const double updates = best_rate([&] { ema.update(); }, 1.0, b.repeats, b.min_s);
  b.figs.push_back({"ema_update_vs_tokenizer_step", "", "EMA update time / tokenizer_train_" + b.preset + " step time (goal < 0.05)",
                    (1.0 / updates) / (static_cast<double>(batch) / rc.rate), true});
  Config paper64 = make_preset("paper");
  paper64.data.channels = 3;
  paper64.data.resolution = 64;
  const int64_t paper_batch = b.quick ? 1 : 4;
  auto rp = tokenizer_case("tokenizer_train_paper64", paper64, paper_batch, b.repeats, b.min_s, b.case_dir);
  rp.suffix = "_paper64";
  b.figs.push_back({"tokenizer_train_paper64", "img/s", "paper tokenizer (phase 1) at 64x64, batch " +
                    std::to_string(paper_batch), rp.rate});
  b.cases.push_back(rp);
}

// Tokenizer encoding and decoding at the config's size.
void tokenizer_codec_figures(Bench& b) {
  const Config& config = b.config;
  Tokenizer t(config.tokenizer, config.quantizer, config.data.channels);
  const int64_t batch = b.quick ? 4 : 16;
  const auto x = at::rand({batch, config.data.channels, config.data.resolution, config.data.resolution}) * 2 - 1;
  torch::NoGradGuard ng;
  t->eval();
  const auto idx = t->encode_indices(x);
  b.figs.push_back({"tokenizer_encode", "img/s", "batch " + std::to_string(batch),
                    best_rate([&] { t->encode_indices(x); }, batch, b.repeats, b.min_s)});
  b.figs.push_back({"tokenizer_decode", "img/s", "batch " + std::to_string(batch),
                    best_rate([&] { t->decode_indices(idx); }, batch, b.repeats, b.min_s)});
}

// The data loader with the training transform, as the trainer uses it.
void loader_figures(Bench& b) {
  try {
    auto data = open_dataset(b.config.data, "train");
    LoaderOptions lo;
    lo.batch_size = 64;
    lo.num_workers = std::max(1, b.config.data.num_workers);
    Loader loader(data, lo, train_transform(b.config.data));
    Batch bt;
    const double loader_rate = best_rate(
        [&] {
          if (!loader.next(bt)) loader.start_epoch(loader.epoch() + 1);
        },
        64.0, b.repeats, b.min_s);
    b.figs.push_back({"data_loader", "img/s", data->description(), loader_rate});
    b.figs.push_back({"data_loader_vs_train_step", "", "data_loader / tokenizer_train_" + b.preset + " (goal >= 5)",
                      loader_rate / b.tokenizer_train, true});
  } catch (const std::exception& e) {
    std::cerr << "bench: data loader skipped: " << e.what() << "\n";
  }
}

// The ImageNet-like loader of loader_256: images per second through it, best of `rounds` runs
// of `seconds` each after its workers have started.
double loader_256_rate(const std::string& jpegs, int workers, int batch, int res, double seconds, int rounds) {
  ImageSourceOptions so;
  auto data = std::make_shared<ImageFolder>(jpegs, so);
  LoaderOptions lo;
  lo.batch_size = batch;
  lo.num_workers = workers;
  lo.prefetch = 4;
  TransformOptions to;
  to.resolution = res;
  to.filter = ResizeFilter::kBilinear;
  to.random_crop = true;
  to.hflip = true;
  double rate = 0;
  for (int round = 0; round < rounds; ++round) {
    Loader loader(data, lo, to);
    Batch bt;
    loader.next(bt);  // the workers are running
    int64_t images = 0;
    const auto start = std::chrono::steady_clock::now();
    double elapsed = 0;
    while (elapsed < seconds) {
      if (!loader.next(bt)) {
        loader.start_epoch(loader.epoch() + 1);
        continue;
      }
      images += bt.images.size(0);
      elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    }
    rate = std::max(rate, static_cast<double>(images) / elapsed);
  }
  return rate;
}

// torchvision's rate on the same JPEGs (loader.py time), best of `rounds`; 0 when it failed.
double loader_256_python_rate(const Bench& b, const std::string& timed, int rounds) {
  double py = 0;
  for (int round = 0; round < rounds && std::system(timed.c_str()) == 0; ++round) {
    std::ifstream in(b.case_dir + "/loader.json");
    const auto j = nlohmann::json::parse(in, nullptr, false);
    if (j.is_object() && j.contains("rate")) py = std::max(py, j.at("rate").get<double>());
  }
  return py;
}

// The loader at the paper's resolution: ImageNet-like JPEGs (about 500x375, quality 90, written
// by PIL) decoded, resized (bilinear, short side 256), randomly cropped to 256x256 and flipped,
// with 2 workers, against torchvision's ImageFolder + DataLoader with the same transforms and
// workers; and against the paper tokenizer's training step at 256x256.
void loader_256_figures(Bench& b) {
  const std::string jpegs = b.case_dir + "/jpegs";
  const std::string script = b.reference_dir + "/loader.py";
  const int count = b.quick ? 64 : 512;
  const int workers = 2, batch = 32, res = 256, rounds = b.quick ? 1 : 2;
  const std::string make = "'" + b.python_exe + "' '" + script + "' make '" + jpegs + "' " + std::to_string(count);
  if (std::system(make.c_str()) != 0) {
    std::cerr << "bench: loader_256 skipped: writing the JPEGs failed: " << make
              << "\n---> HINT: it needs python3 with PIL and numpy (Debian: apt-get install python3-pil python3-numpy)\n";
    return;
  }
  const double seconds = b.quick ? 0.5 : 3.0;
  const double rate = loader_256_rate(jpegs, workers, batch, res, seconds, rounds);
  const std::string what = std::to_string(count) + " JPEGs ~500x375 q90 -> bilinear resize, random crop 256, flip; " +
                           std::to_string(workers) + " workers, batch " + std::to_string(batch);
  b.figs.push_back({"loader_256", "img/s", what, rate});
  b.figs.push_back({"loader_256_per_core", "img/s", "loader_256 / workers (for sizing a GPU host's CPU)", rate / workers});
  const std::string timed = "'" + b.python_exe + "' '" + script + "' time '" + jpegs + "' " + std::to_string(res) + " " +
                            std::to_string(workers) + " " + std::to_string(batch) + " " + std::to_string(seconds * 2) +
                            " > '" + b.case_dir + "/loader.json'";
  const double py = loader_256_python_rate(b, timed, rounds);
  if (py > 0) {
    b.figs.push_back({"loader_256_python", "img/s", "torchvision ImageFolder + DataLoader, the same transforms and workers", py});
    b.figs.push_back({"loader_256_vs_python", "", "loader_256 / loader_256_python (goal >= 1.5)", rate / py, true});
  } else {
    std::cerr << "bench: loader_256_python skipped: " << timed << " failed\n";
  }
  if (!b.quick) {
    Config paper256 = make_preset("paper");
    paper256.data.channels = 3;
    paper256.data.resolution = res;
    const double step = tokenizer_case("tokenizer_train_paper256", paper256, 1, 1, b.min_s, "").rate;
    b.figs.push_back({"tokenizer_train_paper256", "img/s", "paper tokenizer (phase 1, L1 + VQ terms) at 256x256, batch 1", step});
    b.figs.push_back({"loader_256_vs_train_step", "", "loader_256 / tokenizer_train_paper256 (goal >= 5)", rate / step, true});
  }
}

// The second round: every case timed again in seqgan, its figures raised to the better rate,
// then the reference again; the Python rates of `results` raised to the better of both rounds.
void second_round(Bench& b, nlohmann::json& results) {
  for (auto& c : b.cases) {
    const double again = c.retime();
    c.rate = std::max(c.rate, again);
    const double gflops = c.rate * c.flops_per_unit / 1e9;
    for (auto& f : b.figs) {
      if (f.name == c.name) f.value = c.rate;
      if (f.name == c.name + "_gflops") f.value = gflops;
      if (f.name == c.name + "_peak_fraction") f.value = gflops / b.peak;
    }
  }
  const auto second = run_reference(b.cases, b.python_exe, b.reference_dir, b.case_dir);
  if (second.is_array())
    for (auto& r : results)
      for (const auto& r2 : second)
        if (r2.at("case") == r.at("case")) r["rate"] = std::max(r.at("rate").get<double>(), r2.at("rate").get<double>());
}

// The figures of one case's reference result: Python's rate, the speed ratio and the largest
// difference of the outputs.
void reference_case_figures(Bench& b, const nlohmann::json& r) {
  const std::string name = r.at("case");
  const auto it = std::find_if(b.cases.begin(), b.cases.end(), [&](const ReferenceCase& c) { return c.name == name; });
  if (it == b.cases.end()) return;
  const double py = r.at("rate").get<double>();
  // "tokenizer_train_paper64" -> "tokenizer_train_vs_python_paper64"
  const std::string stem = name.substr(0, name.size() - it->suffix.size()), suffix = it->suffix;
  b.figs.push_back({name + "_python", it->unit, "PyTorch " + r.at("torch").get<std::string>() + " eager, same step", py});
  b.figs.push_back({stem + "_vs_python" + suffix, "", "seqgan / Python", it->rate / py, true});
  double worst = 0;
  std::string detail;
  for (const auto& [k, v] : r.at("agreement").items()) {
    if (k == "indices_differing") {
      detail += (detail.empty() ? "" : ", ") + std::to_string(v.get<int64_t>()) + " codes differ";
      continue;
    }
    worst = std::max(worst, v.get<double>());
    detail += (detail.empty() ? "" : ", ") + k;
  }
  b.figs.push_back({name + "_python_max_diff", "", "largest |seqgan - Python| / max |seqgan|: " + detail, worst});
}

// The same cases in PyTorch eager mode: speed ratios, and how closely the outputs agree. Two
// rounds, seqgan then Python then both again, best of each: a busy minute of a shared machine
// then spoils neither side alone.
void reference_figures(Bench& b) {
  auto results = run_reference(b.cases, b.python_exe, b.reference_dir, b.case_dir);
  if (!results.is_array()) return;
  if (!b.quick) second_round(b, results);
  for (const auto& r : results) reference_case_figures(b, r);
}

void peak_memory_figure(Bench& b) {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  b.figs.push_back({"peak_memory", "MiB", "peak resident set of this process", static_cast<double>(ru.ru_maxrss) / 1024.0});
}

// The figures as a JSON list of {name, value, unit, ratio}, or as a Markdown table followed by
// the machine's summary.
void print_figures(const std::vector<Figure>& figs, bool json) {
  if (json) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& f : figs) {
      nlohmann::json j{{"name", f.name}, {"value", f.value}, {"unit", f.unit}};
      if (f.is_ratio) j["ratio"] = f.value;
      out.push_back(j);
    }
    std::cout << out.dump(2) << "\n";
    return;
  }
  std::cout << "| name | value | unit | what |\n|---|---:|---|---|\n";
  for (const auto& f : figs) {
    std::ostringstream v;
    if (f.value != 0 && std::abs(f.value) < 0.01)
      v << std::setprecision(1) << std::scientific << f.value;
    else
      v << std::setprecision(f.value >= 100 ? 0 : 3) << std::fixed << f.value;
    std::cout << "| " << f.name << " | " << v.str() << " | " << f.unit << " | " << f.note << " |\n";
  }
  std::cout << "\n" << machine_summary() << "\n";
}

int run_bench(const Args& args) {
  Bench b = bench_options(args);
  torch::manual_seed(0);
  const TempDir case_dir(b.python);
  b.case_dir = case_dir.path;
  {
    const BlasThreads blas(at::get_num_threads());  // every core for the products, as transformer training
    machine_figures(b);
    transformer_train_figures(b);
  }
  ar_sample_figures(b);
  nar_sample_figures(b);
  guidance_figures(b);
  transformer_ema_figures(b);
  fid_feature_figures(b);
  adm_eval_figures(b);
  tokenizer_train_figures(b);
  tokenizer_codec_figures(b);
  loader_figures(b);
  if (b.python) {
    loader_256_figures(b);
    reference_figures(b);
  }
  peak_memory_figure(b);
  print_figures(b.figs, args.flag("--json"));
  return 0;
}

}  // namespace

Command bench_command() {
  Command c;
  c.info.name = "bench";
  c.info.brief = "Measure the machine and seqgan's hot paths against it (and a PyTorch reference)";
  c.info.summary =
      "Measure the machine (float32 matrix-product peak, memory bandwidth) and seqgan's hot paths against it:\n"
      "transformer training, AR sampling with and without the cache, NAR sampling, FID features, the tokenizer,\n"
      "the data loader, peak memory";
  c.config_options("fmnist");
  c.flag("--json", "print a JSON list of {name, value, unit, ratio}");
  c.flag("--quick", "one short repetition per figure, smaller cases (for smoke tests)");
  c.flag("--no-python", "skip the comparison with the PyTorch eager reference (tools/reference)");
  c.option("--python", "EXE", "/usr/bin/python3", "the Python interpreter (with torch) that runs the reference");
  c.option("--reference", "DIR", "",
           "folder of bench.py and loader.py of a seqgan source tree (default: $SEQGAN_REFERENCE_DIR, else the source tree's tools/reference)");
  c.run = run_bench;
  return c;
}

}  // namespace seqgan::cli
