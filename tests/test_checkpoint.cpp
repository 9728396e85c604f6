// Module checkpoints: metadata, strict loading with one report of every difference, partial
// loading by prefix, and plain safetensors files from Python.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <functional>

#include "remove_tree.h"
#include "seqgan/checkpoint.h"
#include "seqgan/error.h"
#include "seqgan/safetensors.h"

namespace st = seqgan::safetensors;
namespace fs = std::filesystem;
namespace nn = torch::nn;

namespace {

const std::string kFixtures = std::string(SEQGAN_TEST_DATA_DIR) + "/safetensors";

using seqgan::test::TempDir;

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const seqgan::Error& e) {
    return e.what();
  }
  return "<no seqgan::Error thrown>";
}

#define EXPECT_CONTAINS(text, part) \
  EXPECT_NE((text).find(part), std::string::npos) << "expected '" << (part) << "' in:\n" << (text)

struct Quantizer : nn::Module {
  explicit Quantizer(int64_t dim) {
    codebook = register_parameter("codebook", torch::randn({8, dim}));
    usage = register_buffer("usage", torch::zeros({8}));
  }
  at::Tensor codebook, usage;
};

struct Decoder : nn::Module {
  Decoder(int64_t dim, bool with_attn) {
    proj = register_module("proj", nn::Linear(dim, 4));
    if (with_attn) attn = register_module("attn", nn::Linear(dim, dim));
  }
  nn::Linear proj{nullptr}, attn{nullptr};
};

// A phase-1 model (no decoder.attn) or a phase-2 one (with it); `legacy` adds a tensor that newer
// models dropped.
struct Net : nn::Module {
  Net(int64_t dim, bool with_attn, bool legacy = false) {
    encoder = register_module("encoder", nn::Linear(4, dim));
    quantizer = register_module("quantizer", std::make_shared<Quantizer>(dim));
    decoder = register_module("decoder", std::make_shared<Decoder>(dim, with_attn));
    if (legacy) register_parameter("legacy_scale", torch::ones({1}));
  }
  nn::Linear encoder{nullptr};
  std::shared_ptr<Quantizer> quantizer;
  std::shared_ptr<Decoder> decoder;
};

seqgan::CheckpointMeta meta_for(const std::string& kind) {
  seqgan::CheckpointMeta meta;
  meta.kind = kind;
  meta.config_json = R"({"dim":3})";
  meta.step = 500;
  meta.extra["note"] = "phase 1";
  return meta;
}

// Snapshot of the values, to check what a load changed.
std::map<std::string, at::Tensor> values(const nn::Module& m) {
  std::map<std::string, at::Tensor> out;
  for (const auto& [name, t] : seqgan::state_dict(m)) out[name] = t.detach().clone();
  return out;
}

}  // namespace

TEST(Checkpoint, StateDictHasDottedNamesOfParametersAndBuffers) {
  Net net(3, true, true);
  std::vector<std::string> names;
  for (const auto& [name, t] : seqgan::state_dict(net)) names.push_back(name);
  const std::vector<std::string> expected{"decoder.attn.bias",  "decoder.attn.weight", "decoder.proj.bias",
                                          "decoder.proj.weight", "encoder.bias",        "encoder.weight",
                                          "legacy_scale",        "quantizer.codebook",  "quantizer.usage"};
  EXPECT_EQ(names, expected);
}

TEST(Checkpoint, SaveThenLoadRestoresEveryTensorAndTheMetadata) {
  TempDir dir;
  Net a(3, true);
  {
    torch::NoGradGuard g;
    a.quantizer->usage.fill_(7);
  }
  seqgan::save_checkpoint(dir.file("a.safetensors"), a, meta_for("tokenizer"));

  Net b(3, true);
  const auto meta = seqgan::load_checkpoint(dir.file("a.safetensors"), b);
  for (const auto& [name, t] : values(a)) EXPECT_TRUE(torch::equal(seqgan::state_dict(b).at(name), t)) << name;
  EXPECT_TRUE(b.encoder->weight.requires_grad());
  EXPECT_EQ(meta.kind, "tokenizer");
  EXPECT_EQ(meta.config_json, R"({"dim":3})");
  EXPECT_EQ(meta.step, 500);
  EXPECT_EQ(meta.extra, (std::map<std::string, std::string>{{"note", "phase 1"}}));

  const auto header = st::read_header(dir.file("a.safetensors"));
  EXPECT_EQ(header.metadata.at("format"), "seqgan");
  EXPECT_EQ(header.metadata.at("format_version"), "1");
  EXPECT_EQ(header.metadata.at("step"), "500");
}

