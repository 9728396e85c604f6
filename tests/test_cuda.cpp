// CUDA behaviour: the same results on the GPU as on the CPU (fused attention of libtorch 2.x
// included), the key/value cache on the GPU, seeded sampling, and bf16-autocast training steps.
// Skipped where no CUDA device is present.
#include <gtest/gtest.h>

#include <torch/cuda.h>

#include "features/inception.h"
#include "nn/attention.h"
#include "seqgan/data.h"
#include "tiny.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokens.h"
#include "train/tokenizer_trainer.h"
#include "train/transformer_trainer.h"
#include "transformer/sampling.h"
#include "transformer/transformer.h"

using namespace seqgan;

namespace {

#define SKIP_WITHOUT_CUDA() \
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device"

double relative_difference(const at::Tensor& a, const at::Tensor& b) {
  const auto x = a.to(at::kDouble).cpu(), y = b.to(at::kDouble).cpu();
  return ((x - y).abs().max() / y.abs().max().clamp_min(1e-12)).item<double>();
}

TransformerConfig small_transformer() {
  TransformerConfig c;
  c.layers = 2;
  c.width = 64;
  c.heads = 4;
  c.mlp = 128;
  c.dropout = 0.0;
  c.num_classes = 4;
  return c;
}

TokenSpace small_space() {
  TokenSpace s;
  s.codebook_size = 32;
  s.length = 64;
  s.num_classes = 4;
  return s;
}

}  // namespace

TEST(Cuda, AttentionMatchesTheCpuForm) {
  SKIP_WITHOUT_CUDA();
  torch::manual_seed(0);
  const auto q = at::randn({2, 4, 33, 16}), k = at::randn({2, 4, 33, 16}), v = at::randn({2, 4, 33, 16});
  const auto mask = at::rand({33, 33}) > 0.3;
  const auto cuda = [](const at::Tensor& t) { return t.to(at::kCUDA); };
  for (const bool causal : {false, true}) {
    EXPECT_LE(relative_difference(nn::attention(cuda(q), cuda(k), cuda(v), {}, causal), nn::attention(q, k, v, {}, causal)), 1e-3)
        << "causal " << causal;
  }
  EXPECT_LE(relative_difference(nn::attention(cuda(q), cuda(k), cuda(v), cuda(mask)), nn::attention(q, k, v, mask)), 1e-3);
}

TEST(Cuda, TransformerCacheAndCpuAgree) {
  SKIP_WITHOUT_CUDA();
  torch::manual_seed(1);
  Transformer cpu(small_transformer(), small_space(), true);
  cpu->eval();
  Transformer gpu(small_transformer(), small_space(), true);
  {
    torch::NoGradGuard ng;
    const auto src = cpu->named_parameters();
    for (auto& p : gpu->named_parameters()) p.value().copy_(src[p.key()]);
  }
  gpu->to(at::kCUDA);
  gpu->eval();
  torch::NoGradGuard ng;
  const auto cond = at::tensor({0, 3}, at::kLong);
  const auto codes = at::randint(32, {2, 64}, at::kLong);
  const auto full_cpu = cpu->forward(cond, codes.narrow(1, 0, 63));
  const auto full_gpu = gpu->forward(cond.cuda(), codes.narrow(1, 0, 63).cuda());
  EXPECT_LE(relative_difference(full_gpu, full_cpu), 1e-3);
  at::Tensor logits;
  auto cache = gpu->start(cond.cuda(), &logits);
  for (int64_t i = 0; i < 64; ++i) {
    ASSERT_LE(relative_difference(logits, full_gpu.select(1, i)), 1e-4) << "position " << i;
    if (i < 63) logits = gpu->step(cache, codes.select(1, i).cuda());
  }
}

TEST(Cuda, SamplingIsSeededAndNarDecidesEveryToken) {
  SKIP_WITHOUT_CUDA();
  torch::manual_seed(2);
  Transformer ar(small_transformer(), small_space(), true);
  ar->to(at::kCUDA);
  ar->eval();
  const auto cond = at::tensor({0, 1, 2, 3}, at::kLong);
  auto g1 = make_generator(3), g2 = make_generator(3);
  const auto a = sample_ar(*ar, cond, 4, {}, g1), b = sample_ar(*ar, cond, 4, {}, g2);
  EXPECT_TRUE(at::equal(a.cpu(), b.cpu()));
  Transformer nar(small_transformer(), small_space(), false);
  nar->to(at::kCUDA);
  nar->eval();
  auto g3 = make_generator(4);
  const auto s = sample_nar(*nar, cond, 4, {}, g3).cpu();
  EXPECT_TRUE((s >= 0).all().item<bool>() && (s < 32).all().item<bool>());
}

