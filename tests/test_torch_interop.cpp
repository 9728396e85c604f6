// seqgan's models in PyTorch (python/seqgan_torch): model files written here as the trainers
// write them, seqgan's outputs for fixed inputs in DIR/expected.safetensors, then
// `python3 -m seqgan_torch.parity DIR`, which loads the files into PyTorch modules and must
// reproduce the codes exactly and the decoded images and logits to 1e-5. Skipped when
// /usr/bin/python3 has no torch (Debian: apt-get install python3-torch).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "python_fixtures.h"
#include "remove_tree.h"
#include "seqgan/checkpoint.h"
#include "seqgan/config.h"
#include "seqgan/models.h"
#include "seqgan/safetensors.h"
#include "tokenizer/tokenizer.h"
#include "train/ema.h"
#include "train/loop.h"
#include "transformer/transformer.h"

using namespace seqgan;

namespace {

constexpr int64_t kBatch = 4;

using test::python_with_torch;

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// The checker's exit status (-1: it did not exit) and its output.
std::pair<int, std::string> run_parity(const std::string& dir) {
  const std::string source = SEQGAN_SOURCE_DIR;
  const std::string log = dir + "/parity.log";
  // No __pycache__ written into the source tree.
  const std::string cmd = "PYTHONDONTWRITEBYTECODE=1 PYTHONPATH='" + source +
                          "/python' /usr/bin/python3 -m seqgan_torch.parity '" + dir + "' > '" + log + "' 2>&1";
  const int rc = std::system(cmd.c_str());
  return {WIFEXITED(rc) ? WEXITSTATUS(rc) : -1, test::read_file_text(log)};
}

// Moves every weight off its initial value (norms off 1 and 0, biases off 0, the zero-initialised
// attention output projections off zero), so that every layer shapes the outputs compared.
void perturb(torch::nn::Module& module, double scale) {
  torch::NoGradGuard ng;
  for (auto& p : module.named_parameters()) p.value().add_(at::randn_like(p.value()) * scale);
}

// Perturbs the weights; with `ema`, as a run with an exponential moving average leaves them: the
// average after one update, and raw weights that have moved on from it, so that loading the one
// or the other gives clearly different outputs. Returns the average (null without `ema`).
std::unique_ptr<Ema> train_a_little(torch::nn::Module& module, double scale, bool ema) {
  perturb(module, scale);
  if (!ema) return nullptr;
  auto average = std::make_unique<Ema>(module, 0.5);
  perturb(module, scale);
  average->update();
  perturb(module, scale);
  return average;
}

// A model file as the trainers write it (save_model_file), at step 7.
void save_model_file(const std::string& path, const torch::nn::Module& module, const std::string& kind,
                     const Config& config, std::map<std::string, std::string> extra, const Ema* ema,
                     const safetensors::TensorMap& stray = {}) {
  CheckpointMeta meta;
  meta.kind = kind;
  meta.config_json = config_to_json(config, -1);
  meta.step = 7;
  meta.extra = std::move(extra);
  seqgan::save_model_file(path, module, std::move(meta), ema, stray);
}

// A tokenizer file of `seqgan train-tokenizer`. Phase 2 as the trainer makes it: the phase-1
// architecture, attention pairs added to every decoder level and counted in the config.
void write_tokenizer(const std::string& dir, Config config, int phase, bool ema, const safetensors::TensorMap& stray = {}) {
  Tokenizer model(config.tokenizer, config.quantizer, config.data.channels);
  if (phase == 2) {
    const int pairs = 1;
    model->decoder->add_attention(pairs, config.tokenizer);
    config.tokenizer.decoder_attn_pairs += pairs;
  }
  {
    // Decoded images in about the image range, as a trained tokenizer's are (random weights give
    // values up to about 2.5): float32 rounding, which differs between seqgan's kernels and
    // PyTorch's, grows with the values, and the comparison is absolute.
    torch::NoGradGuard ng;
    for (auto& p : model->named_parameters())
      if (p.key().rfind("decoder.conv_out.", 0) == 0) p.value().mul_(0.5);
  }
  const auto average = train_a_little(*model, 0.02, ema);
  save_model_file(dir + "/tokenizer.safetensors", *model, "tokenizer", config, {{"phase", std::to_string(phase)}},
                  average.get(), stray);
}

// A transformer file of `seqgan train-transformer` (ar.safetensors or nar.safetensors in `dir`)
// for the codes of `config`'s tokenizer; num_classes > 0: class-conditional with a null class.
void write_transformer(const std::string& dir, Config config, bool causal, int64_t num_classes, bool ema) {
  TokenSpace space;
  space.codebook_size = config.tokenizer.codebook_size;
  const int64_t grid = latent_size(config);
  space.length = grid * grid;
  space.num_classes = num_classes;
  space.null_class = num_classes > 0;
  config.transformer.num_classes = static_cast<int>(num_classes);
  Transformer model(config.transformer, space, causal);
  const auto average = train_a_little(*model, 0.02, ema);
  std::map<std::string, std::string> extra;
  token_space_to_extra(space, extra);
  if (num_classes > 0) {
    std::vector<std::string> names;
    for (int64_t c = 0; c < num_classes; ++c) names.push_back("class " + std::to_string(c));
    extra["class_names"] = nlohmann::json(names).dump();
  }
  save_model_file(dir + (causal ? "/ar.safetensors" : "/nar.safetensors"), *model, transformer_kind(causal), config,
                  extra, average.get());
}

// seqgan's outputs for fixed inputs through the files in `dir` (the public TokenizerModel; the
// transformers as load_transformer gives them), as DIR/expected.safetensors (the names are
// documented in python/seqgan_torch/parity.py).
void write_expected(const std::string& dir) {
  safetensors::TensorMap out;
  const auto tok = TokenizerModel::load(dir + "/tokenizer.safetensors");
  const int64_t side = tok.resolution();
  const auto images = at::rand({kBatch, static_cast<int64_t>(tok.channels()), side, side}) * 2 - 1;
  const auto codes = tok.encode_tensor(images);
  // More than one code in use, or the codes would compare nothing of the distances.
  EXPECT_TRUE((codes != codes.flatten()[0]).any().item<bool>()) << "the images all map to one code";
  out["tokenizer.images"] = images;
  out["tokenizer.codes"] = codes;
  out["tokenizer.decoded"] = tok.decode_tensor(codes);
  torch::NoGradGuard ng;
  for (const bool causal : {true, false}) {
    const std::string name = causal ? "ar" : "nar";
    auto loaded = load_transformer(dir + "/" + name + ".safetensors", torch::kCPU);
    const TokenSpace s = loaded.space;
    // Class ids, the last one the null condition where the model has one; ignored when the model
    // is unconditional.
    at::Tensor cond = at::zeros({kBatch}, at::kLong);
    if (s.num_classes > 0) {
      cond = at::arange(kBatch, at::kLong) % s.num_classes;
      if (s.null_class) cond.narrow(0, kBatch - 1, 1).fill_(s.null_class_id());
    }
    auto tokens = at::randint(s.codebook_size, {kBatch, causal ? s.length - 1 : s.length}, at::kLong);
    if (!causal) tokens = at::where(at::rand(tokens.sizes()) < 0.5, at::full_like(tokens, s.mask_token()), tokens);
    out[name + ".cond"] = cond;
    out[name + ".tokens"] = tokens;
    out[name + ".logits"] = loaded.model->forward(cond, tokens);
  }
  safetensors::save(dir + "/expected.safetensors", out);
}

TransformerConfig tiny_transformer() {
  TransformerConfig t;
  t.layers = 2;
  t.width = 32;
  t.heads = 4;
  t.mlp = 64;
  t.dropout = 0.1;
  return t;
}

// RGB 32x32 through three levels (f = 4, 8x8 codes), nearest codes, MaskGIT's skip layout.
Config rgb_config() {
  Config c = make_preset("fmnist");
  c.data.channels = 3;
  c.data.resolution = 32;
  c.tokenizer.base_channels = 8;
  c.tokenizer.channel_mult = {1, 2, 2};
  c.tokenizer.num_res_blocks = 1;
  c.tokenizer.mid_res_blocks = 1;
  c.tokenizer.norm_groups = 4;
  c.tokenizer.code_dim = 8;
  c.tokenizer.codebook_size = 32;
  c.tokenizer.maskgit_skip = true;
  c.quantizer.kind = "nearest";
  c.transformer = tiny_transformer();
  return c;
}

// Grey 12x12 through two levels (f = 2, 6x6 codes): factorised codes, the skip on the block input,
// an extra decoder block per level, two attention heads, and windows of 4 that fit the 12x12 level
// and pad the 6x6 one.
Config grey_config() {
  Config c = make_preset("fmnist");
  c.data.channels = 1;
  c.data.resolution = 12;
  c.tokenizer.base_channels = 8;
  c.tokenizer.channel_mult = {1, 2};
  c.tokenizer.num_res_blocks = 2;
  c.tokenizer.mid_res_blocks = 1;
  c.tokenizer.norm_groups = 4;
  c.tokenizer.code_dim = 8;
  c.tokenizer.codebook_size = 16;
  c.tokenizer.maskgit_skip = false;
  c.tokenizer.decoder_extra_res_blocks = 1;
  c.tokenizer.decoder_attn_pairs = 0;
  c.tokenizer.attn_window = 4;
  c.tokenizer.attn_heads = 2;
  c.quantizer.kind = "factorized";
  c.quantizer.factor_dim = 4;
  c.transformer = tiny_transformer();
  return c;
}

// Phase-1 RGB tokenizer with EMA weights, a class-conditional AR model with EMA weights, an
// unconditional NAR model.
void write_phase1_case(const std::string& dir) {
  torch::manual_seed(1);
  const Config c = rgb_config();
  write_tokenizer(dir, c, 1, true);
  write_transformer(dir, c, true, 3, true);
  write_transformer(dir, c, false, 0, false);
  write_expected(dir);
}

}  // namespace

