#include "tokenizer/tokenizer.h"

#include "seqgan/checkpoint.h"
#include "nn/group_norm.h"
#include "seqgan/error.h"

namespace seqgan {

namespace {
nn::NormSpec norm_spec(const TokenizerConfig& c) { return {c.norm_groups, c.norm_eps}; }
torch::nn::Conv2d conv(int64_t in, int64_t out, int64_t k, bool bias) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, k).padding(k / 2).bias(bias));
}
}  // namespace

int64_t count_parameters(const torch::nn::Module& module, const std::string& prefix) {
  int64_t n = 0;
  for (const auto& p : module.named_parameters())
    if (p.key().rfind(prefix, 0) == 0) n += p.value().numel();
  return n;
}

EncoderImpl::EncoderImpl(const TokenizerConfig& c, int image_channels) : unit_input_(c.input_range == "0_1") {
  SEQGAN_CHECK_HINT(c.input_range == "minus1_1" || unit_input_, "set tokenizer.input_range to minus1_1 or 0_1",
                    "unknown tokenizer.input_range '", c.input_range, "'");
  const auto norm = norm_spec(c);
  const int levels = static_cast<int>(c.channel_mult.size());
  conv_in = register_module("conv_in", conv(image_channels, c.base_channels, 3, false));
  down = register_module("down", torch::nn::ModuleList());
  int64_t in = c.base_channels;
  for (int i = 0; i < levels; ++i) {
    const int64_t width = static_cast<int64_t>(c.base_channels) * c.channel_mult[i];
    auto level = std::make_shared<torch::nn::Module>();
    auto blocks = torch::nn::Sequential();
    for (int j = 0; j < c.num_res_blocks; ++j, in = width) blocks->push_back(nn::ResBlock(in, width, norm, c.maskgit_skip));
    level->register_module("block", blocks);
    down->push_back(level);
    down_blocks_.push_back(blocks);
  }
  mid = register_module("mid", torch::nn::Sequential());
  for (int j = 0; j < c.mid_res_blocks; ++j) mid->push_back(nn::ResBlock(in, in, norm, c.maskgit_skip));
  norm_out = register_module("norm_out", nn::make_norm(in, norm));
  conv_out = register_module("conv_out", conv(in, c.code_dim, 1, true));
}

at::Tensor EncoderImpl::forward(const at::Tensor& x) {
  // Images arrive in [-1, 1]; weights trained on [0, 1] (MaskGIT's) see (x + 1) / 2.
  auto h = conv_in(nn::to_channels_last(unit_input_ ? x * 0.5 + 0.5 : x));
  for (size_t i = 0; i < down->size(); ++i) {
    h = down_blocks_[i]->forward(h);
    if (i + 1 < down->size()) h = at::avg_pool2d(h, 2);  // [B, C, H, W] -> [B, C, H/2, W/2]
  }
  h = mid->size() ? mid->forward(h) : h;
  return conv_out(nn::group_norm_silu(h, norm_out));
}

DecoderLevelImpl::DecoderLevelImpl(int64_t in_channels, int64_t channels, int blocks, int attn_pairs,
                                   bool with_upsample, const TokenizerConfig& c)
    : channels_(channels) {
  block = register_module("block", torch::nn::Sequential());
  for (int j = 0; j < blocks; ++j, in_channels = channels)
    block->push_back(nn::ResBlock(in_channels, channels, norm_spec(c), c.maskgit_skip));
  attn = register_module("attn", torch::nn::ModuleList());
  add_attention(attn_pairs, c);
  if (with_upsample) upsample = register_module("upsample", nn::Upsample(channels));
}

void DecoderLevelImpl::add_attention(int pairs, const TokenizerConfig& c) {
  using Mode = nn::WindowAttentionImpl::Mode;
  for (int p = 0; p < pairs; ++p) {
    attn->push_back(nn::WindowAttention(channels_, c.attn_heads, c.attn_window, Mode::Regional, norm_spec(c)));
    attn->push_back(nn::WindowAttention(channels_, c.attn_heads, c.attn_window, Mode::Dilated, norm_spec(c)));
  }
}

at::Tensor DecoderLevelImpl::forward(at::Tensor x) {
  x = block->forward(x);
  for (const auto& a : *attn) x = a->as<nn::WindowAttention>()->forward(x);
  if (upsample) x = upsample(x);
  return x;
}

