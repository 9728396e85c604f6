// tools/convert_maskgit_vqgan.py: MaskGIT's VQGAN as open-muse publishes it (MaskGitVQGAN)
// becomes a seqgan tokenizer whose codes and decoded images are open-muse's. The reference
// (tools/maskgit_fixtures.py: a small random MaskGitVQGAN in open-muse's layout, 8-bit test
// images, and an independent implementation's latents, codes and decoded images) is generated on
// first use (python_fixtures.h); the converter runs on it here, from the .bin, the .safetensors
// and the folder. Needs /usr/bin/python3 with torch and torchvision, like the other parity tests.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "cli_capture.h"
#include "python_fixtures.h"
#include "remove_tree.h"
#include "seqgan/checkpoint.h"
#include "seqgan/config.h"
#include "seqgan/data.h"
#include "seqgan/error.h"
#include "seqgan/image.h"
#include "seqgan/models.h"
#include "seqgan/safetensors.h"
#include "tokenizer/tokenizer.h"

namespace fs = std::filesystem;
namespace st = seqgan::safetensors;
using seqgan::test::expect_close;
using seqgan::test::TempDir;

namespace {

std::string fixture_dir() {
  static const std::string dir = seqgan::test::python_fixture_dir("maskgit", {"maskgit_fixtures.py", "weights_io.py"});
  return dir;
}

const st::TensorMap& expected() {
  static const st::TensorMap tensors = st::load(fixture_dir() + "/expected.safetensors").tensors;
  return tensors;
}

// `python3 tools/convert_maskgit_vqgan.py args...`: (exit status, -1 if it did not exit; output).
std::pair<int, std::string> convert(const std::vector<std::string>& args) {
  TempDir logs("maskgit-log");
  const std::string log = logs / "log.txt";
  std::string cmd = "/usr/bin/python3 '" + std::string(SEQGAN_SOURCE_DIR) + "/tools/convert_maskgit_vqgan.py'";
  for (const auto& a : args) cmd += " '" + a + "'";
  cmd += " > '" + log + "' 2>&1";
  const int rc = std::system(cmd.c_str());
  return {WIFEXITED(rc) ? WEXITSTATUS(rc) : -1, seqgan::test::read_file_text(log)};
}

// The fixture converted once per process, from the folder (config.json gives the resolution).
std::string converted() {
  static TempDir dir("maskgit");
  static const std::string path = [] {
    const std::string out = dir / "maskgit.safetensors";
    const auto [rc, output] = convert({fixture_dir() + "/muse", out});
    EXPECT_EQ(rc, 0) << output;
    return out;
  }();
  return path;
}

// The test images in file-name order (the order of expected.safetensors and of ImageFolder).
std::vector<std::string> image_paths() {
  std::vector<std::string> paths;
  for (const auto& e : fs::directory_iterator(fixture_dir() + "/images")) paths.push_back(e.path().string());
  std::sort(paths.begin(), paths.end());
  return paths;
}

// expected "pixels" U8 [N, H, W, 3] -> seqgan's input [N, 3, H, W] in [-1, 1].
at::Tensor expected_inputs() {
  return expected().at("pixels").to(at::kFloat).permute({0, 3, 1, 2}).contiguous() / 127.5 - 1.0;
}

#define EXPECT_CONTAINS(text, part) EXPECT_NE((text).find(part), std::string::npos) << "expected '" << (part) << "' in:\n" << (text)

}  // namespace

