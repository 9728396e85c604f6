// Reusable convolutional and attention blocks of the tokenizer (SPEC section 2).
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

namespace seqgan::nn {

struct NormSpec {
  int groups = 32;
  double eps = 1e-6;
};

// Stores every 4-D parameter and buffer of `module` channels-last (NHWC). Convolutions then
// produce channels-last outputs, which oneDNN on CPUs and cuDNN on GPUs run faster than NCHW;
// values are unchanged, and checkpoints are written in the usual contiguous layout.
void use_channels_last(torch::nn::Module& module);

// x with channels-last strides (a copy unless it has them), so that convolutions with
// channels-last weights keep that layout. With one channel, NCHW and NHWC hold the same bytes but
// libtorch reads a contiguous tensor as NCHW: the first convolution of grey images would run in
// NCHW and hand NCHW on to the blocks after it.
at::Tensor to_channels_last(const at::Tensor& x);

torch::nn::GroupNorm make_norm(int64_t channels, const NormSpec& spec);

// GN, SiLU, conv3x3, GN, SiLU, conv3x3 (no biases). When the width changes, a 1x1 conv (no bias)
// either maps the block's output h to h + conv(h) (MaskGIT layout, `skip_on_output`) or maps the
// input onto the residual path (conventional layout).
class ResBlockImpl : public torch::nn::Module {
 public:
  ResBlockImpl(int64_t in_channels, int64_t out_channels, const NormSpec& norm, bool skip_on_output);
  at::Tensor forward(const at::Tensor& x);

 private:
  bool skip_on_output_;
  torch::nn::GroupNorm norm1{nullptr}, norm2{nullptr};
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr}, skip{nullptr};
};
TORCH_MODULE(ResBlock);

// conv3x3(nearest x2 upsampling of x) with padding 1, computed without the upsampled image: each of
// the four output phases (row 2i + a, column 2j + b) sees only a 2x2 neighbourhood of x, so the
// 3x3 kernel folds into four 2x2 kernels (taps that land on the same input pixel are added) run as
// one convolution with 4x the outputs at x's resolution, whose phases are then interleaved. The
// same function and gradients up to float rounding, with 4/9 of the multiply-adds and no upsampled
// copy of x. weight [O, C, 3, 3], bias [O] or undefined; x [B, C, H, W] -> [B, O, 2H, 2W].
// Auto folds where that was measured to be faster (CPU tensors of 16x16 and more, up to 32 MiB of
// folded output); Plain upsamples then convolves; Folded always folds.
enum class Upsampling { Auto, Plain, Folded };
at::Tensor upsample2x_conv3x3(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                              Upsampling how = Upsampling::Auto);

// Nearest x2 upsampling then conv3x3 (bias), width unchanged (upsample2x_conv3x3).
class UpsampleImpl : public torch::nn::Module {
 public:
  explicit UpsampleImpl(int64_t channels);
  at::Tensor forward(const at::Tensor& x);

 private:
  torch::nn::Conv2d conv{nullptr};
};
TORCH_MODULE(Upsample);

// Attention among groups of positions of a feature map: "regional" groups are the non-overlapping
// b x b windows, "dilated" groups are the positions sharing one offset inside their window (a
// stride-b grid). Norm, q/k/v/out projections with bias, residual; the output projection starts
// at zero so that adding the block leaves a trained network's output unchanged. Sizes that are not
// multiples of b are padded; padded positions are masked out as keys and cropped from the output.
class WindowAttentionImpl : public torch::nn::Module {
 public:
  enum class Mode { Regional, Dilated };
  WindowAttentionImpl(int64_t channels, int64_t heads, int64_t window, Mode mode, const NormSpec& norm);
  at::Tensor forward(const at::Tensor& x);  // [B, C, H, W] -> [B, C, H, W]

 private:
  int64_t channels_, heads_, window_;
  Mode mode_;
  torch::nn::GroupNorm norm{nullptr};
  torch::nn::Linear q{nullptr}, k{nullptr}, v{nullptr}, proj_out{nullptr};
};
TORCH_MODULE(WindowAttention);

}  // namespace seqgan::nn
