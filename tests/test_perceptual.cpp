// The perceptual loss (paper Eq. 3) on a small stand-in network: value against a direct
// computation, which taps alpha = 0 / 1 compute, LPIPS normalisation, gradients, option checks,
// and loading its network from files (never a silent random fallback).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <functional>

#include "remove_tree.h"
#include "features/classifier.h"
#include "losses/perceptual.h"
#include "seqgan/error.h"

namespace fs = std::filesystem;

namespace {

// Five conv "stages" (2x2 pooling between them) and a linear logit, with the standard tap names;
// records which taps each call asked for.
class RecordingNet : public seqgan::FeatureNetwork {
 public:
  RecordingNet() {
    for (int s = 0; s < 5; ++s)
      convs_.push_back(register_module("conv" + std::to_string(s), torch::nn::Conv2d(torch::nn::Conv2dOptions(s == 0 ? 3 : 4, 4, 3).padding(1))));
    head_ = register_module("head", torch::nn::Linear(4, 5));
  }
  std::map<std::string, at::Tensor> taps(const at::Tensor& x, const std::vector<std::string>& names) override {
    const std::vector<int> pos = tap_positions(names);
    calls.push_back(names);
    const int deepest = *std::max_element(pos.begin(), pos.end());
    std::map<std::string, at::Tensor> out;
    at::Tensor h = x;
    for (int s = 0; s < 5 && s <= deepest; ++s) {
      if (s > 0) h = torch::avg_pool2d(h, 2);
      h = torch::relu(convs_[s](h));
      if (std::count(pos.begin(), pos.end(), s)) out[tap_names()[s]] = h;
    }
    if (deepest == 5) out["logit"] = head_(h.mean({2, 3}));
    return out;
  }
  std::vector<std::string> tap_names() const override { return seqgan::standard_tap_names(); }
  std::string description() const override { return "recording net"; }

  std::vector<std::vector<std::string>> calls;

 private:
  std::vector<torch::nn::Conv2d> convs_;
  torch::nn::Linear head_{nullptr};
};

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const seqgan::Error& e) {
    return e.what();
  }
  return "<no seqgan::Error thrown>";
}

#define EXPECT_CONTAINS(text, part) EXPECT_NE((text).find(part), std::string::npos) << "expected '" << (part) << "' in:\n" << (text)

at::Tensor mse(const at::Tensor& a, const at::Tensor& b) {
  // 1 / (H W C) |a - b|^2 per sample, then the batch mean, written out the long way.
  const at::Tensor flat = (a - b).flatten(1);  // [B, C H W]
  return (flat.pow(2).sum(1) / flat.size(1)).mean();
}

at::Tensor normalized(const at::Tensor& f) { return f / (f.pow(2).sum(1, true) + 1e-10).sqrt(); }

struct Images {
  at::Tensor rec, target;
  Images() {
    torch::manual_seed(3);
    target = torch::rand({3, 3, 32, 32}) * 2 - 1;
    rec = (target + 0.2 * torch::randn({3, 3, 32, 32})).clamp(-1, 1);
  }
};

}  // namespace

TEST(Perceptual, ValueMatchesDirectComputation) {
  torch::manual_seed(0);
  auto net = std::make_shared<RecordingNet>();
  net->to(torch::kDouble);  // float64, so that the tolerances below are tight
  Images im;
  im.rec = im.rec.to(torch::kDouble);
  im.target = im.target.to(torch::kDouble);
  for (bool normalize : {false, true}) {
    seqgan::PerceptualOptions o;
    o.alpha = 0.3;
    o.weight = 2.0;
    o.lpips_normalize = normalize;
    seqgan::PerceptualLoss loss(o, net);
    const seqgan::PerceptualResult r = loss(im.rec, im.target);

    torch::NoGradGuard no_grad;
    const auto a = net->taps(im.rec, seqgan::standard_tap_names());
    const auto b = net->taps(im.target, seqgan::standard_tap_names());
    double low = 0, sem = 0;
    for (const auto& name : o.low_taps) {
      const double d = normalize ? mse(normalized(a.at(name)), normalized(b.at(name))).item<double>()
                                 : mse(a.at(name), b.at(name)).item<double>();
      EXPECT_NEAR(r.terms.at("low/" + name).item<double>(), d, 1e-10 * d) << name;
      low += d;
    }
    for (const auto& name : o.sem_taps) {
      const double d = mse(a.at(name), b.at(name)).item<double>();  // never normalised
      EXPECT_NEAR(r.terms.at("sem/" + name).item<double>(), d, 1e-10 * d) << name;
      sem += d;
    }
    EXPECT_GT(low, 0);
    EXPECT_GT(sem, 0);
    EXPECT_NEAR(r.low.item<double>(), low, 1e-10 * low);
    EXPECT_NEAR(r.sem.item<double>(), sem, 1e-10 * sem);
    EXPECT_NEAR(r.loss.item<double>(), 2.0 * (0.3 * sem + 0.7 * low), 1e-10 * (low + sem));
    EXPECT_EQ(r.terms.size(), 7u);
  }
}