TEST(MaskgitConvert, FileDescribesTheFixturesArchitecture) {
  if (fixture_dir().empty()) return;
  const auto tok = seqgan::TokenizerModel::load(converted(), "cpu");
  EXPECT_EQ(tok.resolution(), 64);
  EXPECT_EQ(tok.channels(), 3);
  EXPECT_EQ(tok.grid(), 8);
  EXPECT_EQ(tok.codebook_size(), 64);
  EXPECT_EQ(tok.phase(), 1);
  const seqgan::CheckpointMeta meta = seqgan::read_checkpoint_meta(converted());
  EXPECT_EQ(meta.kind, "tokenizer");
  EXPECT_EQ(meta.step, 0);
  const seqgan::Config c = seqgan::config_from_json(meta.config_json);
  EXPECT_EQ(c.tokenizer.base_channels, 32);
  EXPECT_EQ(c.tokenizer.channel_mult, (std::vector<int>{1, 2, 2, 4}));
  EXPECT_EQ(c.tokenizer.num_res_blocks, 2);
  EXPECT_EQ(c.tokenizer.mid_res_blocks, 2);
  EXPECT_EQ(c.tokenizer.code_dim, 32);
  EXPECT_TRUE(c.tokenizer.maskgit_skip);
  EXPECT_EQ(c.tokenizer.input_range, "0_1");
  EXPECT_EQ(c.quantizer.kind, "nearest");
}

TEST(MaskgitConvert, TransformGivesOpenMusesPixels) {
  // open-muse's example transform (RGB, Resize bilinear, CenterCrop) is seqgan's evaluation
  // transform: the grey image and the 96x80 one included.
  if (fixture_dir().empty()) return;
  seqgan::TransformOptions options;
  options.resolution = 64;
  options.channels = 3;
  const seqgan::Transform transform(options);
  const auto paths = image_paths();
  const at::Tensor pixels = expected().at("pixels");
  ASSERT_EQ(static_cast<int64_t>(paths.size()), pixels.size(0));
  for (size_t i = 0; i < paths.size(); ++i) {
    const seqgan::Image img = transform.apply(seqgan::read_image(paths[i], 3), 0, 0, static_cast<int64_t>(i));
    ASSERT_EQ(img.width, 64);
    ASSERT_EQ(img.height, 64);
    const at::Tensor mine = at::from_blob(const_cast<uint8_t*>(img.pixels.data()), {64, 64, 3}, at::kByte);
    EXPECT_TRUE(at::equal(mine, pixels[static_cast<int64_t>(i)])) << paths[i];
  }
}

TEST(MaskgitConvert, EncoderOutputIsOpenMuses) {
  if (fixture_dir().empty()) return;
  auto loaded = seqgan::load_tokenizer(converted(), torch::Device(torch::kCPU));
  torch::NoGradGuard ng;
  const at::Tensor latents = loaded.model->encoder(expected_inputs());
  // float32 through ~20 layers: about 1e-4 of the scale (GroupNorm of [0, 1] inputs); the
  // reference is float64.
  expect_close(latents, expected().at("latents"), "latents", 1e-3, 1e-3);
}

TEST(MaskgitConvert, CodesAreOpenMusesFromImages) {
  if (fixture_dir().empty()) return;
  const auto tok = seqgan::TokenizerModel::load(converted(), "cpu");
  std::vector<seqgan::Image> images;
  for (const auto& p : image_paths()) images.push_back(seqgan::read_image(p, 3));
  const at::Tensor codes = tok.encode(images);
  const at::Tensor want = expected().at("codes");
  ASSERT_EQ(codes.sizes(), want.sizes());
  EXPECT_EQ((codes != want).sum().item<int64_t>(), 0) << "codes differing from open-muse's";
  EXPECT_TRUE(at::equal(tok.encode_tensor(expected_inputs()), want));
}

TEST(MaskgitConvert, DecodedImagesAreOpenMusesMappedToMinusOneOne) {
  if (fixture_dir().empty()) return;
  const auto tok = seqgan::TokenizerModel::load(converted(), "cpu");
  const at::Tensor decoded = tok.decode_tensor(expected().at("codes"));
  expect_close(decoded, expected().at("decoded"), "decoded", 5e-4, 5e-4);
}

TEST(MaskgitConvert, TokenizeCommandWritesOpenMusesCodes) {
  if (fixture_dir().empty()) return;
  TempDir dir("maskgit-tokens");
  const std::string out = dir / "tokens.safetensors";
  const auto r = seqgan::test::run_cli_captured({"tokenize", "--tokenizer", converted(), "--set",
                                                 "data.root=" + fixture_dir() + "/images", "--split", "train", "--out",
                                                 out, "--device", "cpu"});
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  const at::Tensor indices = st::load(out).tensors.at("indices").to(at::kLong);
  EXPECT_TRUE(at::equal(indices, expected().at("codes")));
}

