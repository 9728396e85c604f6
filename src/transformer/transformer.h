// The generative transformer over tokenizer codes (SPEC section 4): one architecture, causal (AR)
// or bidirectional (NAR). Pre-norm blocks (LayerNorm, multi-head attention, LayerNorm, GELU MLP),
// a learned position embedding, a final LayerNorm and a head over the K image codes only.
//
// Vocabulary: codes 0..K-1, then one condition token per class (K + c) or one start token (K)
// when unconditional, then, for a class-conditional model trained with class dropout, the null
// condition (K + C, class id C: classifier-free guidance), then the mask token (NAR).
//   AR:  input [cond, s_1 .. s_{L-1}] (L positions), logits [B, L, K] predict s_1 .. s_L.
//   NAR: input [cond, t_1 .. t_L] (L + 1 positions, some t_i = mask), logits [B, L, K] for t_1 .. t_L.
#pragma once

#include <string>
#include <vector>

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include "seqgan/checkpoint.h"
#include "seqgan/config.h"

namespace seqgan {

// The shape of the token problem a transformer is built for.
struct TokenSpace {
  int64_t codebook_size = 0;  // K
  int64_t length = 0;         // L = h * w tokens per image
  int64_t num_classes = 0;    // 0: unconditional
  bool null_class = false;    // class-conditional with a null condition (class id num_classes)
  int64_t condition_tokens() const { return num_classes > 0 ? num_classes + (null_class ? 1 : 0) : 1; }
  int64_t null_class_id() const { return num_classes; }
  int64_t mask_token() const { return codebook_size + condition_tokens(); }
  int64_t vocab_size() const { return mask_token() + 1; }
};

// Per-layer key/value cache for incremental AR decoding, preallocated for `capacity` positions.
struct KVCache {
  std::vector<at::Tensor> k, v;  // per layer: [B, heads, capacity, head_dim]
  int64_t length = 0;            // positions filled
};

class SelfAttentionImpl : public torch::nn::Module {
 public:
  SelfAttentionImpl(int64_t width, int64_t heads, double dropout);
  // x [B, T, C]. With `cache`, x holds the T positions after cache->length ones already cached.
  at::Tensor forward(const at::Tensor& x, bool causal, at::Tensor* cache_k = nullptr, at::Tensor* cache_v = nullptr,
                     int64_t cached = 0);

  torch::nn::Linear qkv{nullptr}, proj{nullptr};

 private:
  int64_t heads_;
  double dropout_;
};
TORCH_MODULE(SelfAttention);

class TransformerBlockImpl : public torch::nn::Module {
 public:
  TransformerBlockImpl(int64_t width, int64_t heads, int64_t mlp, double dropout);
  at::Tensor forward(const at::Tensor& x, bool causal, at::Tensor* cache_k = nullptr, at::Tensor* cache_v = nullptr,
                     int64_t cached = 0);

  torch::nn::LayerNorm ln1{nullptr}, ln2{nullptr};
  SelfAttention attn{nullptr};
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
  torch::nn::Dropout drop{nullptr};
};
TORCH_MODULE(TransformerBlock);

class TransformerImpl : public torch::nn::Module {
 public:
  TransformerImpl(const TransformerConfig& config, const TokenSpace& space, bool causal);

  // AR: cond [B] (class ids, ignored when unconditional), tokens [B, L'] with L' <= L - 1 known
  // codes; returns logits [B, L' + 1, K] (the prediction of token i + 1 at position i).
  // NAR: tokens [B, L] with masks; returns logits [B, L, K].
  at::Tensor forward(const at::Tensor& cond, const at::Tensor& tokens);

  // AR decoding with a cache: feed `tokens` [B, T] (the condition token is fed by start()) and get
  // the logits [B, K] after the last of them.
  KVCache start(const at::Tensor& cond, at::Tensor* logits);
  at::Tensor step(KVCache& cache, const at::Tensor& tokens);

  // The condition token ids for class ids (or the start token when unconditional); class id
  // num_classes is the null condition where the model has one.
  at::Tensor condition_tokens(const at::Tensor& cond, int64_t batch, const torch::Device& device) const;

  bool causal() const { return causal_; }
  const TokenSpace& space() const { return space_; }
  const TransformerConfig& config() const { return config_; }

  torch::nn::Embedding tok_emb{nullptr};
  at::Tensor pos_emb;  // [1, L + 1, C]
  torch::nn::Dropout drop{nullptr};
  torch::nn::ModuleList blocks{nullptr};
  torch::nn::LayerNorm ln_f{nullptr};
  torch::nn::Linear head{nullptr};

 private:
  at::Tensor run(const at::Tensor& ids, int64_t offset, KVCache* cache);
  TransformerConfig config_;
  TokenSpace space_;
  bool causal_;
};
TORCH_MODULE(Transformer);

// Parameter names that take weight decay: the weight matrices of linear layers (not biases, norms
// or embeddings).
bool decays(const std::string& parameter_name);

// A transformer checkpoint (kind "transformer-ar" or "transformer-nar") with its config and token space.
struct LoadedTransformer {
  Transformer model{nullptr};
  Config config;
  TokenSpace space;
  int64_t step = 0;
  std::vector<std::string> class_names;  // of the tokens it was trained on; empty when not recorded
  std::string weights;                   // "ema" or "raw": which of the file's weights were loaded
};
// `weights`: the file's EMA or raw weights (automatic: the EMA ones when present).
LoadedTransformer load_transformer(const std::string& path, const torch::Device& device,
                                   WeightChoice weights = WeightChoice::automatic);
std::string transformer_kind(bool causal);

// Metadata keys that carry the token space.
void token_space_to_extra(const TokenSpace& space, std::map<std::string, std::string>& extra);
TokenSpace token_space_from_extra(const std::map<std::string, std::string>& extra, const std::string& source);

}  // namespace seqgan
