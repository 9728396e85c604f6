#include <gtest/gtest.h>

#include <algorithm>

#include <nlohmann/json.hpp>

#include "seqgan/config.h"
#include "seqgan/error.h"
#include "train/state.h"

using namespace seqgan;

namespace {
// Runs f, expects a seqgan::Error whose text contains every one of `parts`.
template <class F>
void expect_error(F&& f, std::initializer_list<std::string> parts) {
  try {
    f();
    FAIL() << "expected seqgan::Error";
  } catch (const Error& e) {
    const std::string what = e.what();
    for (const auto& p : parts) EXPECT_NE(what.find(p), std::string::npos) << "'" << p << "' not in: " << what;
  }
}
}  // namespace

TEST(Config, PresetsResolveAndValidate) {
  for (const auto& name : preset_names()) {
    const Config c = make_preset(name);
    EXPECT_EQ(c.preset, name);
    EXPECT_NO_THROW(validate(c));
  }
  const Config paper = make_preset("paper");
  EXPECT_EQ(paper.tokenizer.codebook_size, 1024);
  EXPECT_EQ(latent_size(paper), 16);
  EXPECT_EQ(transformer_seq_len(paper), 256);
  EXPECT_EQ(transformer_vocab_size(paper), 1024 + 1000 + 1);
  EXPECT_EQ(make_preset("paper-large").transformer.width, 1024);
  const Config fm = make_preset("fmnist");
  EXPECT_EQ(fm.data.channels, 1);
  EXPECT_EQ(latent_size(fm), 8);
}

// The unconditional data sets of the supplement's Tables 3 and 4.
TEST(Config, UnconditionalPresetsCarryThePapersSettings) {
  struct Row {
    const char* preset;
    const char* dataset;
    int64_t batch1, iters1, batch2, batch_transformer;
  };
  for (const Row& r : {Row{"ffhq", "image-folder", 64, 300000, 32, 32}, Row{"lsun-cat", "lmdb", 64, 26000, 64, 256},
                       Row{"lsun-bedroom", "lmdb", 64, 48000, 64, 256}, Row{"lsun-church", "lmdb", 32, 4000, 32, 64}}) {
    const Config c = make_preset(r.preset);
    EXPECT_EQ(c.data.dataset, r.dataset) << r.preset;
    EXPECT_EQ(c.transformer.num_classes, 0) << r.preset;
    EXPECT_EQ(c.train_tokenizer.batch_size, r.batch1) << r.preset;
    EXPECT_EQ(c.train_tokenizer.iterations, r.iters1) << r.preset;
    EXPECT_EQ(c.phase2.train.batch_size, r.batch2) << r.preset;
    EXPECT_EQ(c.phase2.train.iterations, 200000) << r.preset;
    EXPECT_EQ(c.train_ar.batch_size, r.batch_transformer) << r.preset;
    EXPECT_EQ(c.train_nar.batch_size, r.batch_transformer) << r.preset;
    EXPECT_EQ(c.train_ar.iterations, 500000) << r.preset;
    EXPECT_DOUBLE_EQ(c.sample.top_p, 0.98) << r.preset;
    EXPECT_DOUBLE_EQ(c.sample.sample_temperature, 0.65) << r.preset;
    const bool lsun = std::string(r.dataset) == "lmdb";
    EXPECT_DOUBLE_EQ(c.train_tokenizer.lr, lsun ? 5e-5 : 1e-4) << r.preset;
    EXPECT_EQ(c.train_tokenizer.lr_schedule, lsun ? "constant" : "cosine") << r.preset;
  }
}

TEST(Config, WrongPresetNameIsAnErrorListingPresets) {
  expect_error([] { make_preset("papper"); }, {"unknown preset 'papper'", "fmnist", "paper-large"});
}

TEST(Config, JsonRoundTrip) {
  Config c = make_preset("fmnist");
  c.tokenizer.channel_mult = {1, 2, 4, 4};
  c.perceptual.alpha = 0.25;
  c.seed = 1234567890123ULL;
  const std::string text = config_to_json(c);
  const Config back = config_from_json(text);
  EXPECT_EQ(config_to_json(back), text);
  EXPECT_EQ(back.tokenizer.channel_mult, (std::vector<int>{1, 2, 4, 4}));
  EXPECT_EQ(back.seed, 1234567890123ULL);
}