TEST(MaskgitConvert, BinSafetensorsAndFolderGiveTheSameTokenizer) {
  if (fixture_dir().empty()) return;
  TempDir dir("maskgit-inputs");
  const std::string muse = fixture_dir() + "/muse";
  // Without config.json beside them, --resolution gives the resolution.
  fs::copy_file(muse + "/pytorch_model.bin", dir / "pytorch_model.bin");
  fs::copy_file(muse + "/pytorch_model.safetensors", dir / "pytorch_model.safetensors");
  for (const std::string name : {"pytorch_model.bin", "pytorch_model.safetensors"}) {
    const auto [rc, output] = convert({dir / name, dir / (name + ".out"), "--resolution", "64"});
    ASSERT_EQ(rc, 0) << output;
    const st::File a = st::load(converted()), b = st::load(dir / (name + ".out"));
    EXPECT_EQ(a.header.metadata.at("config"), b.header.metadata.at("config")) << name;
    ASSERT_EQ(a.tensors.size(), b.tensors.size()) << name;
    for (const auto& [key, t] : a.tensors) EXPECT_TRUE(at::equal(t, b.tensors.at(key))) << name << ": " << key;
  }
}

TEST(MaskgitConvert, RefusesAnotherModelListingEveryDifference) {
  if (fixture_dir().empty()) return;
  TempDir dir("maskgit-broken");
  st::TensorMap sd = st::load(fixture_dir() + "/muse/pytorch_model.safetensors").tensors;
  sd.erase("decoder.up.2.block.0.nin_shortcut.weight");
  sd["encoder.mid.1.attn.norm.bias"] = sd.at("encoder.mid.1.norm1.bias");
  sd.erase("encoder.mid.1.norm1.bias");
  sd["decoder.conv_in.bias"] = at::zeros({7});
  const std::string in = dir / "broken.safetensors", out = dir / "out.safetensors";
  st::save(in, sd);
  const auto [rc, output] = convert({in, out, "--resolution", "64"});
  EXPECT_EQ(rc, 1) << output;
  EXPECT_CONTAINS(output, "not open-muse's MaskGitVQGAN (4 difference(s))");
  EXPECT_CONTAINS(output, "missing tensor 'decoder.up.2.block.0.nin_shortcut.weight' [64, 64, 1, 1]");
  EXPECT_CONTAINS(output, "missing tensor 'encoder.mid.1.norm1.bias' [128]");
  EXPECT_CONTAINS(output, "unexpected tensor 'encoder.mid.1.attn.norm.bias' [128]");
  EXPECT_CONTAINS(output, "tensor 'decoder.conv_in.bias' has wrong shape; expected [128], got [7]");
  EXPECT_CONTAINS(output, "HINT");
  EXPECT_FALSE(fs::exists(out));

  // A config.json that does not describe the weights is refused too.
  fs::create_directories(dir / "cfg");
  fs::copy_file(fixture_dir() + "/muse/pytorch_model.safetensors", dir / "cfg/pytorch_model.safetensors");
  std::string config = seqgan::test::read_file_text(fixture_dir() + "/muse/config.json");
  const std::string given = "\"num_embeddings\": 64";
  const auto pos = config.find(given);
  ASSERT_NE(pos, std::string::npos) << config;
  config.replace(pos, given.size(), "\"num_embeddings\": 1024");
  std::ofstream(dir / "cfg/config.json") << config;
  const auto [rc2, output2] = convert({dir / "cfg", out});
  EXPECT_EQ(rc2, 1) << output2;
  EXPECT_CONTAINS(output2, "num_embeddings 1024 in the config, 64 in the weights");
}

