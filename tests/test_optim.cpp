#include <gtest/gtest.h>

#include "train/optim.h"

using namespace seqgan;

namespace {
// The largest difference between two parameter trajectories, relative to the distance travelled.
double relative_gap(const at::Tensor& mine, const at::Tensor& theirs, const at::Tensor& start) {
  return (mine - theirs).abs().max().item<double>() / std::max((theirs - start).abs().max().item<double>(), 1e-12);
}
}  // namespace

// seqgan's Adam (one loop per tensor on the CPU, ATen operations elsewhere) against libtorch's Adam
// and AdamW, on a matrix, a channels-last convolution weight and a vector, with weight decay only
// where asked for.
TEST(Adam, MatchesLibtorchAdamAndAdamWOverTenSteps) {
  torch::manual_seed(0);
  const std::vector<at::Tensor> start{at::randn({40, 33}), at::randn({8, 6, 3, 3}).contiguous(at::MemoryFormat::ChannelsLast),
                                      at::randn({70001})};
  const std::vector<bool> decay{true, true, false};
  std::vector<at::Tensor> mine, ref_decay, ref_plain;
  for (const auto& s : start) {
    mine.push_back(s.clone().requires_grad_());
    ref_decay.push_back(s.clone().requires_grad_());
    ref_plain.push_back(s.clone().requires_grad_());
  }
  Adam opt({1e-2, 0.9, 0.99, 1e-8, 0.1});
  for (size_t i = 0; i < mine.size(); ++i) opt.add("p" + std::to_string(i), mine[i], decay[i]);
  torch::optim::AdamW adamw({ref_decay[0], ref_decay[1]}, torch::optim::AdamWOptions(1e-2).betas({0.9, 0.99}).eps(1e-8).weight_decay(0.1));
  torch::optim::Adam adam({ref_plain[2]}, torch::optim::AdamOptions(1e-2).betas({0.9, 0.99}).eps(1e-8));
  for (int step = 0; step < 10; ++step) {
    std::vector<at::Tensor> grads;
    for (const auto& s : start) grads.push_back(at::randn_like(s) * (step + 1));
    opt.zero_grad();
    adamw.zero_grad();
    adam.zero_grad();
    for (size_t i = 0; i < mine.size(); ++i) {
      mine[i].mutable_grad() = grads[i].clone();
      (i < 2 ? ref_decay : ref_plain)[i].mutable_grad() = grads[i].clone();
    }
    opt.step();
    adamw.step();
    adam.step();
  }
  EXPECT_EQ(opt.steps(), 10);
  for (size_t i = 0; i < mine.size(); ++i) {
    SCOPED_TRACE("parameter " + std::to_string(i));
    const auto& ref = i < 2 ? ref_decay[i] : ref_plain[i];
    EXPECT_LT(relative_gap(mine[i].detach(), ref.detach(), start[i]), 1e-5);
    EXPECT_GT((mine[i] - start[i]).abs().max().item<double>(), 0.05);  // it moved: 10 steps of about lr
  }
  EXPECT_TRUE(mine[1].is_contiguous(at::MemoryFormat::ChannelsLast));
}