TEST(Checkpoint, StrictLoadReportsEveryDifferenceAtOnceAndCopiesNothing) {
  TempDir dir;
  Net old_model(3, false, /*legacy=*/true);
  seqgan::save_checkpoint(dir.file("old.safetensors"), old_model, meta_for("tokenizer"));

  Net net(5, true);
  const auto before = values(net);
  const std::string err = error_of([&] { seqgan::load_checkpoint(dir.file("old.safetensors"), net); });
  EXPECT_CONTAINS(err, dir.file("old.safetensors"));
  EXPECT_CONTAINS(err, "missing tensor 'decoder.attn.weight' [5, 5] Float");
  EXPECT_CONTAINS(err, "missing tensor 'decoder.attn.bias' [5] Float");
  EXPECT_CONTAINS(err, "unexpected tensor 'legacy_scale' [1] Float");
  EXPECT_CONTAINS(err, "tensor 'encoder.weight' has wrong shape; expected [5, 4], got [3, 4]");
  EXPECT_CONTAINS(err, "tensor 'encoder.bias' has wrong shape; expected [5], got [3]");
  EXPECT_CONTAINS(err, "tensor 'quantizer.codebook' has wrong shape; expected [8, 5], got [8, 3]");
  EXPECT_CONTAINS(err, "tensor 'decoder.proj.weight' has wrong shape; expected [4, 5], got [4, 3]");
  EXPECT_CONTAINS(err, "(7 differences)");
  EXPECT_CONTAINS(err, "HINT");
  for (const auto& [name, t] : before) EXPECT_TRUE(torch::equal(seqgan::state_dict(net).at(name), t)) << name;
}

TEST(Checkpoint, DtypeMismatchIsAnErrorUnlessConversionIsAsked) {
  TempDir dir;
  Net source(3, false);
  seqgan::save_checkpoint(dir.file("f32.safetensors"), source, meta_for("tokenizer"));

  Net net(3, false);
  net.to(torch::kDouble);
  const std::string err = error_of([&] { seqgan::load_checkpoint(dir.file("f32.safetensors"), net); });
  EXPECT_CONTAINS(err, "tensor 'encoder.weight' has wrong dtype; expected Double, got Float");
  EXPECT_CONTAINS(err, "convert_dtype");

  seqgan::LoadOptions options;
  options.convert_dtype = true;
  seqgan::load_checkpoint(dir.file("f32.safetensors"), net, options);
  EXPECT_EQ(net.encoder->weight.scalar_type(), torch::kDouble);
  EXPECT_TRUE(torch::equal(net.encoder->weight.to(torch::kFloat), source.encoder->weight));
}

TEST(Checkpoint, PartialLoadTakesOnlyTheNamedPrefixes) {
  TempDir dir;
  Net phase1(3, false, /*legacy=*/true);
  seqgan::save_checkpoint(dir.file("phase1.safetensors"), phase1, meta_for("tokenizer"));

  Net phase2(3, true);
  const auto before = values(phase2);
  seqgan::LoadOptions options;
  options.prefixes = {"encoder.", "quantizer."};
  seqgan::load_checkpoint(dir.file("phase1.safetensors"), phase2, options);
  const auto after = values(phase2);
  for (const auto& [name, t] : after) {
    const bool loaded = name.rfind("encoder.", 0) == 0 || name.rfind("quantizer.", 0) == 0;
    EXPECT_TRUE(torch::equal(t, loaded ? values(phase1).at(name) : before.at(name))) << name;
  }
  EXPECT_FALSE(torch::equal(after.at("encoder.weight"), before.at("encoder.weight")));
}

TEST(Checkpoint, PartialLoadIsStrictWithinThePrefixes) {
  TempDir dir;
  Net phase1(3, false);
  seqgan::save_checkpoint(dir.file("phase1.safetensors"), phase1, meta_for("tokenizer"));

  Net wider(5, true);
  seqgan::LoadOptions options;
  options.prefixes = {"encoder.", "quantzer."};
  const std::string err = error_of([&] { seqgan::load_checkpoint(dir.file("phase1.safetensors"), wider, options); });
  EXPECT_CONTAINS(err, "prefix 'quantzer.' matches no tensor of the module");
  EXPECT_CONTAINS(err, "tensor 'encoder.weight' has wrong shape; expected [5, 4], got [3, 4]");
  EXPECT_EQ(err.find("decoder"), std::string::npos) << err;
  EXPECT_CONTAINS(err, "(3 differences)");
}

TEST(Checkpoint, RenameMapsFileKeysOntoModuleKeys) {
  TempDir dir;
  Net source(3, false);
  st::TensorMap prefixed;
  for (const auto& [name, t] : seqgan::state_dict(source)) prefixed["model." + name] = t;
  st::save(dir.file("prefixed.safetensors"), prefixed);

  Net net(3, false);
  const st::File file = st::load(dir.file("prefixed.safetensors"));
  const std::string err = error_of([&] { seqgan::load_state_dict(net, file.tensors); });
  EXPECT_CONTAINS(err, "unexpected tensor 'model.encoder.weight'");
  seqgan::LoadOptions options;
  options.rename = {{"model.", ""}};
  seqgan::load_state_dict(net, file.tensors, options, "prefixed.safetensors");
  EXPECT_TRUE(torch::equal(net.quantizer->codebook, source.quantizer->codebook));
}