TEST(Config, FileNamesItsPresetAndOverrides) {
  const Config c = config_from_json(R"({"preset": "fmnist", "tokenizer": {"codebook_size": 128}})");
  EXPECT_EQ(c.preset, "fmnist");
  EXPECT_EQ(c.tokenizer.codebook_size, 128);
  EXPECT_EQ(c.data.channels, 1);  // from the preset
}

TEST(Config, UnknownKeyNamesItAndSuggestsClosest) {
  expect_error([] { config_from_json(R"({"tokenizer": {"codebok_size": 512}})"); },
               {"unknown key 'tokenizer.codebok_size'", "did you mean 'tokenizer.codebook_size'"});
  Config c;
  expect_error([&] { config_set(c, "quantiser.beta", "0.5"); }, {"'quantiser.beta'", "quantizer.beta"});
}

TEST(Config, OutOfRangeValueNamesFieldAndRange) {
  Config c = make_preset("fmnist");
  config_set(c, "perceptual.alpha", "1.5");
  expect_error([&] { validate(c); }, {"perceptual.alpha = 1.5", "out of range [0, 1]"});
  expect_error([] { config_from_json(R"({"data": {"resolution": 0}})"); }, {"data.resolution = 0", "[8, 4096]"});
  expect_error([] { config_from_json(R"({"device": "tpu"})"); }, {"device = \"tpu\"", "auto | cpu | cuda"});
}

TEST(Config, WrongTypeIsAnError) {
  Config c;
  expect_error([&] { config_set(c, "tokenizer.base_channels", "wide"); }, {"tokenizer.base_channels expects an integer"});
  expect_error([&] { config_set(c, "tokenizer.base_channels", "1.5"); }, {"expects an integer"});
  expect_error([&] { config_set(c, "data.hflip", "maybe"); }, {"data.hflip expects true or false"});
  expect_error([&] { config_set(c, "tokenizer.channel_mult", "3"); }, {"list of integers"});
  expect_error([] { config_from_json("{not json"); }, {"not valid JSON"});
  expect_error([] { config_from_json("[1, 2]"); }, {"expected a JSON object"});
}

TEST(Config, CrossFieldRules) {
  Config c = make_preset("paper");
  c.data.resolution = 200;  // not divisible by f = 16
  expect_error([&] { validate(c); }, {"data.resolution (200)", "f = 16"});
  c = make_preset("paper");
  c.transformer.heads = 7;
  expect_error([&] { validate(c); }, {"transformer.width (768)", "transformer.heads (7)"});
  c = make_preset("paper");
  c.perceptual.sem_taps = {"relu5_3", "logits"};
  expect_error([&] { validate(c); }, {"tap 'logits' is unknown"});
}

TEST(Config, OverridesParseEveryType) {
  Config c = make_preset("paper");
  config_apply_override(c, "tokenizer.channel_mult=[1,2]");
  config_apply_override(c, "data.hflip=false");
  config_apply_override(c, "data.root=/tmp/some dir");
  config_apply_override(c, "train_ar.lr=3e-4");
  config_apply_override(c, "perceptual.sem_taps=[\"logit\"]");
  config_apply_override(c, "seed=42");
  EXPECT_EQ(c.tokenizer.channel_mult, (std::vector<int>{1, 2}));
  EXPECT_FALSE(c.data.hflip);
  EXPECT_EQ(c.data.root, "/tmp/some dir");
  EXPECT_DOUBLE_EQ(c.train_ar.lr, 3e-4);
  EXPECT_EQ(c.perceptual.sem_taps, (std::vector<std::string>{"logit"}));
  EXPECT_EQ(c.seed, 42u);
  expect_error([&] { config_apply_override(c, "no-equals-sign"); }, {"not of the form key=value"});
}

TEST(Config, ASetListKeepsEachKeyOnceWithItsLastValue) {
  EXPECT_EQ(last_assignments({"seed=1", "data.root=/a=b", "seed=2", "train_ar.lr=1e-4", "data.root=/c"}),
            (std::vector<std::string>{"seed=2", "data.root=/c", "train_ar.lr=1e-4"}));
  EXPECT_EQ(last_assignments({}), std::vector<std::string>{});
  // Applied in order, the kept list gives the configuration the whole list gives.
  const std::vector<std::string> list{"seed=7", "train_ar.lr=3e-4", "seed=9"};
  Config all = make_preset("paper"), kept = make_preset("paper");
  for (const auto& a : list) config_apply_override(all, a);
  for (const auto& a : last_assignments(list)) config_apply_override(kept, a);
  EXPECT_EQ(config_to_json(all), config_to_json(kept));
  EXPECT_EQ(kept.seed, 9u);
}

