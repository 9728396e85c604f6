// AR sampling speed (tokens per second) with the key/value cache against recomputing the whole
// prefix at every step: 256 tokens (a 16x16 latent grid), K = 1024, 10 classes, batch 1 and 16.
//
// The model defaults to the fmnist transformer's shape (4 layers, width 256) so that the
// recompute runs finish on a CPU; SEQGAN_BENCH_TRANSFORMER=paper uses the paper's 172M model
// (a GPU job). Compare the two rows of one batch size within one run.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <string>

#include "seqgan/config.h"
#include "seqgan/runtime.h"
#include "train/run.h"
#include "transformer/sampling.h"
#include "transformer/transformer.h"

using namespace seqgan;

namespace {

void BM_ArSample(benchmark::State& state) {
  set_threads(0);
  const char* which = std::getenv("SEQGAN_BENCH_TRANSFORMER");
  const std::string preset = which ? which : "fmnist";
  const Config c = make_preset(preset);
  TokenSpace space;
  space.codebook_size = 1024;
  space.length = 256;
  space.num_classes = 10;
  torch::manual_seed(0);
  const auto device = to_device(resolve_device("auto"));
  Transformer m(c.transformer, space, true);
  m->to(device);
  m->eval();
  const int64_t batch = state.range(0);
  ArSampleOptions o;
  o.use_cache = state.range(1) != 0;
  o.top_p = 0.92;
  const auto cond = at::arange(batch, at::kLong) % 10;
  auto gen = make_generator(0);
  {
    // Warm-up outside the timing: allocator, kernels, cuBLAS handles.
    torch::NoGradGuard ng;
    m->forward(cond.to(device), at::zeros({batch, 8}, at::TensorOptions(at::kLong).device(device)));
    at::Tensor first;
    auto cache = m->start(cond.to(device), &first);
    m->step(cache, first.argmax(-1));
  }
  for (auto _ : state) benchmark::DoNotOptimize(sample_ar(*m, cond, batch, o, gen));
  state.SetLabel(preset + (o.use_cache ? " cache" : " recompute") + " " + device.str());
  state.counters["tokens/s"] =
      benchmark::Counter(static_cast<double>(batch * space.length * state.iterations()), benchmark::Counter::kIsRate);
}

}  // namespace

BENCHMARK(BM_ArSample)
    ->ArgNames({"batch", "cache"})
    ->Args({1, 1})
    ->Args({1, 0})
    ->Args({16, 1})
    ->Args({16, 0})
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
