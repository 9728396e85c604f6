#include <gtest/gtest.h>

#include "nn/blocks.h"
#include "seqgan/config.h"
#include "tokenizer/tokenizer.h"

using namespace seqgan;

TEST(Tokenizer, PaperParameterCountsMatchSpec) {
  const Config c = make_preset("paper");
  Tokenizer t(c.tokenizer, c.quantizer, 3);
  EXPECT_EQ(count_parameters(*t, "encoder."), 23775104);
  EXPECT_EQ(count_parameters(*t, "decoder."), 30478339);
  EXPECT_EQ(count_parameters(*t, "quantizer."), 262144);
  EXPECT_EQ(count_parameters(*t), 54515587);
  t->decoder->add_attention(1, c.tokenizer);
  EXPECT_EQ(count_parameters(*t), 57938819);
}

TEST(Tokenizer, DecoderVariantsOfTable1) {
  Config c = make_preset("paper");
  c.tokenizer.decoder_extra_res_blocks = 2;
  EXPECT_EQ(count_parameters(*Tokenizer(c.tokenizer, c.quantizer, 3)), 69861251);  // "+Conv x2", ~70.0M
  c = make_preset("paper");
  c.tokenizer.decoder_attn_pairs = 2;
  EXPECT_EQ(count_parameters(*Tokenizer(c.tokenizer, c.quantizer, 3)), 61362051);  // "+Attention x2", ~61.4M
}

TEST(Tokenizer, CheckpointKeysFollowTheArchitecture) {
  const Config c = make_preset("fmnist");
  Tokenizer t(c.tokenizer, c.quantizer, 1);
  std::set<std::string> keys;
  for (const auto& p : t->named_parameters()) keys.insert(p.key());
  for (const char* k : {"encoder.conv_in.weight", "encoder.down.0.block.0.conv1.weight", "encoder.down.1.block.0.skip.weight",
                        "encoder.mid.0.norm1.weight", "encoder.conv_out.bias", "quantizer.embedding",
                        "decoder.conv_in.weight", "decoder.up.2.block.0.conv2.weight", "decoder.up.1.upsample.conv.weight",
                        "decoder.conv_out.bias"})
    EXPECT_TRUE(keys.count(k)) << k;
  EXPECT_FALSE(keys.count("decoder.up.0.upsample.conv.weight"));  // no upsampling at full resolution
}

TEST(Tokenizer, ShapesAndRoundTripThroughIndices) {
  torch::manual_seed(0);
  const Config c = make_preset("fmnist");
  Tokenizer t(c.tokenizer, c.quantizer, 1);
  t->eval();
  const auto x = torch::rand({2, 1, 32, 32}) * 2 - 1;
  const auto out = t->forward(x);
  EXPECT_EQ(out.reconstruction.sizes(), x.sizes());
  EXPECT_EQ(out.quant.indices.sizes(), (std::vector<int64_t>{2, 8, 8}));
  const auto idx = t->encode_indices(x);
  EXPECT_TRUE(torch::equal(idx, out.quant.indices));
  EXPECT_TRUE(torch::allclose(t->decode_indices(idx), out.reconstruction, 1e-5, 1e-5));
}

TEST(Tokenizer, GreyImagesRunChannelsLastThroughTheBlocks) {
  // A one-channel image is both NCHW- and NHWC-contiguous, and libtorch reads it as NCHW: without
  // the encoder's restriding, the first convolution ran NCHW and the first level's blocks followed.
  const auto grey = torch::rand({2, 1, 8, 8});
  EXPECT_NE(grey.suggest_memory_format(), at::MemoryFormat::ChannelsLast);
  const auto restrided = nn::to_channels_last(grey);
  EXPECT_EQ(restrided.suggest_memory_format(), at::MemoryFormat::ChannelsLast);
  EXPECT_TRUE(torch::equal(restrided, grey));
  const auto w = torch::randn({4, 1, 3, 3}).contiguous(at::MemoryFormat::ChannelsLast);
  EXPECT_EQ(at::conv2d(restrided, w, {}, 1, 1).suggest_memory_format(), at::MemoryFormat::ChannelsLast);

  // The quantiser hands the decoder channels-last codes, from the forward pass and from indices.
  const Config c = make_preset("fmnist");
  Tokenizer t(c.tokenizer, c.quantizer, 1);
  torch::NoGradGuard ng;
  const auto out = t->forward(torch::rand({2, 1, 32, 32}));
  EXPECT_EQ(out.quant.z_q.suggest_memory_format(), at::MemoryFormat::ChannelsLast);
  EXPECT_EQ(t->quantizer->lookup(out.quant.indices).suggest_memory_format(), at::MemoryFormat::ChannelsLast);
}

TEST(Tokenizer, SkipLayoutFlagChangesTheBlock) {
  Config c = make_preset("fmnist");
  c.tokenizer.maskgit_skip = false;
  Tokenizer conventional(c.tokenizer, c.quantizer, 1);
  // conventional skip maps the input width (32) to the output width (64)
  bool found = false;
  for (const auto& p : conventional->named_parameters())
    if (p.key() == "encoder.down.1.block.0.skip.weight") {
      EXPECT_EQ(p.value().sizes(), (std::vector<int64_t>{64, 32, 1, 1}));
      found = true;
    }
  EXPECT_TRUE(found);
}

TEST(Tokenizer, AddedAttentionStartsAsIdentity) {
  torch::manual_seed(1);
  Config c = make_preset("fmnist");
  Tokenizer t(c.tokenizer, c.quantizer, 1);
  t->eval();
  const auto z = torch::randint(0, c.tokenizer.codebook_size, {2, 8, 8}, torch::kLong);
  const auto before = t->decode_indices(z);
  t->decoder->add_attention(1, c.tokenizer);
  EXPECT_FALSE(t->decoder->attention_parameters().empty());
  EXPECT_TRUE(torch::equal(t->decode_indices(z), before));
}
