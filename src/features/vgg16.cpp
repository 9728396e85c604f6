// VGG16 as torchvision builds it (torchvision/models/vgg.py, cfg "D"); the parity test compares
// every tap and the logits with torchvision's own forward pass.
#include "features/vgg16.h"

#include "seqgan/error.h"

namespace seqgan {
namespace {

namespace nn = torch::nn;

// Output channels of the convolutions of each stage; a max-pool closes every stage.
const std::vector<std::vector<int64_t>> kStages{{64, 64}, {128, 128}, {256, 256, 256}, {512, 512, 512}, {512, 512, 512}};

}  // namespace

torch::nn::Sequential vgg16_features() {
  nn::Sequential f;
  int64_t in = 3;
  for (const auto& stage : kStages) {
    for (int64_t out : stage) {
      f->push_back(nn::Conv2d(nn::Conv2dOptions(in, out, 3).padding(1)));
      // Not in place (torchvision's is): the tap just before must keep its value for autograd.
      f->push_back(nn::ReLU());
      in = out;
    }
    f->push_back(nn::MaxPool2d(nn::MaxPool2dOptions(2).stride(2)));
  }
  return f;
}

Vgg16::Vgg16() {
  features = register_module("features", vgg16_features());
  avgpool = register_module("avgpool", nn::AdaptiveAvgPool2d(nn::AdaptiveAvgPool2dOptions({7, 7})));
  classifier = register_module("classifier", nn::Sequential(nn::Linear(512 * 7 * 7, 4096), nn::ReLU(), nn::Dropout(0.5),
                                                            nn::Linear(4096, 4096), nn::ReLU(), nn::Dropout(0.5),
                                                            nn::Linear(4096, kNumClasses)));
}

at::Tensor Vgg16::preprocess(const at::Tensor& x) {
  SEQGAN_CHECK_HINT(x.dim() == 4 && (x.size(1) == 1 || x.size(1) == 3), "pass images as [B, C, H, W] with C = 1 or 3",
                    "expected a [B, 1|3, H, W] image batch, found shape ", x.sizes());
  SEQGAN_CHECK(x.is_floating_point(), "expected floating-point images in [-1, 1], found ", x.scalar_type());
  const auto opts = x.options();
  const at::Tensor mean = torch::tensor({0.485, 0.456, 0.406}, opts).view({1, 3, 1, 1});
  const at::Tensor std = torch::tensor({0.229, 0.224, 0.225}, opts).view({1, 3, 1, 1});
  at::Tensor rgb = x.size(1) == 1 ? x.expand({-1, 3, -1, -1}) : x;  // [B, 1, H, W] -> [B, 3, H, W]
  return ((rgb + 1) * 0.5 - mean) / std;
}

std::map<std::string, at::Tensor> Vgg16::taps(const at::Tensor& x, const std::vector<std::string>& names) {
  const std::vector<int> positions = tap_positions(names);
  std::map<std::string, at::Tensor> out;
  if (positions.empty()) return out;
  const int deepest = *std::max_element(positions.begin(), positions.end());
  const bool want_logit = deepest == static_cast<int>(kTapIndices.size());
  // The logit needs the final max-pool too (index 30); a ReLU tap needs features up to its index.
  const int last = want_logit ? static_cast<int>(features->size()) - 1 : kTapIndices[deepest];

  auto wanted = [&](int tap) { return std::find(positions.begin(), positions.end(), tap) != positions.end(); };
  at::Tensor h = preprocess(x);  // [B, 3, H, W]
  int index = 0;
  for (auto it = features->begin(); index <= last; ++it, ++index) {
    h = it->forward(h);
    for (size_t tap = 0; tap < kTapIndices.size(); ++tap)
      if (kTapIndices[tap] == index && wanted(static_cast<int>(tap))) out[standard_tap_names()[tap]] = h;
  }
  if (want_logit) {
    h = avgpool(h).flatten(1);  // [B, 512, h, w] -> [B, 512, 7, 7] -> [B, 25088]
    out["logit"] = classifier->forward(h);  // [B, 1000]
  }
  return out;
}

}  // namespace seqgan