#define SKIP_WITHOUT_TORCH() \
  if (!python_with_torch()) GTEST_SKIP() << "/usr/bin/python3 with torch is not installed (apt-get install python3-torch)"

TEST(TorchInterop, Phase1TokenizerConditionalArUnconditionalNarWithEma) {
  SKIP_WITHOUT_TORCH();
  test::TempDir dir("seqgan-torch-interop");
  write_phase1_case(dir.path.string());
  const auto [rc, output] = run_parity(dir.path.string());
  EXPECT_EQ(rc, 0) << output;
  for (const char* line : {"tokenizer.codes", "tokenizer.decoded", "ar.logits", "nar.logits", "parity: ok"})
    EXPECT_TRUE(contains(output, line)) << line << " missing from:\n" << output;
  std::cout << output;  // the largest differences, for the log
}

TEST(TorchInterop, Phase2FactorizedZeroOneInputTokenizerUnconditionalArConditionalNar) {
  SKIP_WITHOUT_TORCH();
  test::TempDir dir("seqgan-torch-interop");
  const std::string d = dir.path.string();
  torch::manual_seed(2);
  Config c = grey_config();
  c.tokenizer.input_range = "0_1";  // as converted MaskGIT tokenizers have it
  write_tokenizer(d, c, 2, false);
  write_transformer(d, c, true, 0, false);
  write_transformer(d, c, false, 4, false);
  write_expected(d);
  const auto [rc, output] = run_parity(d);
  EXPECT_EQ(rc, 0) << output;
  EXPECT_TRUE(contains(output, "parity: ok")) << output;
  std::cout << output;  // the largest differences, for the log
}