TEST(Cuda, TokenizerMatchesTheCpu) {
  SKIP_WITHOUT_CUDA();
  const Config c = test::tiny_tokenizer_config("unused");
  torch::manual_seed(5);
  Tokenizer cpu(c.tokenizer, c.quantizer, 1);
  cpu->eval();
  Tokenizer gpu(c.tokenizer, c.quantizer, 1);
  {
    torch::NoGradGuard ng;
    const auto src = cpu->named_parameters();
    for (auto& p : gpu->named_parameters()) p.value().copy_(src[p.key()]);
  }
  gpu->to(at::kCUDA);
  gpu->eval();
  torch::NoGradGuard ng;
  const auto x = at::rand({4, 1, 16, 16}) * 2 - 1;
  const auto zc = cpu->encoder->forward(x), zg = gpu->encoder->forward(x.cuda());
  EXPECT_LE(relative_difference(zg, zc), 1e-2);  // cuDNN may use TF32 convolutions
  const auto ic = cpu->encode_indices(x), ig = gpu->encode_indices(x.cuda()).cpu();
  EXPECT_GE((ic == ig).to(at::kDouble).mean().item<double>(), 0.95);
  // Decoding the same indices gives the same images.
  EXPECT_LE(relative_difference(gpu->decode_indices(ic.cuda()), cpu->decode_indices(ic)), 1e-2);
}

TEST(Cuda, TransformerTrainsUnderBf16Autocast) {
  SKIP_WITHOUT_CUDA();
  const std::string dir = test::temp_dir("cuda-transformer");
  test::write_toy_tokens(dir + "/tokens.safetensors", 256, 8, 4, 8, 32);
  Config config = make_preset("fmnist");
  config.device = "cuda";
  config.transformer = small_transformer();
  for (auto* t : {&config.train_ar, &config.train_nar}) {
    t->batch_size = 32;
    t->iterations = 60;
    t->lr = 3e-3;
    t->warmup = 5;
    t->decay_start = 30;
    t->log_every = 20;
    t->val_every = 1000;
    t->autocast_bf16 = true;
  }
  for (const bool causal : {true, false}) {
    TransformerTrainOptions o;
    o.config = config;
    o.causal = causal;
    o.tokens = dir + "/tokens.safetensors";
    o.run_dir = dir + (causal ? "/ar" : "/nar");
    const auto r = train_transformer(o);
    EXPECT_TRUE(std::isfinite(r.val_loss));
    EXPECT_LT(r.val_loss, std::log(32.0)) << (causal ? "AR" : "NAR") << " learned nothing";
  }
}

TEST(Cuda, InceptionMatchesTheCpu) {
  SKIP_WITHOUT_CUDA();
  torch::manual_seed(3);
  auto cpu = std::make_shared<InceptionV3Fid>();
  auto gpu = std::make_shared<InceptionV3Fid>();
  {
    torch::NoGradGuard ng;
    const auto src = cpu->named_parameters();
    for (auto& p : gpu->named_parameters()) p.value().copy_(src[p.key()]);
  }
  cpu->freeze();
  gpu->freeze();
  gpu->to(at::kCUDA);
  torch::NoGradGuard ng;
  const auto x = at::rand({2, 1, 32, 32}) * 2 - 1;
  const auto c = cpu->taps(x, {"features", "logit"}), g = gpu->taps(x.cuda(), {"features", "logit"});
  EXPECT_LE(relative_difference(g.at("features"), c.at("features")), 1e-2);  // TF32 convolutions
  EXPECT_LE(relative_difference(g.at("logit"), c.at("logit")), 1e-2);
}

TEST(Cuda, TokenizerTrainsBothPhasesUnderBf16Autocast) {
  SKIP_WITHOUT_CUDA();
  const std::string dir = test::temp_dir("cuda-tokenizer");
  TokenizerTrainOptions o;
  o.config = test::tiny_tokenizer_config(test::stand_in_loss_network(dir));
  o.config.device = "cuda";
  // A small IDX data set (the GPU machine may lack Fashion-MNIST): 64 random 28x28 images.
  torch::manual_seed(11);
  IdxArray images{{64, 28, 28}, {}}, labels{{64}, {}};
  const auto pixels = at::randint(256, {64 * 28 * 28}, at::kByte);
  images.data.assign(pixels.data_ptr<uint8_t>(), pixels.data_ptr<uint8_t>() + pixels.numel());
  for (int i = 0; i < 64; ++i) labels.data.push_back(static_cast<uint8_t>(i % 10));
  for (const std::string split : {"train", "t10k"}) {
    write_idx(dir + "/" + split + "-images-idx3-ubyte", images);
    write_idx(dir + "/" + split + "-labels-idx1-ubyte", labels);
  }
  o.config.data.dataset = "idx";
  o.config.data.root = dir;
  o.config.train_tokenizer.autocast_bf16 = true;
  o.run_dir = dir + "/p1";
  const auto r1 = train_tokenizer(o);
  EXPECT_EQ(r1.step, o.config.train_tokenizer.iterations);
  for (const auto& [step, loss] : test::losses(o.run_dir, "tokenizer_phase1")) EXPECT_TRUE(std::isfinite(loss)) << step;
  TokenizerTrainOptions p2 = o;
  p2.phase = 2;
  p2.init = dir + "/p1/tokenizer.safetensors";
  p2.run_dir = dir + "/p2";
  const auto r2 = train_tokenizer(p2);
  EXPECT_EQ(r2.step, o.config.phase2.train.iterations);
  for (const auto& [step, loss] : test::losses(p2.run_dir, "tokenizer_phase2")) EXPECT_TRUE(std::isfinite(loss)) << step;
  test::remove_tree(dir);
}
