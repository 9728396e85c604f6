#include "transformer/transformer.h"

#include <nlohmann/json.hpp>
#include <cmath>

#include "nn/attention.h"
#include "seqgan/checkpoint.h"
#include "seqgan/error.h"

namespace seqgan {

SelfAttentionImpl::SelfAttentionImpl(int64_t width, int64_t heads, double dropout) : heads_(heads), dropout_(dropout) {
  SEQGAN_CHECK_HINT(width % heads == 0, "choose transformer.width divisible by transformer.heads",
                    "transformer width ", width, " is not divisible by ", heads, " heads");
  qkv = register_module("qkv", torch::nn::Linear(width, 3 * width));
  proj = register_module("proj", torch::nn::Linear(width, width));
}

at::Tensor SelfAttentionImpl::forward(const at::Tensor& x, bool causal, at::Tensor* cache_k, at::Tensor* cache_v,
                                      int64_t cached) {
  const int64_t B = x.size(0), T = x.size(1), C = x.size(2), d = C / heads_;
  const auto parts = qkv(x).view({B, T, 3, heads_, d}).permute({2, 0, 3, 1, 4});  // [3, B, h, T, d]
  const auto q = parts[0];
  auto k = parts[1], v = parts[2];
  if (cache_k) {
    // Write the new keys and values behind the cached ones; attend to everything so far.
    cache_k->slice(2, cached, cached + T).copy_(k);
    cache_v->slice(2, cached, cached + T).copy_(v);
    k = cache_k->slice(2, 0, cached + T);
    v = cache_v->slice(2, 0, cached + T);
  }
  at::Tensor y;
  if (causal && cache_k && T > 1) {
    // Queries are the last T of cached + T positions: query i sees keys up to cached + i. Given
    // as an explicit mask, since fused kernels align a causal flag at the top left.
    const auto allowed = at::ones({T, cached + T}, x.options().dtype(at::kBool)).tril(cached);
    y = nn::attention(q, k, v, allowed, false, dropout_, is_training());
  } else {
    y = nn::attention(q, k, v, {}, causal && T > 1, dropout_, is_training());
  }
  return proj(y.transpose(1, 2).reshape({B, T, C}));
}

TransformerBlockImpl::TransformerBlockImpl(int64_t width, int64_t heads, int64_t mlp, double dropout) {
  ln1 = register_module("ln1", torch::nn::LayerNorm(torch::nn::LayerNormOptions({width})));
  attn = register_module("attn", SelfAttention(width, heads, dropout));
  ln2 = register_module("ln2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({width})));
  fc1 = register_module("fc1", torch::nn::Linear(width, mlp));
  fc2 = register_module("fc2", torch::nn::Linear(mlp, width));
  drop = register_module("drop", torch::nn::Dropout(dropout));
}

at::Tensor TransformerBlockImpl::forward(const at::Tensor& x, bool causal, at::Tensor* cache_k, at::Tensor* cache_v,
                                         int64_t cached) {
  auto h = x + drop(attn(ln1(x), causal, cache_k, cache_v, cached));
  return h + drop(fc2(at::gelu(fc1(ln2(h)))));
}

TransformerImpl::TransformerImpl(const TransformerConfig& config, const TokenSpace& space, bool causal)
    : config_(config), space_(space), causal_(causal) {
  SEQGAN_CHECK(space.codebook_size >= 2 && space.length >= 1, "token space needs K >= 2 and L >= 1, got K = ",
               space.codebook_size, ", L = ", space.length);
  const int64_t C = config.width;
  tok_emb = register_module("tok_emb", torch::nn::Embedding(space.vocab_size(), C));
  pos_emb = register_parameter("pos_emb", torch::zeros({1, space.length + 1, C}));
  drop = register_module("drop", torch::nn::Dropout(config.dropout));
  blocks = register_module("blocks", torch::nn::ModuleList());
  for (int i = 0; i < config.layers; ++i)
    blocks->push_back(TransformerBlock(C, config.heads, config.mlp, config.dropout));
  ln_f = register_module("ln_f", torch::nn::LayerNorm(torch::nn::LayerNormOptions({C})));
  head = register_module("head", torch::nn::Linear(C, space.codebook_size));

  // GPT-2 style initialisation: N(0, 0.02) for weights and embeddings, zero biases, and the
  // residual projections scaled down by sqrt(2 * layers).
  torch::NoGradGuard ng;
  for (auto& p : named_parameters()) {
    const std::string& name = p.key();
    auto& t = p.value();
    if (name.size() >= 5 && name.compare(name.size() - 5, 5, ".bias") == 0) {
      t.zero_();
    } else if (name.find("ln") != std::string::npos) {
      t.fill_(1.0);
    } else {
      const bool residual = name.find("attn.proj.weight") != std::string::npos || name.find("fc2.weight") != std::string::npos;
      t.normal_(0.0, residual ? 0.02 / std::sqrt(2.0 * config.layers) : 0.02);
    }
  }
}

at::Tensor TransformerImpl::condition_tokens(const at::Tensor& cond, int64_t batch, const torch::Device& device) const {
  if (space_.num_classes == 0) return at::full({batch}, space_.codebook_size, at::TensorOptions(at::kLong).device(device));
  SEQGAN_CHECK_HINT(cond.defined() && cond.numel() == batch, "pass one class id per image",
                    "class-conditional transformer needs ", batch, " class ids");
  const auto c = cond.to(device, at::kLong);
  const int64_t last = space_.num_classes - (space_.null_class ? 0 : 1);
  SEQGAN_CHECK_HINT(c.min().item<int64_t>() >= 0 && c.max().item<int64_t>() <= last,
                    "class ids run from 0 to " + std::to_string(space_.num_classes - 1) +
                        (space_.null_class ? " (" + std::to_string(space_.num_classes) + ": the null condition)" : ""),
                    "class id out of range");
  return c + space_.codebook_size;
}

at::Tensor TransformerImpl::run(const at::Tensor& ids, int64_t offset, KVCache* cache) {
  const int64_t T = ids.size(1);
  SEQGAN_CHECK(offset + T <= pos_emb.size(1), "sequence of ", offset + T, " positions exceeds the model's ",
               pos_emb.size(1));
  auto x = drop(tok_emb(ids) + pos_emb.slice(1, offset, offset + T));
  for (size_t i = 0; i < blocks->size(); ++i) {
    auto* b = blocks[i]->as<TransformerBlock>();
    x = cache ? b->forward(x, causal_, &cache->k[i], &cache->v[i], offset) : b->forward(x, causal_);
  }
  return head(ln_f(x));
}

at::Tensor TransformerImpl::forward(const at::Tensor& cond, const at::Tensor& tokens) {
  SEQGAN_CHECK(tokens.dim() == 2, "tokens must be [B, T], got ", tokens.dim(), " dimensions");
  const int64_t B = tokens.size(0);
  const auto c = condition_tokens(cond, B, tokens.device()).unsqueeze(1);
  const auto ids = at::cat({c, tokens.to(at::kLong)}, 1);
  const auto logits = run(ids, 0, nullptr);
  return causal_ ? logits : logits.slice(1, 1);
}

KVCache TransformerImpl::start(const at::Tensor& cond, at::Tensor* logits) {
  SEQGAN_CHECK(causal_, "key/value caching is for the causal (AR) transformer");
  const int64_t B = cond.defined() && cond.numel() > 0 ? cond.size(0) : 1;
  const auto device = pos_emb.device();
  KVCache cache;
  const int64_t heads = config_.heads, d = config_.width / config_.heads;
  for (size_t i = 0; i < blocks->size(); ++i) {
    cache.k.push_back(at::empty({B, heads, space_.length, d}, pos_emb.options()));
    cache.v.push_back(at::empty({B, heads, space_.length, d}, pos_emb.options()));
  }
  const auto ids = condition_tokens(cond, B, device).unsqueeze(1);
  const auto out = run(ids, 0, &cache);
  cache.length = 1;
  if (logits) *logits = out.select(1, 0);
  return cache;
}

at::Tensor TransformerImpl::step(KVCache& cache, const at::Tensor& tokens) {
  const auto t = tokens.dim() == 1 ? tokens.unsqueeze(1) : tokens;
  SEQGAN_CHECK(cache.length + t.size(1) <= space_.length, "the cache holds ", space_.length,
               " positions; the AR model never needs the last token as input");
  const auto out = run(t.to(at::kLong), cache.length, &cache);
  cache.length += t.size(1);
  return out.select(1, out.size(1) - 1);
}

bool decays(const std::string& name) {
  const auto ends = [&](const std::string& s) {
    return name.size() >= s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0;
  };
  return ends(".weight") && name.find("ln") == std::string::npos && name.find("emb") == std::string::npos;
}

std::string transformer_kind(bool causal) { return causal ? "transformer-ar" : "transformer-nar"; }

void token_space_to_extra(const TokenSpace& space, std::map<std::string, std::string>& extra) {
  extra["codebook_size"] = std::to_string(space.codebook_size);
  extra["length"] = std::to_string(space.length);
  extra["num_classes"] = std::to_string(space.num_classes);
  if (space.null_class) extra["null_class"] = "1";
}

TokenSpace token_space_from_extra(const std::map<std::string, std::string>& extra, const std::string& source) {
  TokenSpace s;
  auto get = [&](const std::string& key) -> int64_t {
    const auto it = extra.find(key);
    SEQGAN_CHECK_HINT(it != extra.end(), "pass a transformer.safetensors written by train-transformer", source,
                      ": metadata lacks '", key, "'");
    try {
      return std::stoll(it->second);
    } catch (const std::exception&) {
      throw Error(str(source, ": metadata '", key, "' is not a number: '", it->second, "'"));
    }
  };
  s.codebook_size = get("codebook_size");
  s.length = get("length");
  s.num_classes = get("num_classes");
  s.null_class = extra.count("null_class") && get("null_class") == 1 && s.num_classes > 0;  // older files: none
  return s;
}

LoadedTransformer load_transformer(const std::string& path, const torch::Device& device, WeightChoice weights) {
  const CheckpointMeta meta = read_checkpoint_meta(path);
  SEQGAN_CHECK_HINT(meta.kind == "transformer-ar" || meta.kind == "transformer-nar",
                    "pass the transformer.safetensors of a train-transformer run", "'", path, "' holds a ", meta.kind,
                    ", not a transformer");
  LoadedTransformer out;
  out.config = config_from_json(meta.config_json, path + " (metadata config)");
  out.space = token_space_from_extra(meta.extra, path);
  out.step = meta.step;
  if (const auto it = meta.extra.find("class_names"); it != meta.extra.end()) {
    try {
      out.class_names = nlohmann::json::parse(it->second).get<std::vector<std::string>>();
    } catch (const nlohmann::json::exception&) {
      throw Error(str(path, ": metadata 'class_names' is not a JSON list of names"),
                  "the file is damaged; restore it or train again");
    }
  }
  out.model = Transformer(out.config.transformer, out.space, meta.kind == "transformer-ar");
  LoadOptions options;
  options.expected_kind = meta.kind;
  options.weights = weights;
  out.weights = chosen_weights(weights, meta);
  load_checkpoint(path, *out.model, options);
  out.model->to(device);
  out.model->eval();
  return out;
}

}  // namespace seqgan
