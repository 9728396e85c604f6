// The FID InceptionV3 (see inception.h). Module and parameter names are torchvision's, so the
// converted pytorch-fid state dict loads by name; the parity test compares features and logits
// with torchvision's Inception3 adapted the same way.
#include "features/inception.h"

#include <algorithm>
#include <cmath>

#include "seqgan/error.h"

namespace seqgan {
namespace {

namespace nn = torch::nn;
namespace F = torch::nn::functional;

// Convolution without bias, batch norm (eps 0.001, as the TensorFlow graph), ReLU.
struct BasicConvImpl : nn::Module {
  nn::Conv2d conv{nullptr};
  nn::BatchNorm2d bn{nullptr};
  BasicConvImpl(int64_t in, int64_t out, std::array<int64_t, 2> kernel, std::array<int64_t, 2> padding = {0, 0},
                int64_t stride = 1) {
    conv = register_module(
        "conv", nn::Conv2d(nn::Conv2dOptions(in, out, {kernel[0], kernel[1]}).padding({padding[0], padding[1]}).stride(stride).bias(false)));
    bn = register_module("bn", nn::BatchNorm2d(nn::BatchNorm2dOptions(out).eps(0.001)));
  }
  at::Tensor forward(const at::Tensor& x) { return torch::relu(bn(conv(x))); }
};
TORCH_MODULE(BasicConv);

BasicConv conv1(int64_t in, int64_t out) { return BasicConv(in, out, std::array<int64_t, 2>{1, 1}); }
BasicConv conv3(int64_t in, int64_t out, int64_t padding = 0, int64_t stride = 1) {
  return BasicConv(in, out, std::array<int64_t, 2>{3, 3}, std::array<int64_t, 2>{padding, padding}, stride);
}
BasicConv conv1x7(int64_t in, int64_t out) { return BasicConv(in, out, std::array<int64_t, 2>{1, 7}, std::array<int64_t, 2>{0, 3}); }
BasicConv conv7x1(int64_t in, int64_t out) { return BasicConv(in, out, std::array<int64_t, 2>{7, 1}, std::array<int64_t, 2>{3, 0}); }
BasicConv conv1x3(int64_t in, int64_t out) { return BasicConv(in, out, std::array<int64_t, 2>{1, 3}, std::array<int64_t, 2>{0, 1}); }
BasicConv conv3x1(int64_t in, int64_t out) { return BasicConv(in, out, std::array<int64_t, 2>{3, 1}, std::array<int64_t, 2>{1, 0}); }

at::Tensor avg_pool_no_pad(const at::Tensor& x) {
  return F::avg_pool2d(x, F::AvgPool2dFuncOptions(3).stride(1).padding(1).count_include_pad(false));
}
at::Tensor max_pool_3s2(const at::Tensor& x) { return F::max_pool2d(x, F::MaxPool2dFuncOptions(3).stride(2)); }

// One Mixed block: torchvision's InceptionA..E with the branch names it uses.
class MixedImpl : public nn::Module {
 public:
  enum class Kind { A, B, C, D, E, E_max };

  MixedImpl(Kind kind, int64_t in, int64_t option) : kind_(kind) {
    switch (kind) {
      case Kind::A:  // option: pool features
        add("branch1x1", conv1(in, 64));
        add("branch5x5_1", conv1(in, 48));
        add("branch5x5_2", BasicConv(48, 64, std::array<int64_t, 2>{5, 5}, std::array<int64_t, 2>{2, 2}));
        add("branch3x3dbl_1", conv1(in, 64));
        add("branch3x3dbl_2", conv3(64, 96, 1));
        add("branch3x3dbl_3", conv3(96, 96, 1));
        add("branch_pool", conv1(in, option));
        break;
      case Kind::B:
        add("branch3x3", conv3(in, 384, 0, 2));
        add("branch3x3dbl_1", conv1(in, 64));
        add("branch3x3dbl_2", conv3(64, 96, 1));
        add("branch3x3dbl_3", conv3(96, 96, 0, 2));
        break;
      case Kind::C:  // option: channels of the 7x7 branches
        add("branch1x1", conv1(in, 192));
        add("branch7x7_1", conv1(in, option));
        add("branch7x7_2", conv1x7(option, option));
        add("branch7x7_3", conv7x1(option, 192));
        add("branch7x7dbl_1", conv1(in, option));
        add("branch7x7dbl_2", conv7x1(option, option));
        add("branch7x7dbl_3", conv1x7(option, option));
        add("branch7x7dbl_4", conv7x1(option, option));
        add("branch7x7dbl_5", conv1x7(option, 192));
        add("branch_pool", conv1(in, 192));
        break;
      case Kind::D:
        add("branch3x3_1", conv1(in, 192));
        add("branch3x3_2", conv3(192, 320, 0, 2));
        add("branch7x7x3_1", conv1(in, 192));
        add("branch7x7x3_2", conv1x7(192, 192));
        add("branch7x7x3_3", conv7x1(192, 192));
        add("branch7x7x3_4", conv3(192, 192, 0, 2));
        break;
      case Kind::E:
      case Kind::E_max:
        add("branch1x1", conv1(in, 320));
        add("branch3x3_1", conv1(in, 384));
        add("branch3x3_2a", conv1x3(384, 384));
        add("branch3x3_2b", conv3x1(384, 384));
        add("branch3x3dbl_1", conv1(in, 448));
        add("branch3x3dbl_2", conv3(448, 384, 1));
        add("branch3x3dbl_3a", conv1x3(384, 384));
        add("branch3x3dbl_3b", conv3x1(384, 384));
        add("branch_pool", conv1(in, 192));
        break;
    }
  }

