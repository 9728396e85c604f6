// LPIPS (Zhang et al. 2018), the VGG variant of the lpips package, version 0.1: torchvision's
// VGG16 convolutions and one learned non-negative 1x1 linear layer per tap.
//
//   d(x, y) = sum over l of mean over (h, w) of  w_l . (f_l(x) / (|f_l(x)| + 1e-10) - same for y)^2
//
// where f_l are relu1_2, relu2_2, relu3_3, relu4_3 and relu5_3 of the VGG on the input shifted and
// scaled per channel (shift -0.030, -0.088, -0.188; scale 0.458, 0.448, 0.450; images in [-1, 1]),
// the norm is over channels at each position, and w_l is the layer's [C_l] weight. Grey images
// are repeated to three channels. tools/convert_lpips.py writes the weight file from torchvision's
// vgg16 state dict and the lpips package's vgg.pth.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <string>

namespace seqgan {

class LpipsImpl : public torch::nn::Module {
 public:
  static constexpr int kTaps = 5;

  // Weights are torch's default initialisation: load real ones before use (load_lpips).
  LpipsImpl();

  // x, y: [B, 1|3, H, W] in [-1, 1], the same shape. Returns the distances [B] (float32).
  at::Tensor forward(const at::Tensor& x, const at::Tensor& y);

  torch::nn::Sequential features{nullptr};  // torchvision's vgg16().features, names "features.N.*"
  std::vector<torch::nn::Conv2d> lin;       // "lin0.weight" ... "lin4.weight", [1, C_l, 1, 1]
};
TORCH_MODULE(Lpips);

// Loads the weights written by tools/convert_lpips.py (metadata kind "lpips-vgg"), strictly: a
// missing file or tensor is an error naming the file and how to make it. Frozen, in eval mode,
// on `device`.
Lpips load_lpips(const std::string& path, const torch::Device& device = torch::kCPU);

}  // namespace seqgan
