// VGG16 against torchvision: module names, every tap and the logits at two resolutions and for a
// grey input, the perceptual loss terms, and strict, loud loading of its weight file.
//
// The reference (tools/vgg16_fixtures.py, ~600 MB with the weights) is generated on first use
// (python_fixtures.h), so a changed script regenerates it. Without python3 + torchvision these
// tests fail: CI installs them.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iomanip>
#include <sstream>

#include "python_fixtures.h"
#include "remove_tree.h"
#include "losses/perceptual.h"
#include "features/vgg16.h"
#include "seqgan/checkpoint.h"
#include "seqgan/error.h"
#include "seqgan/safetensors.h"

namespace fs = std::filesystem;
namespace st = seqgan::safetensors;

namespace {

std::string fixture_dir() {
  static const std::string dir =
      seqgan::test::python_fixture_dir("vgg16", {"vgg16_fixtures.py", "convert_vgg16.py", "weights_io.py"});
  return dir;
}

// The loaded network is shared by the tests of one process: loading 550 MB takes seconds.
std::shared_ptr<seqgan::FeatureNetwork> reference_vgg() {
  static std::shared_ptr<seqgan::FeatureNetwork> net;
  if (!net) {
    const std::string dir = fixture_dir();
    if (dir.empty()) return nullptr;
    net = seqgan::load_feature_network("vgg16", dir + "/vgg16.safetensors");
  }
  return net;
}

const st::TensorMap& expected() {
  static st::TensorMap tensors = st::load(fixture_dir() + "/expected.safetensors").tensors;
  return tensors;
}

using seqgan::test::expect_close;

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const seqgan::Error& e) {
    return e.what();
  }
  return "<no seqgan::Error thrown>";
}

#define EXPECT_CONTAINS(text, part) EXPECT_NE((text).find(part), std::string::npos) << "expected '" << (part) << "' in:\n" << (text)

using seqgan::test::TempDir;

}  // namespace

TEST(Vgg16, ModuleNamesAndShapesAreTorchvisions) {
  seqgan::Vgg16 net;
  const st::TensorMap sd = seqgan::state_dict(net);
  EXPECT_EQ(sd.size(), 32u);  // 13 convs + 3 linears, weight and bias each
  EXPECT_EQ(sd.at("features.0.weight").sizes(), at::IntArrayRef({64, 3, 3, 3}));
  EXPECT_EQ(sd.at("features.28.weight").sizes(), at::IntArrayRef({512, 512, 3, 3}));
  EXPECT_EQ(sd.at("features.28.bias").sizes(), at::IntArrayRef({512}));
  EXPECT_EQ(sd.at("classifier.0.weight").sizes(), at::IntArrayRef({4096, 25088}));
  EXPECT_EQ(sd.at("classifier.6.bias").sizes(), at::IntArrayRef({1000}));
  int64_t count = 0;
  for (const auto& [name, t] : sd) count += t.numel();
  EXPECT_EQ(count, 138357544);  // torchvision's vgg16 parameter count
}

TEST(Vgg16, RunsOnlyAsDeepAsTheDeepestTap) {
  // A 1x1 image passes the first stage, but the first max-pool cannot reduce it: requesting
  // relu1_2 only must stop before that pool; a 2x2 image reaches exactly relu2_2.
  seqgan::Vgg16 net;
  net.eval();
  torch::NoGradGuard no_grad;
  auto taps = net.taps(torch::zeros({1, 3, 1, 1}), {"relu1_2"});
  ASSERT_EQ(taps.size(), 1u);
  EXPECT_EQ(taps.at("relu1_2").sizes(), at::IntArrayRef({1, 64, 1, 1}));
  EXPECT_ANY_THROW(net.taps(torch::zeros({1, 3, 1, 1}), {"relu2_2"}));
  taps = net.taps(torch::zeros({1, 1, 2, 2}), {"relu2_2", "relu1_2"});
  EXPECT_EQ(taps.size(), 2u);
  EXPECT_EQ(taps.at("relu2_2").sizes(), at::IntArrayRef({1, 128, 1, 1}));
  EXPECT_ANY_THROW(net.taps(torch::zeros({1, 3, 2, 2}), {"relu3_3"}));
}