// torchvision-style names, as converted VGG16 weights carry them.
struct Classifier : nn::Module {
  Classifier() { register_module("6", nn::Linear(2, 1)); }
};
struct TinyVgg : nn::Module {
  TinyVgg() {
    register_module("features", nn::Sequential(nn::Conv2d(nn::Conv2dOptions(1, 2, 1))));
    register_module("classifier", std::make_shared<Classifier>());
  }
};

TEST(Checkpoint, PlainPythonFileLoadsThroughThePlainApiOnly) {
  const std::string path = kFixtures + "/plain.safetensors";
  TinyVgg net;
  const std::string err = error_of([&] { seqgan::load_checkpoint(path, net); });
  EXPECT_CONTAINS(err, "not a seqgan checkpoint");
  EXPECT_CONTAINS(err, "safetensors::load and load_state_dict");

  seqgan::load_state_dict(net, st::load(path).tensors, {}, path);
  const auto sd = seqgan::state_dict(net);
  EXPECT_TRUE(torch::equal(sd.at("features.0.weight").flatten(), torch::tensor({1.0f, 2.0f})));
  EXPECT_TRUE(torch::equal(sd.at("features.0.bias"), torch::tensor({0.5f, -0.5f})));
  EXPECT_TRUE(torch::equal(sd.at("classifier.6.weight"), torch::tensor({{3.0f, 4.0f}})));
  EXPECT_TRUE(torch::equal(sd.at("classifier.6.bias"), torch::tensor({0.25f})));
}

TEST(Checkpoint, PythonWrittenMetadataParses) {
  const auto meta = seqgan::read_checkpoint_meta(kFixtures + "/all_dtypes.safetensors");
  EXPECT_EQ(meta.kind, "test");
  EXPECT_EQ(meta.step, 1234);
  EXPECT_EQ(meta.config_json, R"({"dim":8,"name":"fixture"})");
  EXPECT_EQ(meta.extra, (std::map<std::string, std::string>{{"writer", "python"}}));
}

TEST(Checkpoint, RejectsForeignFormatNewerVersionAndWrongKind) {
  TempDir dir;
  Net net(3, false);
  auto metadata = meta_for("tokenizer").to_metadata();
  const auto tensors = seqgan::state_dict(net);

  metadata["format_version"] = "2";
  st::save(dir.file("v2.safetensors"), tensors, metadata);
  const std::string newer = error_of([&] { seqgan::load_checkpoint(dir.file("v2.safetensors"), net); });
  EXPECT_CONTAINS(newer, "format_version 2, newer than this build reads (1)");
  EXPECT_CONTAINS(newer, "v2.safetensors");

  metadata["format_version"] = "1";
  metadata["format"] = "other";
  st::save(dir.file("other.safetensors"), tensors, metadata);
  EXPECT_CONTAINS(error_of([&] { seqgan::load_checkpoint(dir.file("other.safetensors"), net); }), "found 'other'");

  seqgan::save_checkpoint(dir.file("t.safetensors"), net, meta_for("transformer"));
  seqgan::LoadOptions options;
  options.expected_kind = "tokenizer";
  EXPECT_CONTAINS(error_of([&] { seqgan::load_checkpoint(dir.file("t.safetensors"), net, options); }),
                  "expected a 'tokenizer' checkpoint, found kind 'transformer'");
}

TEST(Checkpoint, MetadataIsValidatedBothWays) {
  auto meta = meta_for("tokenizer");
  const auto round = seqgan::CheckpointMeta::from_metadata(meta.to_metadata());
  EXPECT_EQ(round.kind, meta.kind);
  EXPECT_EQ(round.step, meta.step);
  EXPECT_EQ(round.extra, meta.extra);

  auto bad = meta;
  bad.extra["step"] = "9";
  EXPECT_CONTAINS(error_of([&] { bad.to_metadata(); }), "'step' is reserved");
  bad = meta;
  bad.config_json = "{dim: 3";
  EXPECT_CONTAINS(error_of([&] { bad.to_metadata(); }), "not valid JSON");
  bad = meta;
  bad.kind.clear();
  EXPECT_CONTAINS(error_of([&] { bad.to_metadata(); }), "kind");

  for (const char* step : {"12x", "", "-1", "+3", "99999999999999999999"}) {
    auto metadata = meta.to_metadata();
    metadata["step"] = step;
    EXPECT_CONTAINS(error_of([&] { seqgan::CheckpointMeta::from_metadata(metadata, "f.safetensors"); }),
                    "expected step to be a non-negative integer");
  }
  auto metadata = meta.to_metadata();
  metadata.erase("kind");
  EXPECT_CONTAINS(error_of([&] { seqgan::CheckpointMeta::from_metadata(metadata, "f.safetensors"); }), "no 'kind'");
}
