// Paper-scale transformer figures on a GPU (skipped without CUDA): the measured bf16 matrix-product
// peak, a 172M AR training step under bf16 autocast (tokens/s, achieved TFLOP/s and the fraction
// of that peak), 64 images by NAR sampling in 12 steps and by AR sampling of 256 tokens with the
// cache (seconds per call), and the peak memory of each (PyTorch's caching allocator).
#include <benchmark/benchmark.h>
#include <torch/cuda.h>

#include <chrono>

#ifdef SEQGAN_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif

#include "core/autocast.h"
#include "seqgan/config.h"
#include "train/optim.h"
#include "transformer/sampling.h"
#include "transformer/transformer.h"

using namespace seqgan;

namespace {

bool need_cuda(benchmark::State& state) {
  if (torch::cuda::is_available()) return true;
  state.SkipWithError("no CUDA device");
  return false;
}

void reset_peak_memory() {
#ifdef SEQGAN_WITH_CUDA
  c10::cuda::CUDACachingAllocator::resetPeakStats(0);
#endif
}

// Peak bytes allocated since reset_peak_memory(), in GiB (0 when not built with CUDA headers).
double peak_memory_gib() {
#ifdef SEQGAN_WITH_CUDA
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(0);
  // Entry 0 of the per-pool statistics is the aggregate over all pools (StatType::AGGREGATE,
  // whose namespace moved between libtorch versions).
  return static_cast<double>(stats.allocated_bytes[0].peak) / (1024.0 * 1024.0 * 1024.0);
#else
  return 0.0;
#endif
}

// TFLOP/s of an n x n bf16 matrix product, best of 5 timed batches of 10.
double bf16_peak_tflops(int64_t n = 8192) {
  const auto opt = at::TensorOptions(at::kBFloat16).device(at::kCUDA);
  const auto a = at::randn({n, n}, opt), b = at::randn({n, n}, opt);
  at::mm(a, b);
  torch::cuda::synchronize();
  double best = 0;
  for (int r = 0; r < 5; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < 10; ++i) at::mm(a, b);
    torch::cuda::synchronize();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, 10 * 2.0 * static_cast<double>(n * n * n) / s / 1e12);
  }
  return best;
}

TokenSpace paper_space() {
  TokenSpace s;
  s.codebook_size = 1024;
  s.length = 256;
  s.num_classes = 1000;
  return s;
}

void BM_MatmulPeak_bf16_cuda(benchmark::State& state) {
  if (!need_cuda(state)) return;
  double tflops = 0;
  for (auto _ : state) tflops = bf16_peak_tflops();
  state.counters["TFLOP/s"] = tflops;
}

// One AR training step of the paper's transformer (172M; paper-large: 305M) under bf16 autocast:
// forward, cross-entropy, backward, AdamW (seqgan's, as train-transformer uses).
void BM_TransformerTrainStep_paper_cuda(benchmark::State& state) {
  if (!need_cuda(state)) return;
  const Config c = make_preset(state.range(1) ? "paper-large" : "paper");
  const TokenSpace space = paper_space();
  const torch::Device dev(torch::kCUDA);
  torch::manual_seed(0);
  Transformer m(c.transformer, space, true);
  m->to(dev);
  m->train();
  Adam opt({1e-4, 0.9, 0.96, 1e-8, 0.01});
  for (const auto& p : m->named_parameters()) opt.add(p.key(), p.value(), decays(p.key()));
  const int64_t batch = state.range(0);
  const auto cond = at::randint(space.num_classes, {batch}, at::TensorOptions(at::kLong).device(dev));
  const auto tokens = at::randint(space.codebook_size, {batch, space.length}, at::TensorOptions(at::kLong).device(dev));
  const auto step = [&] {
    opt.zero_grad();
    {
      AutocastGuard ac(true);
      const auto logits = m->forward(cond, tokens.slice(1, 0, space.length - 1));
      at::cross_entropy_loss(logits.reshape({-1, space.codebook_size}).to(at::kFloat), tokens.reshape({-1})).backward();
    }
    opt.step();
  };
  const double peak = bf16_peak_tflops();
  step();  // warm-up: kernels, allocations
  torch::cuda::synchronize();
  reset_peak_memory();
  for (auto _ : state) {
    step();
    torch::cuda::synchronize();
  }
  int64_t weights = 0;
  for (const auto& p : m->named_parameters())
    if (p.key().find("emb") == std::string::npos && p.value().dim() == 2) weights += p.value().numel();
  const double flops_per_token =
      6.0 * static_cast<double>(weights) + 12.0 * c.transformer.layers * space.length * c.transformer.width;
  state.counters["tokens/s"] =
      benchmark::Counter(static_cast<double>(batch * space.length * state.iterations()), benchmark::Counter::kIsRate);
  state.counters["TFLOP/s"] = benchmark::Counter(flops_per_token * static_cast<double>(batch * space.length) *
                                                     static_cast<double>(state.iterations()) / 1e12,
                                                 benchmark::Counter::kIsRate);
  state.counters["bf16_peak_TFLOP/s"] = peak;
  state.counters["peak_GiB"] = peak_memory_gib();
  state.SetLabel(c.preset);
}

// 64 class-conditional images from the paper's 172M transformer: NAR in sample.steps (12) steps,
// or AR over 256 tokens with the key/value cache; with and without bf16 autocast.
void sample_64(benchmark::State& state, bool causal) {
  if (!need_cuda(state)) return;
  const Config c = make_preset("paper");
  const TokenSpace space = paper_space();
  const torch::Device dev(torch::kCUDA);
  torch::manual_seed(0);
  Transformer m(c.transformer, space, causal);
  m->to(dev);
  m->eval();
  const bool bf16 = state.range(0) != 0;
  const int64_t batch = 64;
  const auto cond = at::arange(batch, at::kLong) % space.num_classes;
  auto gen = make_generator(0);
  ArSampleOptions ar;
  ar.top_p = 0.92;
  const auto run = [&] {
    AutocastGuard ac(bf16);
    return causal ? sample_ar(*m, cond, batch, ar, gen) : sample_nar(*m, cond, batch, nar_options(c.sample), gen);
  };
  run();  // warm-up
  torch::cuda::synchronize();
  reset_peak_memory();
  for (auto _ : state) {
    benchmark::DoNotOptimize(run());
    torch::cuda::synchronize();
  }
  state.counters["img/s"] = benchmark::Counter(static_cast<double>(batch * state.iterations()), benchmark::Counter::kIsRate);
  state.counters["peak_GiB"] = peak_memory_gib();
  state.SetLabel(std::string(causal ? "AR 256 tokens" : "NAR 12 steps") + (bf16 ? ", bf16 autocast" : ", float32"));
}

void BM_NarSample64_paper_cuda(benchmark::State& state) { sample_64(state, false); }
void BM_ArSample64_paper_cuda(benchmark::State& state) { sample_64(state, true); }

}  // namespace

BENCHMARK(BM_MatmulPeak_bf16_cuda)->Iterations(1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_TransformerTrainStep_paper_cuda)
    ->ArgNames({"batch", "large"})
    ->Args({32, 0})
    ->Args({64, 0})
    ->Args({32, 1})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MinTime(3.0);
BENCHMARK(BM_NarSample64_paper_cuda)->ArgName("bf16")->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2.0);
BENCHMARK(BM_ArSample64_paper_cuda)->ArgName("bf16")->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2.0);
