#include "features/lpips.h"

#include <filesystem>

#include "features/vgg16.h"
#include "seqgan/checkpoint.h"
#include "seqgan/error.h"
#include "seqgan/safetensors.h"

namespace seqgan {
namespace {

namespace nn = torch::nn;

constexpr const char* kHint =
    "convert the weights once with `python3 tools/convert_lpips.py vgg16-397923af.pth vgg.pth lpips.safetensors` "
    "(torchvision's VGG16 and the lpips package's v0.1 vgg.pth) and set eval.lpips_weights to the result";

at::Tensor unit_channels(const at::Tensor& f) { return f / (f.pow(2).sum(1, /*keepdim=*/true).sqrt() + 1e-10); }

}  // namespace

LpipsImpl::LpipsImpl() {
  // Only the convolutions up to relu5_3 (index 29) are used; the final max-pool has no weights.
  features = register_module("features", vgg16_features());
  const int64_t channels[kTaps] = {64, 128, 256, 512, 512};
  for (int l = 0; l < kTaps; ++l)
    lin.push_back(register_module("lin" + std::to_string(l), nn::Conv2d(nn::Conv2dOptions(channels[l], 1, 1).bias(false))));
}

at::Tensor LpipsImpl::forward(const at::Tensor& x, const at::Tensor& y) {
  SEQGAN_CHECK_HINT(x.dim() == 4 && (x.size(1) == 1 || x.size(1) == 3) && x.sizes() == y.sizes(),
                    "pass two image batches [B, 1|3, H, W] of the same shape",
                    "LPIPS: expected two image batches of one shape [B, 1|3, H, W], found ", x.sizes(), " and ", y.sizes());
  const auto opts = x.options().dtype(at::kFloat);
  const at::Tensor shift = torch::tensor({-0.030, -0.088, -0.188}, opts).view({1, 3, 1, 1});
  const at::Tensor scale = torch::tensor({0.458, 0.448, 0.450}, opts).view({1, 3, 1, 1});
  auto prepare = [&](const at::Tensor& t) {
    const at::Tensor rgb = t.size(1) == 1 ? t.expand({-1, 3, -1, -1}) : t;
    return (rgb.to(at::kFloat) - shift) / scale;
  };
  // Both images through the network as one batch: [2B, 3, H, W].
  at::Tensor h = at::cat({prepare(x), prepare(y)});
  const int64_t b = x.size(0);
  at::Tensor total = at::zeros({b}, opts);
  int tap = 0, index = 0;
  for (auto it = features->begin(); tap < kTaps; ++it, ++index) {
    h = it->forward(h);
    if (index != Vgg16::kTapIndices[tap]) continue;
    const at::Tensor f = unit_channels(h);
    const at::Tensor diff = (f.slice(0, 0, b) - f.slice(0, b, 2 * b)).pow(2);  // [B, C_l, h, w]
    total = total + lin[tap]->forward(diff).mean({1, 2, 3});                  // [B]
    ++tap;
  }
  return total;
}

Lpips load_lpips(const std::string& path, const torch::Device& device) {
  SEQGAN_CHECK_HINT(!path.empty(), kHint, "no LPIPS weight file given (random weights are never used)");
  SEQGAN_CHECK_HINT(std::filesystem::is_regular_file(path), kHint, "the LPIPS weight file '", path, "' does not exist");
  const safetensors::Header header = safetensors::read_header(path);
  const auto kind = header.metadata.find("kind");
  SEQGAN_CHECK_HINT(kind != header.metadata.end() && kind->second == "lpips-vgg", kHint, path,
                    ": expected LPIPS weights (metadata kind 'lpips-vgg'), found ",
                    kind == header.metadata.end() ? std::string("no kind") : "kind '" + kind->second + "'");
  Lpips net;
  load_state_dict(*net, safetensors::load(path).tensors, {}, path);
  net->eval();
  for (auto& p : net->parameters()) p.set_requires_grad(false);
  net->to(device);
  return net;
}

}  // namespace seqgan
