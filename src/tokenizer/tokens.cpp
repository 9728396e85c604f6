#include "tokenizer/tokens.h"

#include <nlohmann/json.hpp>

#include "seqgan/checkpoint.h"
#include "seqgan/error.h"
#include "seqgan/runtime.h"
#include "seqgan/log.h"
#include "tokenizer/tokenizer.h"

namespace seqgan {

void save_tokens(const std::string& path, const TokenFile& file) {
  SEQGAN_CHECK(file.indices.dim() == 3 && file.labels.dim() == 1 && file.indices.size(0) == file.labels.size(0),
               "token file needs indices [N, h, w] and labels [N], got ", file.indices.sizes(), " and ", file.labels.sizes());
  safetensors::TensorMap t;
  t["indices"] = file.indices.to(at::kInt).cpu().contiguous();
  t["labels"] = file.labels.to(at::kLong).cpu().contiguous();
  CheckpointMeta meta;
  meta.kind = "tokens";
  meta.config_json = file.tokenizer_config_json;
  meta.extra["codebook_size"] = std::to_string(file.codebook_size);
  meta.extra["class_names"] = nlohmann::json(file.class_names).dump();
  meta.extra["split"] = file.split;
  safetensors::save(path, t, meta.to_metadata());
}

TokenFile load_tokens(const std::string& path) {
  const auto f = safetensors::load(path);
  const auto meta = CheckpointMeta::from_metadata(f.header.metadata, path);
  SEQGAN_CHECK_HINT(meta.kind == "tokens", "pass a file written by `seqgan tokenize` or `seqgan sample`", "'", path,
                    "' holds a ", meta.kind, ", not tokens");
  TokenFile out;
  const auto idx = f.tensors.find("indices"), lab = f.tensors.find("labels");
  SEQGAN_CHECK(idx != f.tensors.end() && lab != f.tensors.end(), path, ": token file needs 'indices' and 'labels'");
  out.indices = idx->second.to(at::kLong);
  out.labels = lab->second.to(at::kLong);
  SEQGAN_CHECK(out.indices.dim() == 3 && out.labels.dim() == 1 && out.indices.size(0) == out.labels.size(0), path,
               ": expected indices [N, h, w] and labels [N], got ", out.indices.sizes(), " and ", out.labels.sizes());
  try {
    out.codebook_size = std::stoll(meta.extra.at("codebook_size"));
    out.class_names = nlohmann::json::parse(meta.extra.at("class_names")).get<std::vector<std::string>>();
    out.split = meta.extra.count("split") ? meta.extra.at("split") : "";
  } catch (const std::exception& e) {
    throw Error(str(path, ": token file metadata is incomplete (", e.what(), ")"), "re-create it with `seqgan tokenize`");
  }
  out.tokenizer_config_json = meta.config_json;
  if (out.indices.numel() > 0) {
    const int64_t lo = out.indices.min().item<int64_t>(), hi = out.indices.max().item<int64_t>();
    SEQGAN_CHECK(lo >= 0 && hi < out.codebook_size, path, ": indices span [", lo, ", ", hi, "], outside the codebook of ",
                 out.codebook_size);
  }
  return out;
}

std::pair<at::Tensor, at::Tensor> tokenize_dataset(TokenizerImpl& tokenizer, const Dataset& data,
                                                   const TransformOptions& transform_options, int64_t batch_size,
                                                   int64_t limit) {
  const int64_t n = limit < 0 ? data.size() : std::min(limit, data.size());
  const Transform transform(transform_options);
  const auto device = tokenizer.parameters()[0].device();
  torch::NoGradGuard ng;
  const bool was_training = tokenizer.is_training();
  tokenizer.eval();
  std::vector<at::Tensor> indices;
  std::vector<int64_t> labels;
  Progress progress("tokenize", n);
  for (int64_t start = 0; start < n; start += batch_size) {
    std::vector<at::Tensor> imgs;
    for (int64_t i = start; i < std::min(n, start + batch_size); ++i) {
      auto ex = data.load(i);
      imgs.push_back(image_to_tensor(transform.apply(ex.image, 0, 0, i)));
      labels.push_back(ex.label);
    }
    indices.push_back(tokenizer.encode_indices(at::stack(imgs).to(device)).cpu());
    progress.update(start + static_cast<int64_t>(imgs.size()));
    throw_if_stopped("tokenize");
  }
  progress.finish();
  if (was_training) tokenizer.train();
  return {at::cat(indices), torch::tensor(labels, torch::kLong)};
}

}  // namespace seqgan