  at::Tensor forward(const at::Tensor& x) {
    switch (kind_) {
      case Kind::A:
        return at::cat({b("branch1x1", x), b("branch5x5_2", b("branch5x5_1", x)),
                        b("branch3x3dbl_3", b("branch3x3dbl_2", b("branch3x3dbl_1", x))),
                        b("branch_pool", avg_pool_no_pad(x))},
                       1);
      case Kind::B:
        return at::cat({b("branch3x3", x), b("branch3x3dbl_3", b("branch3x3dbl_2", b("branch3x3dbl_1", x))), max_pool_3s2(x)}, 1);
      case Kind::C: {
        const auto b7 = b("branch7x7_3", b("branch7x7_2", b("branch7x7_1", x)));
        auto d = b("branch7x7dbl_1", x);
        for (const char* n : {"branch7x7dbl_2", "branch7x7dbl_3", "branch7x7dbl_4", "branch7x7dbl_5"}) d = b(n, d);
        return at::cat({b("branch1x1", x), b7, d, b("branch_pool", avg_pool_no_pad(x))}, 1);
      }
      case Kind::D: {
        const auto b3 = b("branch3x3_2", b("branch3x3_1", x));
        auto b7 = b("branch7x7x3_1", x);
        for (const char* n : {"branch7x7x3_2", "branch7x7x3_3", "branch7x7x3_4"}) b7 = b(n, b7);
        return at::cat({b3, b7, max_pool_3s2(x)}, 1);
      }
      case Kind::E:
      case Kind::E_max: {
        const auto t = b("branch3x3_1", x);
        const auto b3 = at::cat({b("branch3x3_2a", t), b("branch3x3_2b", t)}, 1);
        const auto u = b("branch3x3dbl_2", b("branch3x3dbl_1", x));
        const auto d = at::cat({b("branch3x3dbl_3a", u), b("branch3x3dbl_3b", u)}, 1);
        const auto pooled = kind_ == Kind::E ? avg_pool_no_pad(x)
                                             : F::max_pool2d(x, F::MaxPool2dFuncOptions(3).stride(1).padding(1));
        return at::cat({b("branch1x1", x), b3, d, b("branch_pool", pooled)}, 1);
      }
    }
    return x;
  }

 // One branch's output alone.
  at::Tensor b(const std::string& name, const at::Tensor& x) { return branches_.at(name)->forward(x); }

 private:
  void add(const std::string& name, BasicConv m) { branches_[name] = register_module(name, m); }

