// Tiny configurations for tests that run whole training loops in seconds.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "remove_tree.h"
#include "features/classifier.h"
#include "seqgan/config.h"
#include "seqgan/safetensors.h"
#include "tokenizer/tokens.h"

namespace seqgan::test {

// A fresh empty directory under the system temp dir.
inline std::string temp_dir(const std::string& name) {
  const auto dir = std::filesystem::temp_directory_path() / ("seqgan-test-" + name + "-" + std::to_string(::getpid()));
  seqgan::test::remove_tree(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

// step -> loss of the metrics.jsonl lines of one kind in a run directory.
inline std::map<int64_t, double> losses(const std::string& run_dir, const std::string& kind) {
  std::map<int64_t, double> out;
  std::ifstream in(run_dir + "/metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    const auto j = nlohmann::json::parse(line);
    if (j["kind"] == kind) out[j["step"].get<int64_t>()] = j["loss"].get<double>();
  }
  return out;
}

// Whether two safetensors files hold the same tensor names with bit-identical values.
inline bool same_weights(const std::string& a, const std::string& b) {
  const auto fa = safetensors::load(a), fb = safetensors::load(b);
  if (fa.tensors.size() != fb.tensors.size()) return false;
  for (const auto& [k, v] : fa.tensors)
    if (!fb.tensors.count(k) || !at::equal(v, fb.tensors.at(k))) return false;
  return true;
}

// A classifier weight file to stand in for the loss network in loop tests. Its weights are
// random: these tests check the training machinery, not what the loss teaches.
inline std::string stand_in_loss_network(const std::string& dir, int resolution = 16, int width = 4) {
  ClassifierArch arch;
  arch.kind = "vgg";
  arch.channels = 1;
  arch.width = width;
  arch.num_classes = 10;
  arch.resolution = resolution;
  torch::manual_seed(123);
  Classifier net(arch);
  const std::string path = dir + "/loss-net.safetensors";
  save_classifier(path, net);
  return path;
}

// Fashion-MNIST at 16x16 through a two-level tokenizer (f = 2, 8x8 tokens, K = 16).
inline Config tiny_tokenizer_config(const std::string& loss_weights) {
  Config c = make_preset("fmnist");
  c.threads = 2;
  c.data.resolution = 16;
  c.data.num_workers = 1;
  c.tokenizer.base_channels = 8;
  c.tokenizer.channel_mult = {1, 2};
  c.tokenizer.num_res_blocks = 1;
  c.tokenizer.mid_res_blocks = 1;
  c.tokenizer.norm_groups = 4;
  c.tokenizer.code_dim = 8;
  c.tokenizer.codebook_size = 16;
  c.tokenizer.attn_window = 4;
  c.perceptual.weights = loss_weights;
  c.perceptual.alpha = 0.5;
  c.discriminator.base_channels = 8;
  c.discriminator.max_channels = 16;
  c.discriminator.start_iter = 2;
  c.discriminator.r1_interval = 2;
  c.train_tokenizer.batch_size = 8;
  c.train_tokenizer.iterations = 6;
  c.train_tokenizer.log_every = 1;
  c.train_tokenizer.image_every = 3;
  c.train_tokenizer.checkpoint_every = 3;
  c.phase2.train.batch_size = 8;
  c.phase2.train.iterations = 4;
  c.phase2.train.log_every = 1;
  c.phase2.train.image_every = 3;
  c.phase2.train.checkpoint_every = 3;
  return c;
}

// A learnable toy language for the transformers, written to `path`: `count` images of side x side
// tokens, each token its image's class (of `classes`) times `stride` plus 0 or 1 at random
// (torch seed 9); K = codebook_size.
inline void write_toy_tokens(const std::string& path, int64_t count, int64_t side, int64_t classes, int64_t stride,
                             int64_t codebook_size) {
  TokenFile f;
  torch::manual_seed(9);
  const auto labels = at::randint(classes, {count}, at::kLong);
  f.indices = labels.view({count, 1, 1}).repeat({1, side, side}) * stride + at::randint(2, {count, side, side}, at::kLong);
  f.labels = labels;
  f.codebook_size = codebook_size;
  f.split = "train";
  save_tokens(path, f);
}

}  // namespace seqgan::test
