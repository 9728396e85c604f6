// seqgan for programs that embed it: tokenizers and generators loaded from the files seqgan
// writes, with 8-bit images or tensors in and out. Errors are seqgan::Error (seqgan/error.h),
// naming the problem and the fix.
//
//   #include <seqgan/models.h>
//
//   auto tok = seqgan::TokenizerModel::load("runs/fmnist/tokenizer-phase2/tokenizer.safetensors");
//   const seqgan::Image photo = seqgan::read_image("shoe.png", tok.channels());
//   at::Tensor codes = tok.encode({photo});                 // [1, h, w] int64 code indices
//   seqgan::Image back = tok.decode(codes).front();          // the reconstruction, 8-bit
//
//   auto gen = seqgan::GeneratorModel::load("runs/fmnist/ar/transformer.safetensors");
//   seqgan::SampleRequest request;
//   request.classes = {0, 0, 7, 7};                          // one image per entry
//   request.seed = 1;
//   std::vector<seqgan::Image> images = tok.decode(gen.sample(request));
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "seqgan/config.h"
#include "seqgan/image.h"

namespace seqgan {

// A VQ tokenizer (either phase) from a `tokenizer.safetensors` of `seqgan train-tokenizer`.
class TokenizerModel {
 public:
  // device: "cpu", "cuda" or "auto"; weights: "auto" (the file's EMA weights when it has them),
  // "ema" or "raw".
  static TokenizerModel load(const std::string& path, const std::string& device = "cpu",
                             const std::string& weights = "auto");
  TokenizerModel(TokenizerModel&&) noexcept;
  TokenizerModel& operator=(TokenizerModel&&) noexcept;
  ~TokenizerModel();

  int resolution() const;        // image side the model was trained at
  int channels() const;          // 1 (grey) or 3 (RGB)
  int64_t codebook_size() const;
  int64_t grid() const;          // codes per image side (resolution / downsampling factor)
  int phase() const;

  // Images of any size and channel count, brought to the model's input as its evaluation
  // transform does (channels converted, short side resized, centre crop) -> codes [B, h, w] int64.
  at::Tensor encode(const std::vector<Image>& images) const;
  // Images [B, C, H, W] in [-1, 1] at the model's resolution -> codes [B, h, w] int64.
  at::Tensor encode_tensor(const at::Tensor& images) const;
  // Codes [B, h, w] -> 8-bit images at the model's resolution.
  std::vector<Image> decode(const at::Tensor& codes) const;
  // Codes [B, h, w] -> images [B, C, H, W] (float32, unclamped; [-1, 1] is the image range).
  at::Tensor decode_tensor(const at::Tensor& codes) const;

 private:
  struct Impl;
  explicit TokenizerModel(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

struct SampleRequest {
  // Class-conditional models: one image per entry. Unconditional models: leave it empty and set
  // `count`.
  std::vector<int64_t> classes;
  int64_t count = 0;
  uint64_t seed = 0;   // the same seed, request and model give the same codes
  int64_t batch = 64;  // images sampled together
  // Temperature, top-k/top-p (AR), steps and temperatures (NAR), guidance; default: the settings
  // the model file was trained with (its config's `sample` section).
  std::optional<SampleConfig> settings;
};

// An AR or NAR transformer from a `transformer.safetensors` of `seqgan train-transformer`.
class GeneratorModel {
 public:
  static GeneratorModel load(const std::string& path, const std::string& device = "cpu",
                             const std::string& weights = "auto");
  GeneratorModel(GeneratorModel&&) noexcept;
  GeneratorModel& operator=(GeneratorModel&&) noexcept;
  ~GeneratorModel();

  bool autoregressive() const;
  int num_classes() const;                     // 0: unconditional
  std::vector<std::string> class_names() const;  // as trained; may be empty
  int64_t grid() const;                        // codes per image side
  int64_t codebook_size() const;

  // Codes [N, grid, grid] int64, for TokenizerModel::decode of the tokenizer the model was trained on.
  at::Tensor sample(const SampleRequest& request) const;

 private:
  struct Impl;
  explicit GeneratorModel(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace seqgan
