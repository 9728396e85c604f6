#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "seqgan/checkpoint.h"
#include "seqgan/data.h"
#include "tiny.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokens.h"
#include "train/tokenizer_trainer.h"

using namespace seqgan;

namespace {
using test::losses;
using test::same_weights;

class TokenizerTrainer : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = test::temp_dir(::testing::UnitTest::GetInstance()->current_test_info()->name());
    config = test::tiny_tokenizer_config(test::stand_in_loss_network(dir));
  }
  TokenizerTrainResult run(const std::string& name, int phase = 1, bool resume = false, int64_t max_steps = -1,
                           const std::string& init = "") {
    TokenizerTrainOptions o;
    o.config = config;
    o.run_dir = dir + "/" + name;
    o.phase = phase;
    o.resume = resume;
    o.max_steps = max_steps;
    o.init = init;
    return train_tokenizer(o);
  }
  std::string dir;
  Config config;
};
}  // namespace

TEST_F(TokenizerTrainer, ResumeContinuesExactly) {
  const auto full = run("full");
  EXPECT_EQ(full.step, 6);
  EXPECT_FALSE(full.interrupted);
  const auto first = run("split", 1, false, 4);  // stops after 4 steps, past the GAN start and an R1 step
  EXPECT_TRUE(first.interrupted);
  EXPECT_EQ(first.step, 4);
  const auto second = run("split", 1, true);
  EXPECT_EQ(second.step, 6);
  const auto a = losses(dir + "/full", "tokenizer_phase1"), b = losses(dir + "/split", "tokenizer_phase1");
  ASSERT_EQ(a.size(), 6u);
  ASSERT_EQ(b.size(), 6u);
  for (const auto& [step, loss] : a) EXPECT_EQ(b.at(step), loss) << "step " << step;
  EXPECT_TRUE(same_weights(dir + "/full/tokenizer.safetensors", dir + "/split/tokenizer.safetensors"));
}

TEST_F(TokenizerTrainer, StopFlagWritesACheckpoint) {
  TokenizerTrainOptions o;
  o.config = config;
  o.run_dir = dir + "/stopped";
  int polls = 0;
  o.stop = [&] { return ++polls > 2; };  // as if SIGINT arrived during step 3
  const auto r = train_tokenizer(o);
  EXPECT_TRUE(r.interrupted);
  EXPECT_EQ(r.step, 2);
  EXPECT_EQ(read_checkpoint_meta(dir + "/stopped/tokenizer.safetensors").step, 2);
  EXPECT_EQ(read_checkpoint_meta(dir + "/stopped/checkpoint.safetensors").step, 2);
}

TEST_F(TokenizerTrainer, Phase2KeepsIndicesAndStartsFromPhase1Reconstructions) {
  run("p1");
  const std::string p1 = dir + "/p1/tokenizer.safetensors";
  auto before = load_tokenizer(p1, torch::kCPU);
  auto data = std::make_shared<FashionMnist>(config.data.root, "test");
  TransformOptions t;
  t.resolution = 16;
  t.pad = 2;
  const auto tokens_before = tokenize_dataset(*before.model, *data, t, 32, 64).first;

  // Step 0 of phase 2: the added attention is the identity, reconstructions are phase 1's.
  auto p2 = load_tokenizer(p1, torch::kCPU);
  p2.model->decoder->add_attention(1, p2.config.tokenizer);
  {
    torch::NoGradGuard ng;
    const auto idx = tokens_before.slice(0, 0, 16);
    EXPECT_TRUE(torch::equal(p2.model->decode_indices(idx), before.model->decode_indices(idx)));
  }

  const auto r = run("p2", 2, false, -1, p1);
  EXPECT_EQ(r.step, 4);
  auto after = load_tokenizer(dir + "/p2/tokenizer.safetensors", torch::kCPU);
  EXPECT_EQ(after.phase, 2);
  EXPECT_EQ(after.config.tokenizer.decoder_attn_pairs, 1);
  const auto tokens_after = tokenize_dataset(*after.model, *data, t, 32, 64).first;
  EXPECT_TRUE(torch::equal(tokens_before, tokens_after));
  // Encoder and codebook untouched, decoder changed.
  const auto w1 = safetensors::load(p1).tensors, w2 = safetensors::load(dir + "/p2/tokenizer.safetensors").tensors;
  EXPECT_TRUE(torch::equal(w1.at("quantizer.embedding"), w2.at("quantizer.embedding")));
  EXPECT_TRUE(torch::equal(w1.at("encoder.conv_in.weight"), w2.at("encoder.conv_in.weight")));
  EXPECT_FALSE(torch::equal(w1.at("decoder.conv_out.weight"), w2.at("decoder.conv_out.weight")));
}

TEST_F(TokenizerTrainer, MissingLossNetworkIsAnError) {
  config.perceptual.weights = dir + "/nope.safetensors";
  EXPECT_THROW(run("bad"), Error);
}

TEST_F(TokenizerTrainer, ResumeWithoutCheckpointIsAnError) {
  try {
    run("never", 1, true);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("nothing to resume"), std::string::npos) << e.what();
  }
}

// The Table 5 quantisers: factorised L2-normalised codes with the k-means re-estimation on top
// train, resume exactly (the re-estimation draws from a generator of the step), and load back.
TEST_F(TokenizerTrainer, FactorizedCodesWithKMeansResumeExactlyAndLoad) {
  config.quantizer.kind = "factorized";
  config.quantizer.factor_dim = 4;
  config.quantizer.kmeans_every = 2;
  config.quantizer.kmeans_iters = 3;
  const auto full = run("full");
  EXPECT_EQ(full.step, 6);
  run("split", 1, false, 3);  // stops between two re-estimations
  run("split", 1, true);
  const auto a = losses(dir + "/full", "tokenizer_phase1"), b = losses(dir + "/split", "tokenizer_phase1");
  ASSERT_EQ(a.size(), 6u);
  for (const auto& [step, loss] : a) EXPECT_EQ(b.at(step), loss) << "step " << step;
  EXPECT_TRUE(same_weights(dir + "/full/tokenizer.safetensors", dir + "/split/tokenizer.safetensors"));
  auto loaded = load_tokenizer(dir + "/full/tokenizer.safetensors", torch::kCPU);
  EXPECT_EQ(loaded.config.quantizer.kind, "factorized");
  EXPECT_EQ(loaded.model->quantizer->embedding.size(1), 4);
  const auto x = torch::rand({2, config.data.channels, config.data.resolution, config.data.resolution}) * 2 - 1;
  torch::NoGradGuard ng;
  const auto idx = loaded.model->encode_indices(x);
  EXPECT_EQ(loaded.model->decode_indices(idx).sizes(), x.sizes());
}

TEST_F(TokenizerTrainer, Phase2HasItsOwnLogAndImageCadence) {
  run("p1");
  config.train_tokenizer.log_every = 100;
  config.train_tokenizer.image_every = 100;
  config.phase2.train.log_every = 1;
  config.phase2.train.image_every = 2;
  run("p2", 2, false, -1, dir + "/p1/tokenizer.safetensors");
  EXPECT_EQ(losses(dir + "/p2", "tokenizer_phase2").size(), 4u);
  EXPECT_TRUE(std::filesystem::exists(dir + "/p2/samples/recon_0000002.png"));
}
