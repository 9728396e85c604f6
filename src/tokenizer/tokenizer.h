// The VQ tokenizer: encoder E, codebook Z, decoder G (SPEC section 2), with module names that are
// the checkpoint keys (encoder.down.0.block.1.conv1.weight, quantizer.embedding, ...).
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>

#include "nn/blocks.h"
#include "seqgan/checkpoint.h"
#include "seqgan/config.h"
#include "tokenizer/quantizer.h"

namespace seqgan {

class EncoderImpl : public torch::nn::Module {
 public:
  EncoderImpl(const TokenizerConfig& config, int image_channels);
  at::Tensor forward(const at::Tensor& x);  // [B, c, H, W] -> [B, code_dim, H/f, W/f]

 private:
  torch::nn::Conv2d conv_in{nullptr}, conv_out{nullptr};
  torch::nn::ModuleList down{nullptr};  // down.i.block.j
  std::vector<torch::nn::Sequential> down_blocks_;
  torch::nn::Sequential mid{nullptr};
  torch::nn::GroupNorm norm_out{nullptr};
  bool unit_input_ = false;  // tokenizer.input_range "0_1": x -> (x + 1) / 2 before conv_in
};
TORCH_MODULE(Encoder);

// One decoder level: residual blocks, then B&D attention pairs, then (except at full resolution)
// the upsampling.
class DecoderLevelImpl : public torch::nn::Module {
 public:
  DecoderLevelImpl(int64_t in_channels, int64_t channels, int blocks, int attn_pairs, bool upsample,
                   const TokenizerConfig& config);
  at::Tensor forward(at::Tensor x);
  int attn_pairs() const { return static_cast<int>(attn->size()) / 2; }
  void add_attention(int pairs, const TokenizerConfig& config);

 private:
  int64_t channels_;
  torch::nn::Sequential block{nullptr};
  torch::nn::ModuleList attn{nullptr};  // regional, dilated, regional, dilated, ...
  nn::Upsample upsample{nullptr};
};
TORCH_MODULE(DecoderLevel);

class DecoderImpl : public torch::nn::Module {
 public:
  DecoderImpl(const TokenizerConfig& config, int image_channels);
  at::Tensor forward(const at::Tensor& z);  // [B, code_dim, h, w] -> [B, c, h f, w f]
  // Phase 2: adds `pairs` B&D attention pairs to every level (output projections zero).
  void add_attention(int pairs, const TokenizerConfig& config);
  // Parameters of the B&D blocks only (prefix "up.i.attn.").
  std::vector<at::Tensor> attention_parameters() const;
  // The weight of the last convolution (for the VQGAN adaptive GAN weight).
  at::Tensor last_layer_weight() const { return conv_out->weight; }

 private:
  torch::nn::Conv2d conv_in{nullptr}, conv_out{nullptr};
  torch::nn::Sequential mid{nullptr};
  torch::nn::ModuleList up{nullptr};  // up.i is level i; the lowest resolution has the largest i
  torch::nn::GroupNorm norm_out{nullptr};
};
TORCH_MODULE(Decoder);

struct TokenizerOutput {
  at::Tensor reconstruction;  // [B, c, H, W], unbounded (clamped only when written as an image)
  QuantizerOutput quant;
};

class TokenizerImpl : public torch::nn::Module {
 public:
  TokenizerImpl(const TokenizerConfig& config, const QuantizerConfig& quantizer, int image_channels);
  TokenizerOutput forward(const at::Tensor& x);
  at::Tensor encode_indices(const at::Tensor& x);         // [B, c, H, W] -> [B, h, w] int64
  at::Tensor decode_indices(const at::Tensor& indices);   // [B, h, w] -> [B, c, H, W]
  const TokenizerConfig& config() const { return config_; }

  Encoder encoder{nullptr};
  Quantizer quantizer{nullptr};
  Decoder decoder{nullptr};

 private:
  TokenizerConfig config_;
};
TORCH_MODULE(Tokenizer);

// Parameters of a module, or only those whose checkpoint key starts with `prefix`.
int64_t count_parameters(const torch::nn::Module& module, const std::string& prefix = "");

// A tokenizer checkpoint (kind "tokenizer") with the config it was trained with; the architecture
// (phase-2 attention included) is rebuilt from that config before the strict load.
struct LoadedTokenizer {
  Tokenizer model{nullptr};
  Config config;
  int64_t step = 0;
  int phase = 1;
  std::string weights;  // "ema" or "raw": which of the file's weights were loaded
};
// `weights`: the file's EMA or raw weights (automatic: the EMA ones when present).
LoadedTokenizer load_tokenizer(const std::string& path, const torch::Device& device,
                               WeightChoice weights = WeightChoice::automatic);

}  // namespace seqgan