TEST(Perceptual, AlphaOneAndZeroComputeOnlyTheirTaps) {
  auto net = std::make_shared<RecordingNet>();
  Images im;
  seqgan::PerceptualOptions o;
  o.alpha = 1.0;
  seqgan::PerceptualLoss sem_only(o, net);
  net->calls.clear();
  seqgan::PerceptualResult r = sem_only(im.rec, im.target);
  ASSERT_EQ(net->calls.size(), 2u);  // target, reconstruction
  for (const auto& c : net->calls) EXPECT_EQ(c, (std::vector<std::string>{"relu5_3", "logit"}));
  EXPECT_FALSE(r.low.defined());
  EXPECT_TRUE(r.sem.defined());
  EXPECT_EQ(r.terms.size(), 2u);
  EXPECT_NEAR(r.loss.item<double>(), r.sem.item<double>(), 1e-7);

  o.alpha = 0.0;
  o.low_taps = {"relu1_2", "relu3_3"};
  seqgan::PerceptualLoss low_only(o, net);
  net->calls.clear();
  r = low_only(im.rec, im.target);
  ASSERT_EQ(net->calls.size(), 2u);
  for (const auto& c : net->calls) EXPECT_EQ(c, (std::vector<std::string>{"relu1_2", "relu3_3"}));
  EXPECT_TRUE(r.low.defined());
  EXPECT_FALSE(r.sem.defined());
  EXPECT_EQ(r.terms.size(), 2u);

  o.alpha = 0.5;  // both groups, relu5_3 computed once per image
  o.low_taps = {"relu1_2", "relu5_3"};
  seqgan::PerceptualLoss both(o, net);
  net->calls.clear();
  both(im.rec, im.target);
  ASSERT_EQ(net->calls.size(), 2u);
  EXPECT_EQ(net->calls[0], (std::vector<std::string>{"relu1_2", "relu5_3", "logit"}));
}

TEST(Perceptual, GradientReachesOnlyTheReconstruction) {
  auto net = std::make_shared<RecordingNet>();
  Images im;
  seqgan::PerceptualOptions o;
  o.alpha = 0.5;
  o.lpips_normalize = true;  // the normalisation must keep zero ReLU vectors finite
  seqgan::PerceptualLoss loss(o, net);
  loss->train();  // as when the loss sits inside a model being trained
  EXPECT_FALSE(net->is_training());
  const at::Tensor rec = im.rec.clone().requires_grad_(true);
  const at::Tensor target = im.target.clone().requires_grad_(true);
  loss(rec, target).loss.backward();
  ASSERT_TRUE(rec.grad().defined());
  EXPECT_TRUE(torch::isfinite(rec.grad()).all().item<bool>());
  EXPECT_GT(rec.grad().abs().sum().item<double>(), 0);
  EXPECT_FALSE(target.grad().defined());
  for (const auto& p : net->parameters()) {
    EXPECT_FALSE(p.requires_grad());
    EXPECT_FALSE(p.grad().defined());
  }
  EXPECT_FALSE(net->is_training());
}

TEST(Perceptual, InvalidOptionsAreErrors) {
  auto net = std::make_shared<RecordingNet>();
  seqgan::PerceptualOptions o;
  o.alpha = 1.5;
  EXPECT_CONTAINS(error_of([&] { seqgan::PerceptualLoss(o, net); }), "alpha in [0, 1]");
  o.alpha = 0.5;
  o.sem_taps = {"relu5_3", "pool5"};
  const std::string e = error_of([&] { seqgan::PerceptualLoss(o, net); });
  EXPECT_CONTAINS(e, "no tap 'pool5'");
  EXPECT_CONTAINS(e, "use one of: relu1_2");
  o.sem_taps = {"logit", "logit"};
  EXPECT_CONTAINS(error_of([&] { seqgan::PerceptualLoss(o, net); }), "listed twice in sem_taps");
  o.sem_taps = {};
  EXPECT_CONTAINS(error_of([&] { seqgan::PerceptualLoss(o, net); }), "sem_taps is empty");
  o.sem_taps = {"logit"};
  seqgan::PerceptualLoss ok(o, net);
  EXPECT_CONTAINS(error_of([&] { ok(torch::zeros({1, 3, 32, 32}), torch::zeros({1, 3, 16, 16})); }), "same shape");
}

TEST(Perceptual, NetworkFilesAreRequired) {
  const std::string missing = error_of([] { seqgan::load_feature_network("classifier", "/nonexistent/cls.safetensors"); });
  EXPECT_CONTAINS(missing, "/nonexistent/cls.safetensors");
  EXPECT_CONTAINS(missing, "seqgan train-classifier");
  seqgan::PerceptualConfig config;
  config.network = "classifier";
  config.weights = "";
  const std::string empty = error_of([&] { seqgan::make_perceptual_loss(config); });
  EXPECT_CONTAINS(empty, "no weight file given for the 'classifier'");
  EXPECT_CONTAINS(empty, "random weights are never used");
}

TEST(Perceptual, ClassifierCheckpointBuildsTheLoss) {
  const fs::path dir = fs::temp_directory_path() / ("seqgan_Perceptual_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string path = (dir / "cls.safetensors").string();
  seqgan::ClassifierArch arch;
  arch.width = 4;
  torch::manual_seed(1);
  seqgan::Classifier trained(arch);
  seqgan::save_classifier(path, trained);

  seqgan::PerceptualConfig config;
  config.network = "classifier";
  config.weights = path;
  config.alpha = 0.25;
  seqgan::PerceptualLoss loss = seqgan::make_perceptual_loss(config);
  EXPECT_EQ(loss->network().description(), trained.description());
  EXPECT_FALSE(loss->network().is_training());
  Images im;  // RGB images into a 1-channel classifier: converted to luma
  const at::Tensor rec = im.rec.clone().requires_grad_(true);
  const seqgan::PerceptualResult r = loss(rec, im.target);
  EXPECT_GT(r.loss.item<double>(), 0);
  EXPECT_EQ(r.terms.size(), 7u);
  r.loss.backward();
  EXPECT_GT(rec.grad().abs().sum().item<double>(), 0);
  seqgan::test::remove_tree(dir);
}
