// Frechet distance against pytorch-fid's scipy formula, the Gaussian fit, the Inception Score on
// cases with known answers, and the statistics files.
#include <gtest/gtest.h>

#include <cmath>
#include <iomanip>
#include <sstream>

#include "eval/metrics.h"
#include "python_fixtures.h"
#include "seqgan/error.h"
#include "seqgan/safetensors.h"
#include "tiny.h"

using namespace seqgan;

namespace {

const safetensors::TensorMap& scipy_reference() {
  static const safetensors::TensorMap tensors = [] {
    const std::string dir = test::python_fixture_dir("frechet", {"frechet_fixtures.py", "weights_io.py"});
    return dir.empty() ? safetensors::TensorMap{} : safetensors::load(dir + "/expected.safetensors").tensors;
  }();
  return tensors;
}

at::Tensor reference(const std::string& name) {
  const auto& t = scipy_reference();
  const auto it = t.find(name);
  if (it == t.end()) throw std::runtime_error("no reference tensor " + name);
  return it->second;
}

std::string scientific(double v) {
  std::ostringstream os;
  os << std::scientific << std::setprecision(2) << v;
  return os.str();
}

double fd_of(const std::string& c) {
  return frechet_distance(reference(c + ".mu1"), reference(c + ".sigma1"), reference(c + ".mu2"), reference(c + ".sigma2"));
}

}  // namespace

TEST(FrechetDistance, MatchesScipySqrtmOnWellConditionedData) {
  const double ours = fd_of("well"), scipy = reference("well.fd").item<double>();
  EXPECT_GT(scipy, 1.0);
  EXPECT_NEAR(ours, scipy, 1e-6 * scipy) << "ours " << ours << " scipy " << scipy;
  RecordProperty("relative_error", scientific(std::abs(ours - scipy) / scipy));
}

TEST(FrechetDistance, FiniteAndCloseOnRankDeficientCovariances) {
  // 40 samples of 64 dimensions: both covariances have rank 39.
  const at::Tensor s1 = reference("deficient.sigma1");
  EXPECT_LT(at::linalg_matrix_rank(s1).item<int64_t>(), s1.size(0));
  const double ours = fd_of("deficient"), scipy = reference("deficient.fd").item<double>();
  ASSERT_TRUE(std::isfinite(ours));
  EXPECT_NEAR(ours, scipy, 1e-4 * scipy) << "ours " << ours << " scipy " << scipy;
  RecordProperty("relative_error", scientific(std::abs(ours - scipy) / scipy));
}

TEST(FrechetDistance, ZeroForTheSameSamplesAndSymmetric) {
  const double same = fd_of("same");
  const double scale = reference("same.sigma1").trace().item<double>();
  EXPECT_NEAR(same, 0.0, 1e-9 * scale);
  const double ab = fd_of("well");
  const double ba = frechet_distance(reference("well.mu2"), reference("well.sigma2"), reference("well.mu1"), reference("well.sigma1"));
  EXPECT_NEAR(ab, ba, 1e-9 * ab);
}

TEST(FrechetDistance, GaussianFitMatchesNumpy) {
  for (const std::string c : {"well", "deficient"}) {
    const FeatureStats s = fit_gaussian(reference(c + ".features1"));
    EXPECT_TRUE(at::allclose(s.mu, reference(c + ".mu1"), 1e-12, 1e-12)) << c;
    EXPECT_TRUE(at::allclose(s.sigma, reference(c + ".sigma1"), 1e-10, 1e-12)) << c;
    EXPECT_EQ(s.count, reference(c + ".features1").size(0));
  }
  EXPECT_THROW(fit_gaussian(at::zeros({1, 4})), Error);
}

TEST(FrechetDistance, ClosedFormForDiagonalGaussians) {
  // Commuting (diagonal) covariances: tr((S1 S2)^(1/2)) = sum sqrt(a_i b_i).
  const auto opts = at::TensorOptions().dtype(at::kDouble);
  const at::Tensor a = at::tensor({1.0, 4.0, 0.25, 9.0}, opts), b = at::tensor({4.0, 1.0, 1.0, 0.0}, opts);
  const at::Tensor mu1 = at::tensor({0.0, 1.0, 2.0, 3.0}, opts), mu2 = at::tensor({1.0, 1.0, 0.0, 3.0}, opts);
  const double expected = 5.0 + (a + b).sum().item<double>() - 2.0 * (a * b).sqrt().sum().item<double>();
  EXPECT_NEAR(frechet_distance(mu1, at::diag(a), mu2, at::diag(b)), expected, 1e-12);
  EXPECT_THROW(frechet_distance(mu1, at::diag(a), mu2.slice(0, 0, 3), at::diag(b).slice(0, 0, 3).slice(1, 0, 3)), Error);
  EXPECT_THROW(frechet_distance(mu1, at::diag(a) * NAN, mu2, at::diag(b)), Error);
}

