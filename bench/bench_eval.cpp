// FID feature extraction: the pytorch-fid InceptionV3 (random weights: the speed does not depend
// on them) on 32x32 grey images resized to 299, on the GPU when there is one (batch 200), else
// on the CPU (batch 8). Reports images per second.
#include <benchmark/benchmark.h>
#include <torch/cuda.h>

#include "features/inception.h"
#include "seqgan/runtime.h"

namespace {

void BM_InceptionFeatures(benchmark::State& state) {
  seqgan::set_threads(0);
  const bool cuda = torch::cuda::is_available();
  const torch::Device device = cuda ? torch::kCUDA : torch::kCPU;
  const int64_t batch = cuda ? 200 : 8;
  auto net = std::make_shared<seqgan::InceptionV3Fid>();
  net->freeze();
  net->to(device);
  torch::NoGradGuard ng;
  const auto x = (at::rand({batch, 1, 32, 32}) * 2 - 1).to(device);
  net->taps(x, {"features", "logit"});  // warm-up (cuDNN algorithm choice, allocations)
  for (auto _ : state) {
    auto out = net->taps(x, {"features", "logit"});
    if (cuda) torch::cuda::synchronize();
    benchmark::DoNotOptimize(out.at("features").data_ptr());
  }
  state.SetItemsProcessed(state.iterations() * batch);
  state.SetLabel(cuda ? "cuda, batch 200" : "cpu, batch 8");
}
BENCHMARK(BM_InceptionFeatures)->Unit(benchmark::kMillisecond)->MinTime(2.0)->UseRealTime();

}  // namespace