DecoderImpl::DecoderImpl(const TokenizerConfig& c, int image_channels) {
  const int levels = static_cast<int>(c.channel_mult.size());
  int64_t width = static_cast<int64_t>(c.base_channels) * c.channel_mult.back();
  conv_in = register_module("conv_in", conv(c.code_dim, width, 3, true));
  mid = register_module("mid", torch::nn::Sequential());
  for (int j = 0; j < c.mid_res_blocks; ++j) mid->push_back(nn::ResBlock(width, width, norm_spec(c), c.maskgit_skip));
  // Levels are created from full resolution (0) to the lowest (levels - 1) so that the
  // ModuleList index equals the level; forward runs them in reverse.
  std::vector<std::shared_ptr<DecoderLevelImpl>> made(levels);
  for (int i = levels - 1; i >= 0; --i) {
    const int64_t out = static_cast<int64_t>(c.base_channels) * c.channel_mult[i];
    made[i] = std::make_shared<DecoderLevelImpl>(width, out, c.num_res_blocks + c.decoder_extra_res_blocks,
                                                 c.decoder_attn_pairs, i > 0, c);
    width = out;
  }
  up = register_module("up", torch::nn::ModuleList());
  for (auto& m : made) up->push_back(m);
  norm_out = register_module("norm_out", nn::make_norm(width, norm_spec(c)));
  conv_out = register_module("conv_out", conv(width, image_channels, 3, true));
}

at::Tensor DecoderImpl::forward(const at::Tensor& z) {
  auto h = conv_in(z);
  if (mid->size()) h = mid->forward(h);
  for (int i = static_cast<int>(up->size()) - 1; i >= 0; --i) h = up[i]->as<DecoderLevelImpl>()->forward(h);
  return conv_out(nn::group_norm_silu(h, norm_out));
}

void DecoderImpl::add_attention(int pairs, const TokenizerConfig& c) {
  for (const auto& level : *up) level->as<DecoderLevelImpl>()->add_attention(pairs, c);
}

std::vector<at::Tensor> DecoderImpl::attention_parameters() const {
  std::vector<at::Tensor> out;
  for (const auto& item : named_parameters())
    if (item.key().find(".attn.") != std::string::npos) out.push_back(item.value());
  return out;
}

TokenizerImpl::TokenizerImpl(const TokenizerConfig& c, const QuantizerConfig& q, int image_channels) : config_(c) {
  SEQGAN_CHECK(image_channels == 1 || image_channels == 3, "images must have 1 or 3 channels, got ", image_channels);
  encoder = register_module("encoder", Encoder(c, image_channels));
  quantizer = register_module("quantizer", Quantizer(c.codebook_size, c.code_dim, q));
  decoder = register_module("decoder", Decoder(c, image_channels));
  nn::use_channels_last(*this);  // about 1.3x (CPU, fmnist) to 1.6x (paper at 64x64) per training step
}

TokenizerOutput TokenizerImpl::forward(const at::Tensor& x) {
  TokenizerOutput out;
  out.quant = quantizer(encoder(x));
  out.reconstruction = decoder(out.quant.z_q);
  return out;
}

at::Tensor TokenizerImpl::encode_indices(const at::Tensor& x) { return quantizer->nearest(encoder(x)); }

at::Tensor TokenizerImpl::decode_indices(const at::Tensor& indices) { return decoder(quantizer->lookup(indices)); }

}  // namespace seqgan

namespace seqgan {

LoadedTokenizer load_tokenizer(const std::string& path, const torch::Device& device, WeightChoice weights) {
  const CheckpointMeta meta = read_checkpoint_meta(path);
  SEQGAN_CHECK_HINT(meta.kind == "tokenizer", "pass the tokenizer.safetensors of a train-tokenizer run",
                    "'", path, "' holds a ", meta.kind, ", not a tokenizer");
  LoadedTokenizer out;
  out.config = config_from_json(meta.config_json, path + " (metadata config)");
  out.step = meta.step;
  const auto it = meta.extra.find("phase");
  out.phase = it == meta.extra.end() ? 1 : std::stoi(it->second);
  out.model = Tokenizer(out.config.tokenizer, out.config.quantizer, out.config.data.channels);
  LoadOptions options;
  options.expected_kind = "tokenizer";
  options.weights = weights;
  out.weights = chosen_weights(weights, meta);
  load_checkpoint(path, *out.model, options);
  out.model->to(device);
  out.model->eval();
  return out;
}

}  // namespace seqgan