TEST(InceptionScore, KnownAnswers) {
  // Every sample certain of its class, classes balanced in every split: IS = number of classes.
  const int64_t C = 5;
  const at::Tensor certain = at::eye(C, at::kDouble).repeat({8, 1}) * 100.0;  // 40 samples
  const InceptionScore a = inception_score(certain, 4, /*shuffle=*/false);
  EXPECT_NEAR(a.mean, static_cast<double>(C), 1e-6);
  EXPECT_NEAR(a.std, 0.0, 1e-6);
  EXPECT_EQ(a.splits, 4);
  // Uniform predictions: IS = 1; all samples the same confident class: IS = 1.
  EXPECT_NEAR(inception_score(at::zeros({40, C}), 10).mean, 1.0, 1e-9);
  at::Tensor one = at::zeros({40, C}, at::kDouble);
  one.select(1, 2).fill_(100.0);
  EXPECT_NEAR(inception_score(one, 10).mean, 1.0, 1e-6);
  // Splits that differ: the first half certain of classes 0/1, the second uniform.
  at::Tensor mixed = at::zeros({8, 2}, at::kDouble);
  for (int i = 0; i < 4; ++i) mixed[i][i % 2] = 100.0;
  const InceptionScore m = inception_score(mixed, 2, /*shuffle=*/false);
  EXPECT_NEAR(m.mean, 1.5, 1e-6);
  EXPECT_NEAR(m.std, 0.5, 1e-6);
  // Sorted by class, unshuffled splits see one class each (IS 1); the fixed shuffle mixes them.
  const at::Tensor sorted = at::eye(C, at::kDouble).repeat_interleave(40, 0) * 100.0;  // 200 samples
  EXPECT_NEAR(inception_score(sorted, 5, false).mean, 1.0, 1e-6);
  EXPECT_GT(inception_score(sorted, 5).mean, 0.8 * C);
  EXPECT_THROW(inception_score(at::zeros({3, C}), 10), Error);
}

TEST(FeatureStatsFile, RoundTripAndRefusals) {
  const std::string dir = test::temp_dir("stats");
  FeatureStats s = fit_gaussian(reference("well.features1"));
  s.network = "classifier resnet (test)";
  s.weights = "w.safetensors";
  s.resize = "none";
  s.source = "data:test";
  save_feature_stats(dir + "/a.safetensors", s);
  EXPECT_TRUE(is_feature_stats_file(dir + "/a.safetensors"));
  const FeatureStats back = load_feature_stats(dir + "/a.safetensors");
  EXPECT_TRUE(at::equal(back.mu, s.mu));
  EXPECT_TRUE(at::equal(back.sigma, s.sigma));
  EXPECT_EQ(back.sigma.scalar_type(), at::kDouble);
  EXPECT_EQ(back.count, s.count);
  EXPECT_EQ(back.network, s.network);
  EXPECT_EQ(back.source, "data:test");
  EXPECT_NEAR(frechet_distance(back, s), 0.0, 1e-9);

  FeatureStats other = s;
  other.network = "inception-v3 (pytorch-fid)";
  try {
    frechet_distance(s, other);
    ADD_FAILURE() << "no error for features of different networks";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("different networks"), std::string::npos) << e.what();
  }
  // Another safetensors file is not a statistics file.
  safetensors::save(dir + "/b.safetensors", {{"mu", at::zeros({3})}});
  EXPECT_FALSE(is_feature_stats_file(dir + "/b.safetensors"));
  EXPECT_FALSE(is_feature_stats_file(dir + "/missing.safetensors"));
  EXPECT_THROW(load_feature_stats(dir + "/b.safetensors"), Error);
  test::remove_tree(dir);
}

TEST(Metrics, TooFewImagesForTheSplitsNamesTheOption) {
  try {
    inception_score(torch::randn({2, 10}), 10);
    FAIL() << "2 images made 10 splits";
  } catch (const seqgan::Error& e) {
    const std::string m = e.what();
    EXPECT_EQ(m.find("inception_score: inception_score"), std::string::npos) << m;
    EXPECT_NE(m.find("2 samples cannot make 10 splits"), std::string::npos) << m;
    EXPECT_NE(m.find("--splits"), std::string::npos) << m;
  }
}