TEST(Config, EveryRegisteredFieldCanBeSetFromItsOwnPrintedValue) {
  // The registry's printed values must parse back: help text, JSON and --set agree.
  const Config c = make_preset("fmnist");
  for (const auto& f : config_fields(c)) {
    Config copy = make_preset("paper");
    EXPECT_NO_THROW(config_set(copy, f.path, f.value)) << f.path << " = " << f.value;
    EXPECT_FALSE(f.help.empty()) << f.path;
  }
  Config copy = make_preset("paper");
  for (const auto& f : config_fields(c)) config_set(copy, f.path, f.value);
  EXPECT_EQ(config_to_json(copy), config_to_json(c));
}

TEST(Config, InvalidUtf8IsAnErrorNotACrash) {
  // Found by fuzz_config: a value that is not UTF-8 made the error message itself throw.
  Config c = make_preset("fmnist");
  EXPECT_THROW(config_set(c, "train_ar.lr", "\xc1" "e-4"), Error);
  config_set(c, "data.root", "/data/\xff");
  EXPECT_NO_THROW(config_to_json(c));
}

TEST(Config, NumberOutOfRangeIsAnError) {
  // Found by fuzz_config: nlohmann reports 1e999 as out_of_range, not as a parse error.
  EXPECT_THROW(config_from_json(R"({"data": 333e556886})"), Error);
  Config c;
  EXPECT_THROW(config_set(c, "train_ar.lr", "1e999"), Error);
}

// Phase 2 reads one complete section: every setting of a tokenizer phase has a phase2 key, and
// a configuration written when phase 2 borrowed the rest from train_tokenizer loads meaning what
// it meant then.
TEST(Config, Phase2IsOneCompleteSectionAndOlderFilesKeepTheirMeaning) {
  const Config paper = make_preset("paper");
  std::vector<std::string> phase1, phase2;
  for (const auto& f : config_fields(paper)) {
    if (f.path.rfind("train_tokenizer.", 0) == 0) phase1.push_back(f.path.substr(16));
    if (f.path.rfind("phase2.", 0) == 0) phase2.push_back(f.path.substr(7));
  }
  ASSERT_FALSE(phase1.empty());
  for (const auto& key : phase1)
    EXPECT_NE(std::find(phase2.begin(), phase2.end(), key), phase2.end()) << "phase2." << key << " is missing";

  nlohmann::json older = nlohmann::json::parse(config_to_json(make_preset("fmnist")));
  for (const char* key : {"lr_schedule", "warmup", "d_lr", "l1_weight", "checkpoint_every", "max_nonfinite",
                          "autocast_bf16", "ema_decay"})
    older["phase2"].erase(key);
  older["phase2"]["log_every"] = 0;  // "train_tokenizer's"
  older["phase2"]["image_every"] = 7;
  older["train_tokenizer"]["d_lr"] = 0.003;
  older["train_tokenizer"]["log_every"] = 11;
  older["train_tokenizer"]["ema_decay"] = 0.5;
  const Config c = config_from_json(older.dump());
  EXPECT_DOUBLE_EQ(c.phase2.train.d_lr, 0.003);
  EXPECT_EQ(c.phase2.train.log_every, 11);
  EXPECT_EQ(c.phase2.train.image_every, 7);
  EXPECT_DOUBLE_EQ(c.phase2.train.ema_decay, 0.5);
  EXPECT_EQ(c.phase2.train.lr_schedule, "cosine");
  EXPECT_DOUBLE_EQ(c.phase2.train.lr, 1e-4);  // its own, as before
}

TEST(Config, AResumedRunTakesTheScheduleButNotWhatFixesTheModel) {
  for (const char* key : {"train_tokenizer.lr", "train_tokenizer.iterations", "train_tokenizer.log_every", "phase2.lr",
                          "phase2.lr_schedule", "phase2.iterations", "phase2.log_every", "phase2.checkpoint_every",
                          "train_ar.lr", "train_nar.iterations", "data.root", "threads"})
    EXPECT_TRUE(resumable_override(key)) << key;
  for (const char* key : {"phase2.alpha", "phase2.attn_pairs", "phase2.fresh_discriminator", "phase2.batch_size",
                          "phase2.ema_decay", "train_tokenizer.batch_size", "train_ar.class_dropout", "tokenizer.codebook_size",
                          "perceptual.alpha", "seed", "data.resolution", "transformer.layers"})
    EXPECT_FALSE(resumable_override(key)) << key;
}