TEST(TorchInterop, CheckerFailsOnADifferenceAboveTheTolerance) {
  SKIP_WITHOUT_TORCH();
  test::TempDir dir("seqgan-torch-interop");
  const std::string d = dir.path.string();
  write_phase1_case(d);
  auto expected = safetensors::load(d + "/expected.safetensors").tensors;
  at::Tensor logits = expected.at("nar.logits").clone();
  logits.view({-1}).narrow(0, 0, 1).add_(2e-5);
  expected["nar.logits"] = logits;
  safetensors::save(d + "/expected.safetensors", expected);
  const auto [rc, output] = run_parity(d);
  EXPECT_EQ(rc, 1) << output;
  EXPECT_TRUE(contains(output, "parity: FAILED (nar.logits)")) << output;
}

TEST(TorchInterop, RefusesAModelFileWithATensorTheModelLacks) {
  SKIP_WITHOUT_TORCH();
  test::TempDir dir("seqgan-torch-interop");
  const std::string d = dir.path.string();
  write_phase1_case(d);
  // Without an EMA: with one, seqgan and the module load the "ema." tensors alone.
  write_tokenizer(d, rgb_config(), 1, false, {{"decoder.stray.weight", at::zeros({2})}});
  const auto [rc, output] = run_parity(d);
  EXPECT_EQ(rc, 2) << output;
  EXPECT_TRUE(contains(output, "unexpected tensor 'decoder.stray.weight'")) << output;
}
