// Token files: a data set encoded by a tokenizer, as safetensors ("indices" int32 [N, h, w],
// "labels" int64 [N]; metadata kind "tokens" with the tokenizer's config, codebook size, split
// and class names). Transformers train on them; `sample` writes them too.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>

#include "seqgan/data.h"

namespace seqgan {

class TokenizerImpl;

struct TokenFile {
  at::Tensor indices;  // [N, h, w] int64 in memory
  at::Tensor labels;   // [N] int64 (-1: unlabelled)
  int64_t codebook_size = 0;
  std::vector<std::string> class_names;
  std::string tokenizer_config_json = "{}";
  std::string split;
};

void save_tokens(const std::string& path, const TokenFile& file);
// Validates shapes, dtypes and that every index is below the codebook size.
TokenFile load_tokens(const std::string& path);

// Encodes `limit` (-1: all) images of a data set: {indices [N, h, w] int64, labels [N] int64}.
std::pair<at::Tensor, at::Tensor> tokenize_dataset(TokenizerImpl& tokenizer, const Dataset& data,
                                                   const TransformOptions& transform, int64_t batch_size,
                                                   int64_t limit = -1);

}  // namespace seqgan