  Kind kind_;
  std::map<std::string, std::shared_ptr<BasicConvImpl>> branches_;
};
TORCH_MODULE(Mixed);

}  // namespace

InceptionV3Fid::InceptionV3Fid() {
  const std::vector<std::pair<std::string, BasicConv>> stem{
      {"Conv2d_1a_3x3", conv3(3, 32, 0, 2)}, {"Conv2d_2a_3x3", conv3(32, 32)}, {"Conv2d_2b_3x3", conv3(32, 64, 1)},
      {"Conv2d_3b_1x1", conv1(64, 80)},      {"Conv2d_4a_3x3", conv3(80, 192)}};
  for (const auto& [name, m] : stem) stem_.push_back(register_module(name, m));
  using K = MixedImpl::Kind;
  const std::vector<std::tuple<std::string, K, int64_t, int64_t>> mixed{
      {"Mixed_5b", K::A, 192, 32},  {"Mixed_5c", K::A, 256, 64},  {"Mixed_5d", K::A, 288, 64},
      {"Mixed_6a", K::B, 288, 0},   {"Mixed_6b", K::C, 768, 128}, {"Mixed_6c", K::C, 768, 160},
      {"Mixed_6d", K::C, 768, 160}, {"Mixed_6e", K::C, 768, 192}, {"Mixed_7a", K::D, 768, 0},
      {"Mixed_7b", K::E, 1280, 0},  {"Mixed_7c", K::E_max, 2048, 0}};
  for (const auto& [name, kind, in, option] : mixed) mixed_.push_back(register_module(name, Mixed(kind, in, option)));
  fc_ = register_module("fc", nn::Linear(kFeatures, kNumClasses));
}

// TensorFlow 1's legacy bilinear resize (align_corners = false, no half-pixel centres), which the
// InceptionV3 graph of ADM's evaluator applies: output pixel o samples the input at o * in / out,
// between floor() and the next pixel (clamped at the edge). As an [out, in] matrix.
namespace {

at::Tensor tf1_resize_matrix(int64_t in, int64_t out, const at::TensorOptions& options) {
  at::Tensor m = at::zeros({out, in}, at::kDouble);
  auto a = m.accessor<double, 2>();
  const double scale = static_cast<double>(in) / static_cast<double>(out);
  for (int64_t o = 0; o < out; ++o) {
    const double src = static_cast<double>(o) * scale;
    const int64_t top = std::min(static_cast<int64_t>(std::floor(src)), in - 1);
    const int64_t bottom = std::min(top + 1, in - 1);
    const double lerp = src - static_cast<double>(top);
    a[o][top] += 1.0 - lerp;
    a[o][bottom] += lerp;
  }
  return m.to(options);
}

}  // namespace

std::string InceptionV3Fid::resize_description(Resize resize) {
  return resize == Resize::kAdm
             ? "TF1 bilinear to 299x299 (align_corners=false, no half-pixel centres), pixels (u-128)/128: ADM's evaluator"
             : "bilinear to 299x299 (align_corners=false), pixels u/127.5-1: pytorch-fid";
}

at::Tensor InceptionV3Fid::fc_weight() const { return fc_->weight; }

std::map<std::string, at::Tensor> InceptionV3Fid::taps(const at::Tensor& x, const std::vector<std::string>& names) {
  const std::vector<int> positions = tap_positions(names);
  std::map<std::string, at::Tensor> out;
  if (positions.empty()) return out;
  SEQGAN_CHECK_HINT(x.dim() == 4 && (x.size(1) == 1 || x.size(1) == 3), "pass images as [B, C, H, W] with C = 1 or 3",
                    description(), ": expected a [B, 1|3, H, W] image batch, found shape ", x.sizes());
  SEQGAN_CHECK(x.is_floating_point(), description(), ": expected floating-point images in [-1, 1], found ", x.scalar_type());
  at::Tensor h = x.size(1) == 1 ? x.expand({-1, 3, -1, -1}) : x;
  if (resize_ == Resize::kAdm) {
    // u = (x + 1) 127.5 resized, then (u - 128) / 128; the resize is linear, so it commutes.
    if (h.size(2) != kResize || h.size(3) != kResize) {
      const at::Tensor rows = tf1_resize_matrix(h.size(2), kResize, h.options());
      const at::Tensor cols = tf1_resize_matrix(h.size(3), kResize, h.options());
      h = at::matmul(at::matmul(rows, h), cols.transpose(0, 1));  // [B, 3, 299, 299]
    }
    h = (h + 1) * (127.5 / 128.0) - 1;
  } else if (h.size(2) != kResize || h.size(3) != kResize) {
    h = F::interpolate(h, F::InterpolateFuncOptions()
                              .size(std::vector<int64_t>{kResize, kResize})
                              .mode(torch::kBilinear)
                              .align_corners(false));
  }
  auto conv = [](const std::shared_ptr<nn::Module>& m, const at::Tensor& t) {
    return std::static_pointer_cast<BasicConvImpl>(m)->forward(t);
  };
  h = conv(stem_[0], h);
  h = conv(stem_[1], h);
  h = max_pool_3s2(conv(stem_[2], h));
  h = conv(stem_[3], h);
  h = max_pool_3s2(conv(stem_[4], h));
  const int deepest = *std::max_element(positions.begin(), positions.end());
  constexpr size_t kMixed6d = 6;
  for (size_t i = 0; i < mixed_.size(); ++i) {
    const auto block = std::static_pointer_cast<MixedImpl>(mixed_[i]);
    if (i == kMixed6d && std::find(positions.begin(), positions.end(), 0) != positions.end())
      // [B, 192, 17, 17] -> the first 7 channels, channels last as TF stores them -> [B, 2023]
      out["spatial"] = block->b("branch1x1", h).slice(1, 0, kSpatialChannels).permute({0, 2, 3, 1}).reshape({h.size(0), -1});
    if (deepest == 0 && i == kMixed6d) break;
    h = block->forward(h);
  }
  if (deepest >= 1) {
    const at::Tensor features = h.mean({2, 3});  // [B, 2048]
    for (size_t i = 0; i < names.size(); ++i)
      if (positions[i] > 0) out[names[i]] = positions[i] == 1 ? features : fc_(features);
  }
  return out;
}

}  // namespace seqgan
