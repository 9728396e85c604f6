// Tokenizer forward/backward throughput (images per second) on random inputs.
#include <benchmark/benchmark.h>
#include <torch/cuda.h>

#include "core/autocast.h"
#include "losses/discriminator.h"
#include "losses/perceptual.h"
#include "features/vgg16.h"

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
// A whole phase-1 step of the paper's tokenizer at 256x256 on the GPU, as the trainer does it:
// bf16 autocast; L1, VQ and entropy terms, the semantic perceptual loss through VGG16 (random
// weights: the speed does not depend on them) and the generator's adversarial term; then the
// discriminator's step on real and reconstructed images; Adam on both. Skipped without CUDA.
void BM_TokenizerPhase1Step_paper256_cuda(benchmark::State& state) {
  if (!torch::cuda::is_available()) {
    state.SkipWithError("no CUDA device");
    return;
  }
  const Config c = make_preset("paper");
  const torch::Device dev(torch::kCUDA);
  torch::manual_seed(0);
  Tokenizer t(c.tokenizer, c.quantizer, c.data.channels);
  Discriminator d(c.discriminator, c.data.channels, c.data.resolution);
  auto vgg = std::make_shared<Vgg16>();
  vgg->freeze();
  PerceptualLoss perceptual(PerceptualOptions::from_config(c.perceptual, c.perceptual.alpha), vgg);
  t->to(dev), d->to(dev), perceptual->to(dev);
  torch::optim::Adam opt_g(t->parameters(), torch::optim::AdamOptions(1e-4));
  torch::optim::Adam opt_d(d->parameters(), torch::optim::AdamOptions(1e-4));
  const int64_t batch = state.range(0);
  const auto x = (torch::rand({batch, 3, 256, 256}) * 2 - 1).to(dev);
  const auto step = [&] {
    opt_g.zero_grad();
    at::Tensor rec;
    {
      AutocastGuard ac(true);
      auto out = t->forward(x);
      rec = out.reconstruction;
      auto loss = (rec - x).abs().mean() + out.quant.codebook_loss + out.quant.commit_loss + out.quant.entropy_loss +
                  perceptual(rec, x).loss + c.discriminator.adv_weight * generator_loss(d(rec));
      loss.backward();
    }
    opt_g.step();
    opt_d.zero_grad();
    {
      AutocastGuard ac(true);
      discriminator_loss(d(x), d(rec.detach())).backward();
    }
    opt_d.step();
  };
  step();  // warm-up: cuDNN algorithm choice, allocations
  torch::cuda::synchronize();
  for (auto _ : state) {
    step();
    torch::cuda::synchronize();
  }
  state.counters["img/s"] = benchmark::Counter(static_cast<double>(batch * state.iterations()), benchmark::Counter::kIsRate);
}
}  // namespace

BENCHMARK(BM_TokenizerPhase1Step_paper256_cuda)->Arg(8)->Arg(16)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(3.0);
BENCHMARK(BM_TokenizerTrainStep_fmnist)->Arg(64)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_TokenizerTrainStep_paper64)->Arg(8)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_TokenizerEncodeDecode_fmnist)->Arg(256)->Unit(benchmark::kMillisecond)->UseRealTime();