TEST(Vgg16, UnknownTapAndBadInputAreErrors) {
  seqgan::Vgg16 net;
  const std::string e = error_of([&] { net.taps(torch::zeros({1, 3, 32, 32}), {"relu3_2"}); });
  EXPECT_CONTAINS(e, "no tap 'relu3_2'");
  EXPECT_CONTAINS(e, "relu1_2, relu2_2, relu3_3, relu4_3, relu5_3, logit");
  EXPECT_CONTAINS(error_of([&] { net.taps(torch::zeros({1, 2, 32, 32}), {"relu1_2"}); }), "[1, 2, 32, 32]");
  EXPECT_CONTAINS(error_of([&] { net.taps(torch::zeros({1, 3, 32, 32}), {"logit", "logit"}); }), "twice");
}

TEST(Vgg16, MatchesTorchvisionOnEveryTap) {
  auto net = reference_vgg();
  ASSERT_TRUE(net);
  EXPECT_FALSE(net->is_training());
  for (const auto& p : net->parameters()) EXPECT_FALSE(p.requires_grad());
  torch::NoGradGuard no_grad;
  for (const std::string c : {"rgb256", "rgb100x76", "grey64"}) {
    const auto taps = net->taps(expected().at(c + ".input"), seqgan::standard_tap_names());
    ASSERT_EQ(taps.size(), 6u);
    for (const auto& name : seqgan::standard_tap_names()) expect_close(taps.at(name), expected().at(c + "." + name), c + "." + name);
  }
}

TEST(Vgg16, PerceptualTermsMatchReference) {
  auto net = reference_vgg();
  ASSERT_TRUE(net);
  const at::Tensor x = expected().at("loss.x"), y = expected().at("loss.y");
  const at::Tensor mse = expected().at("loss.mse"), lpips = expected().at("loss.mse_lpips");
  const auto& taps = seqgan::standard_tap_names();
  for (bool normalize : {false, true}) {
    seqgan::PerceptualOptions o;
    o.alpha = 0.5;
    o.weight = 1.0;
    o.lpips_normalize = normalize;
    seqgan::PerceptualLoss loss(o, net);
    const seqgan::PerceptualResult r = loss(x, y);
    double low = 0, sem = 0;
    for (int i = 0; i < 5; ++i) {
      const double want = (normalize ? lpips : mse)[i].item<double>();
      EXPECT_NEAR(r.terms.at("low/" + taps[i]).item<double>(), want, 1e-4 * want) << taps[i];
      low += want;
    }
    for (int i : {4, 5}) {
      const double want = mse[i].item<double>();
      EXPECT_NEAR(r.terms.at("sem/" + taps[i]).item<double>(), want, 1e-4 * want) << taps[i];
      sem += want;
    }
    EXPECT_NEAR(r.loss.item<double>(), 0.5 * low + 0.5 * sem, 1e-4 * (low + sem));
  }
}

TEST(Vgg16, WeightFileErrorsNameTheFileAndTheFix) {
  const std::string missing = error_of([] { seqgan::load_feature_network("vgg16", "/nonexistent/vgg16.safetensors"); });
  EXPECT_CONTAINS(missing, "/nonexistent/vgg16.safetensors");
  EXPECT_CONTAINS(missing, "tools/convert_vgg16.py");
  EXPECT_CONTAINS(error_of([] { seqgan::load_feature_network("vgg16", ""); }), "no weight file");
  EXPECT_CONTAINS(error_of([] { seqgan::load_feature_network("alexnet", "x"); }), "vgg16 | inception | classifier");

  TempDir tmp;
  // A plain safetensors file holding the wrong tensors: every difference is reported at once.
  st::save(tmp.file("wrong.safetensors"), {{"features.0.weight", torch::zeros({64, 1, 3, 3})},
                                           {"features.0.extra", torch::zeros({2})}});
  const std::string wrong = error_of([&] { seqgan::load_feature_network("vgg16", tmp.file("wrong.safetensors")); });
  EXPECT_CONTAINS(wrong, tmp.file("wrong.safetensors"));
  EXPECT_CONTAINS(wrong, "tensor 'features.0.weight' has wrong shape; expected [64, 3, 3, 3], got [64, 1, 3, 3]");
  EXPECT_CONTAINS(wrong, "missing tensor 'classifier.6.bias'");
  EXPECT_CONTAINS(wrong, "unexpected tensor 'features.0.extra'");
  // A seqgan checkpoint of another kind is refused before any tensor is read.
  st::save(tmp.file("other.safetensors"), {{"w", torch::zeros({1})}},
           {{"format", "seqgan"}, {"format_version", "1"}, {"kind", "classifier"}, {"config", "{}"}, {"step", "0"}});
  EXPECT_CONTAINS(error_of([&] { seqgan::load_feature_network("vgg16", tmp.file("other.safetensors")); }),
                  "expected vgg16 weights (kind 'vgg16'), found kind 'classifier'");
}
