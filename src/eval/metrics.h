// Generation and reconstruction metrics (SPEC section 5): Frechet distance between Gaussian fits
// of feature vectors (FID, rFID), Inception Score, and the feature statistics files that let a
// reference set be measured once.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>

namespace seqgan {

// The Gaussian fit of a set of feature vectors, and where the features came from. Every number
// computed from it is reported with `network`: a Frechet distance between features of different
// networks is meaningless and refused.
struct FeatureStats {
  at::Tensor mu;     // [D] float64
  at::Tensor sigma;  // [D, D] float64, the unbiased covariance (N - 1 in the denominator)
  int64_t count = 0;
  std::string network;  // description of the feature network ("inception-v3 (pytorch-fid)", ...)
  std::string weights;  // the network's weight file, as given
  std::string resize;   // how images were brought to the network's input size
  std::string source;   // the images the statistics describe
  std::string weights_sha256;  // SHA-256 of the weight file ("" when unknown)
  std::string preprocess;      // how the source's images were prepared before the network
};

// Mean and covariance of features [N, D] (N >= 2), computed in float64.
FeatureStats fit_gaussian(const at::Tensor& features);

// ||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2)), in float64. The trace of the matrix
// square root is computed as the sum of the square roots of the eigenvalues of the symmetric
// positive semi-definite S1^(1/2) S2 S1^(1/2) (which has the eigenvalues of S1 S2), both from
// symmetric eigen-decompositions with tiny negative eigenvalues clamped to zero: finite also for
// singular covariances (fewer samples than dimensions), where a general sqrtm is ill-conditioned.
double frechet_distance(const at::Tensor& mu1, const at::Tensor& sigma1, const at::Tensor& mu2, const at::Tensor& sigma2);
double frechet_distance(const FeatureStats& a, const FeatureStats& b);  // checks that the networks agree

// Writes mu and sigma (float64) with metadata kind "fid-stats" (network, weights, resize, count,
// source), atomically.
void save_feature_stats(const std::string& path, const FeatureStats& stats);
FeatureStats load_feature_stats(const std::string& path);
// True when `path` is a safetensors file of kind "fid-stats" (reads the header only).
bool is_feature_stats_file(const std::string& path);

struct InceptionScore {
  double mean = 0;
  double std = 0;
  int splits = 0;
};

// exp(E_x KL(p(y|x) || p(y))) on each of `splits` parts of the samples (part k: samples
// [N k / splits, N (k + 1) / splits)), then the mean and the population standard deviation
// over the parts, as the original IS code reports them. logits: [N, C]. With `shuffle` the
// samples are first put in a fixed pseudo-random order (seed 0): files written class by class
// (as `seqgan sample` writes them) would otherwise give splits of a single class each.
InceptionScore inception_score(const at::Tensor& logits, int splits = 10, bool shuffle = true);

// The same score the way ADM's evaluator computes it: consecutive parts of `split_size` samples
// in file order (the last one may be shorter; 50,000 samples make 10 parts), the mean over the
// parts, and their population standard deviation.
InceptionScore inception_score_parts(const at::Tensor& logits, int64_t split_size = 5000);

// Improved precision and recall (Kynkaanniemi et al. 2019) as ADM's evaluator computes them:
// squared Euclidean distances max(|u|^2 - 2 u.v + |v|^2, 0) in float32, computed in blocks of
// row_batch x col_batch; the radius of each feature is the squared distance to its k-th nearest
// neighbour in its own set (the set itself included, so position k of the sorted row, which
// begins with the zero distance to itself). Precision: the fraction of generated features
// within the radius of some reference feature; recall: the fraction of reference features
// within the radius of some generated feature (distance <= radius).
struct ManifoldOptions {
  int k = 3;
  int64_t row_batch = 10000;
  int64_t col_batch = 10000;
};
struct PrecisionRecall {
  double precision = 0;
  double recall = 0;
};
// [N] float32 radii of the features [N, D] (N > k).
at::Tensor manifold_radii(const at::Tensor& features, const ManifoldOptions& options = {});
PrecisionRecall precision_recall(const at::Tensor& reference, const at::Tensor& generated,
                                 const ManifoldOptions& options = {});
// The same with the reference's radii given (manifold_radii of `reference` with the same
// options): one reference measured against several generated sets computes them once.
PrecisionRecall precision_recall_given_radii(const at::Tensor& reference, const at::Tensor& reference_radii,
                                            const at::Tensor& generated, const ManifoldOptions& options = {});

}  // namespace seqgan