TEST(MaskgitConvert, PublishedConfigurationBecomesThePaperPreset) {
  // openMUSE/maskgit-vqgan-imagenet-f16-256 is MaskGitVQGAN() with its defaults: a state dict of
  // those shapes (seqgan's paper tokenizer, renamed to open-muse's layout; 218 MB) converts
  // into the paper preset's tokenizer, 256x256 -> 16x16 codes of 1024, with every tensor in place.
  if (fixture_dir().empty()) return;
  torch::manual_seed(3);
  const seqgan::Config paper = seqgan::make_preset("paper");
  seqgan::Tokenizer source(paper.tokenizer, paper.quantizer, 3);
  st::TensorMap muse;
  for (const auto& [key, t] : seqgan::state_dict(*source)) {
    std::string k = key;
    auto swap = [&](const std::string& from, const std::string& to) {
      const auto p = k.find(from);
      if (p != std::string::npos) k.replace(p, from.size(), to);
    };
    swap(".skip.", ".nin_shortcut.");
    swap(".upsample.conv.", ".upsample_conv.");
    if (k == "quantizer.embedding") k = "quantize.embedding.weight";
    muse[k] = t.contiguous();
  }
  TempDir dir("maskgit-paper");
  st::save(dir / "pytorch_model.safetensors", muse);
  const std::string out = dir / "tokenizer.safetensors";
  const auto [rc, output] = convert({dir / "pytorch_model.safetensors", out});  // default resolution 256
  ASSERT_EQ(rc, 0) << output;
  EXPECT_CONTAINS(output, "1024 codes of 256, base width 128, channel_mult [1, 1, 2, 2, 4], 2 blocks per level, "
                          "256x256 images -> 16x16 codes");

  auto loaded = seqgan::load_tokenizer(out, torch::Device(torch::kCPU));
  seqgan::TokenizerConfig want = paper.tokenizer;
  want.input_range = "0_1";
  EXPECT_EQ(seqgan::config_to_json(loaded.config), [&] {
    seqgan::Config c = loaded.config;
    c.tokenizer = want;
    return seqgan::config_to_json(c);
  }());
  EXPECT_EQ(loaded.config.data.resolution, 256);
  EXPECT_EQ(seqgan::count_parameters(*loaded.model), 54515587);
  const auto mine = seqgan::state_dict(*loaded.model), theirs = seqgan::state_dict(*source);
  for (const auto& [key, t] : theirs) {
    if (key.rfind("decoder.conv_out.", 0) == 0) continue;
    EXPECT_TRUE(at::equal(mine.at(key).contiguous(), t.contiguous())) << key;
  }
  // The [0, 1] -> [-1, 1] output map, folded: W' = 2 W, b' = 2 b - 1.
  expect_close(mine.at("decoder.conv_out.weight"), 2 * theirs.at("decoder.conv_out.weight"), "conv_out.weight", 0, 0);
  expect_close(mine.at("decoder.conv_out.bias"), 2 * theirs.at("decoder.conv_out.bias") - 1, "conv_out.bias", 1e-6, 1e-6);
}

// tokenizer.input_range, which converted files carry, on its own.
TEST(MaskgitConvert, InputRangeZeroOneMapsBeforeTheFirstConvolution) {
  torch::manual_seed(0);
  seqgan::Config c = seqgan::make_preset("fmnist");
  seqgan::Tokenizer plain(c.tokenizer, c.quantizer, 1);
  c.tokenizer.input_range = "0_1";
  seqgan::Tokenizer unit(c.tokenizer, c.quantizer, 1);
  seqgan::load_state_dict(*unit, seqgan::state_dict(*plain));
  plain->eval();
  unit->eval();
  torch::NoGradGuard ng;
  const at::Tensor x = torch::rand({2, 1, 32, 32}) * 2 - 1;
  expect_close(unit->encoder(x), plain->encoder((x + 1) / 2), "encoder", 1e-5, 1e-5);
  const at::Tensor codes = torch::randint(c.tokenizer.codebook_size, {2, 8, 8}, at::kLong);
  EXPECT_TRUE(at::equal(unit->decode_indices(codes), plain->decode_indices(codes)));  // the decoder is untouched
  c.tokenizer.input_range = "0_255";
  EXPECT_THROW(seqgan::validate(c), seqgan::Error);
}
