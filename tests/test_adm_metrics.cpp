// ADM's evaluation metrics and the tokenizer metrics against references seqgan's code did not
// produce (tools/adm_metric_fixtures.py: numpy, scipy and scikit-image; tools/lpips_fixtures.py:
// a PyTorch LPIPS with a random VGG): precision/recall, FID, IS in parts, SSIM, PSNR, LPIPS.
#include <gtest/gtest.h>

#include "eval/metrics.h"
#include "eval/psnr.h"
#include "eval/ssim.h"
#include "features/lpips.h"
#include "python_fixtures.h"
#include "seqgan/error.h"
#include "seqgan/safetensors.h"

using namespace seqgan;

namespace {

std::string metric_fixtures() {
  static const std::string dir = test::python_fixture_dir("adm-metrics", {"adm_metric_fixtures.py", "weights_io.py"});
  return dir;
}

std::string lpips_fixtures() {
  static const std::string dir =
      test::python_fixture_dir("lpips", {"lpips_fixtures.py", "convert_lpips.py", "convert_vgg16.py", "weights_io.py"});
  return dir;
}

double scalar(const safetensors::TensorMap& t, const std::string& name) { return t.at(name).item<double>(); }

// uint8 [B, C, H, W] -> [-1, 1] floats, as images are loaded.
at::Tensor unit(const at::Tensor& pixels) { return pixels.to(at::kFloat) / 127.5 - 1; }

}  // namespace

TEST(AdmMetrics, PrecisionRecallMatchesNumpyInAnyBatching) {
  const std::string dir = metric_fixtures();
  ASSERT_FALSE(dir.empty());
  const auto t = safetensors::load(dir + "/expected.safetensors").tensors;
  for (const std::string c : {"pr", "pr_dup"}) {
    for (const auto& [rows, cols] : std::vector<std::pair<int64_t, int64_t>>{{10000, 10000}, {7, 13}, {1, 300}}) {
      ManifoldOptions o;
      o.row_batch = rows;
      o.col_batch = cols;
      const PrecisionRecall pr = precision_recall(t.at(c + ".ref"), t.at(c + ".gen"), o);
      EXPECT_DOUBLE_EQ(pr.precision, scalar(t, c + ".precision")) << c << " batches " << rows << "x" << cols;
      EXPECT_DOUBLE_EQ(pr.recall, scalar(t, c + ".recall")) << c << " batches " << rows << "x" << cols;
    }
  }
  // k must leave a neighbour: 3 features cannot have a third neighbour besides themselves.
  EXPECT_THROW(precision_recall(t.at("pr.ref").slice(0, 0, 3), t.at("pr.gen"), {}), Error);
}

TEST(AdmMetrics, FidMatchesScipySqrtm) {
  const std::string dir = metric_fixtures();
  ASSERT_FALSE(dir.empty());
  const auto t = safetensors::load(dir + "/expected.safetensors").tensors;
  const FeatureStats a = fit_gaussian(t.at("fid.f1")), b = fit_gaussian(t.at("fid.f2"));
  const double want = scalar(t, "fid.value");
  EXPECT_NEAR(frechet_distance(a.mu, a.sigma, b.mu, b.sigma), want, 1e-7 * want);
}

TEST(AdmMetrics, InceptionScoreInConsecutivePartsMatchesNumpy) {
  const std::string dir = metric_fixtures();
  ASSERT_FALSE(dir.empty());
  const auto t = safetensors::load(dir + "/expected.safetensors").tensors;
  const InceptionScore three = inception_score_parts(t.at("is.logits"), 500);
  EXPECT_EQ(three.splits, 3);  // 500, 500, 200
  EXPECT_NEAR(three.mean, scalar(t, "is.value_500"), 1e-9);
  const InceptionScore one = inception_score_parts(t.at("is.logits"), 5000);
  EXPECT_EQ(one.splits, 1);
  EXPECT_NEAR(one.mean, scalar(t, "is.value_5000"), 1e-9);
}

TEST(AdmMetrics, SsimMatchesScikitImage) {
  const std::string dir = metric_fixtures();
  ASSERT_FALSE(dir.empty());
  const auto t = safetensors::load(dir + "/expected.safetensors").tensors;
  const at::Tensor rgb = ssim(t.at("ssim.x"), t.at("ssim.y"));
  const at::Tensor grey = ssim(t.at("ssim.xg"), t.at("ssim.yg"));
  EXPECT_TRUE(at::allclose(rgb, t.at("ssim.rgb"), 0, 1e-10)) << rgb << t.at("ssim.rgb");
  EXPECT_TRUE(at::allclose(grey, t.at("ssim.grey"), 0, 1e-10)) << grey << t.at("ssim.grey");
  EXPECT_DOUBLE_EQ(grey[0].item<double>(), 1.0);  // the identical pair
  // PSNR of the same pairs (the identical pair: infinite in numpy, 200 dB from the MSE floor here).
  const at::Tensor p = psnr(unit(t.at("ssim.xg")), unit(t.at("ssim.yg")));
  EXPECT_DOUBLE_EQ(p[0].item<double>(), 200.0);
  EXPECT_TRUE(at::allclose(p.slice(0, 1), t.at("psnr.grey").slice(0, 1), 0, 1e-4)) << p << t.at("psnr.grey");
  EXPECT_TRUE(at::allclose(psnr(unit(t.at("ssim.x")), unit(t.at("ssim.y"))), t.at("psnr.rgb"), 0, 1e-4));
  EXPECT_THROW(ssim(t.at("ssim.x").slice(2, 0, 10), t.at("ssim.y").slice(2, 0, 10)), Error);  // window does not fit
}

TEST(AdmMetrics, LpipsMatchesPytorchWithTheSameRandomVgg) {
  const std::string dir = lpips_fixtures();
  ASSERT_FALSE(dir.empty());
  torch::set_num_threads(2);
  const auto t = safetensors::load(dir + "/expected.safetensors").tensors;
  Lpips net = load_lpips(dir + "/lpips.safetensors");
  torch::NoGradGuard ng;
  for (const std::string c : {"rgb", "grey"}) {
    const at::Tensor d = net->forward(t.at(c + ".x"), t.at(c + ".y"));
    EXPECT_TRUE(at::allclose(d, t.at(c + ".d"), 1e-4, 1e-7)) << c << "\n" << d << "\n" << t.at(c + ".d");
  }
  EXPECT_EQ(net->forward(t.at("rgb.x"), t.at("rgb.x")).abs().max().item<double>(), 0.0);
  // Strict loading: another kind of file names the converter.
  try {
    load_lpips(dir + "/expected.safetensors");
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("convert_lpips.py"), std::string::npos) << e.what();
  }
}
