// Tokenizer forward/backward throughput (images per second) on random inputs.
#include <benchmark/benchmark.h>

#include "seqgan/config.h"
#include "seqgan/runtime.h"
#include "tokenizer/tokenizer.h"

using namespace seqgan;

namespace {
Config preset_at(const std::string& preset, int resolution) {
  Config c = make_preset(preset);
  c.data.resolution = resolution;
  return c;
}

void run_train_step(benchmark::State& state, const Config& c) {
  set_threads(0);
  torch::manual_seed(0);
  Tokenizer t(c.tokenizer, c.quantizer, c.data.channels);
  const int64_t batch = state.range(0);
  const auto x = torch::rand({batch, c.data.channels, c.data.resolution, c.data.resolution}) * 2 - 1;
  const auto step = [&] {
    auto out = t->forward(x);
    auto loss = (out.reconstruction - x).abs().mean() + out.quant.codebook_loss + out.quant.commit_loss + out.quant.entropy_loss;
    loss.backward();
    for (auto& p : t->parameters()) p.mutable_grad() = at::Tensor();
  };
  step();  // warm-up outside the timing: allocations and thread pools
  for (auto _ : state) step();
  state.counters["img/s"] = benchmark::Counter(static_cast<double>(batch * state.iterations()), benchmark::Counter::kIsRate);
}

void BM_TokenizerTrainStep_fmnist(benchmark::State& state) { run_train_step(state, make_preset("fmnist")); }
void BM_TokenizerTrainStep_paper64(benchmark::State& state) { run_train_step(state, preset_at("paper", 64)); }

void BM_TokenizerEncodeDecode_fmnist(benchmark::State& state) {
  set_threads(0);
  const Config c = make_preset("fmnist");
  Tokenizer t(c.tokenizer, c.quantizer, c.data.channels);
  t->eval();
  torch::NoGradGuard ng;
  const int64_t batch = state.range(0);
  const auto x = torch::rand({batch, 1, 32, 32}) * 2 - 1;
  for (auto _ : state) benchmark::DoNotOptimize(t->decode_indices(t->encode_indices(x)));
  state.counters["img/s"] = benchmark::Counter(static_cast<double>(batch * state.iterations()), benchmark::Counter::kIsRate);
}
}  // namespace

BENCHMARK(BM_TokenizerTrainStep_fmnist)->Arg(64)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_TokenizerTrainStep_paper64)->Arg(8)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_TokenizerEncodeDecode_fmnist)->Arg(256)->Unit(benchmark::kMillisecond)->UseRealTime();
