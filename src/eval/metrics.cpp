#include "eval/metrics.h"

#include <filesystem>

#include "seqgan/checkpoint.h"
#include "seqgan/error.h"
#include "seqgan/safetensors.h"

namespace seqgan {
namespace {

constexpr const char* kStatsKind = "fid-stats";

at::Tensor symmetric(const at::Tensor& m) { return (m + m.transpose(0, 1)) * 0.5; }

// V diag(sqrt(max(w, 0))) V^T of a symmetric matrix.
at::Tensor psd_sqrt(const at::Tensor& m) {
  const auto [w, v] = at::linalg_eigh(symmetric(m));
  return at::matmul(v * w.clamp_min(0).sqrt().unsqueeze(0), v.transpose(0, 1));
}

void check_pair(const at::Tensor& mu, const at::Tensor& sigma, const char* which) {
  SEQGAN_CHECK(mu.dim() == 1 && sigma.dim() == 2 && sigma.size(0) == mu.size(0) && sigma.size(1) == mu.size(0),
               "frechet_distance: statistics ", which, " must be mu [D] and sigma [D, D], found ", mu.sizes(), " and ",
               sigma.sizes());
}

}  // namespace

FeatureStats fit_gaussian(const at::Tensor& features) {
  SEQGAN_CHECK_HINT(features.dim() == 2 && features.size(0) >= 2, "measure at least two images",
                    "expected features [N >= 2, D], found shape ", features.sizes());
  const at::Tensor f = features.to(at::kDouble).cpu();
  FeatureStats s;
  s.count = f.size(0);
  s.mu = f.mean(0);
  const at::Tensor centred = f - s.mu;
  s.sigma = at::matmul(centred.transpose(0, 1), centred) / static_cast<double>(s.count - 1);
  return s;
}

double frechet_distance(const at::Tensor& mu1, const at::Tensor& sigma1, const at::Tensor& mu2, const at::Tensor& sigma2) {
  check_pair(mu1, sigma1, "1");
  check_pair(mu2, sigma2, "2");
  SEQGAN_CHECK_HINT(mu1.size(0) == mu2.size(0), "compare features of the same network",
                    "feature dimensions differ (", mu1.size(0), " vs ", mu2.size(0), ")");
  const auto d = [](const at::Tensor& t) { return t.to(at::kDouble).cpu(); };
  const at::Tensor m1 = d(mu1), s1 = d(sigma1), m2 = d(mu2), s2 = d(sigma2);
  SEQGAN_CHECK(at::isfinite(m1).all().item<bool>() && at::isfinite(s1).all().item<bool>() &&
                   at::isfinite(m2).all().item<bool>() && at::isfinite(s2).all().item<bool>(),
               "frechet_distance: the statistics hold NaN or infinite values (were the features finite?)");
  const at::Tensor root1 = psd_sqrt(s1);
  const at::Tensor inner = symmetric(at::matmul(at::matmul(root1, symmetric(s2)), root1));
  const double trace_covmean = at::linalg_eigvalsh(inner).clamp_min(0).sqrt().sum().item<double>();
  const double mean_term = (m1 - m2).pow(2).sum().item<double>();
  return mean_term + s1.trace().item<double>() + s2.trace().item<double>() - 2.0 * trace_covmean;
}

double frechet_distance(const FeatureStats& a, const FeatureStats& b) {
  SEQGAN_CHECK_HINT(a.network == b.network, "compute both sides with the same feature network (eval.feature_network)",
                    "the two feature sets come from different networks: '", a.network, "' (", a.source, ") and '",
                    b.network, "' (", b.source, ")");
  return frechet_distance(a.mu, a.sigma, b.mu, b.sigma);
}

void save_feature_stats(const std::string& path, const FeatureStats& stats) {
  SEQGAN_CHECK(stats.mu.defined() && stats.sigma.defined(), "no statistics to save");
  CheckpointMeta meta;
  meta.kind = kStatsKind;
  meta.config_json = "{}";
  meta.extra = {{"network", stats.network}, {"weights", stats.weights}, {"resize", stats.resize},
                {"count", std::to_string(stats.count)}, {"source", stats.source},
                {"weights_sha256", stats.weights_sha256}, {"preprocess", stats.preprocess}};
  const auto parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent);
  safetensors::save(path, {{"mu", stats.mu.to(at::kDouble).cpu().contiguous()}, {"sigma", stats.sigma.to(at::kDouble).cpu().contiguous()}},
                    meta.to_metadata());
}

bool is_feature_stats_file(const std::string& path) {
  if (!std::filesystem::is_regular_file(path)) return false;
  try {
    const auto header = safetensors::read_header(path);
    const auto it = header.metadata.find("kind");
    return it != header.metadata.end() && it->second == kStatsKind;
  } catch (const std::exception&) {
    return false;
  }
}

FeatureStats load_feature_stats(const std::string& path) {
  const auto file = safetensors::load(path);
  const CheckpointMeta meta = CheckpointMeta::from_metadata(file.header.metadata, path);
  SEQGAN_CHECK_HINT(meta.kind == kStatsKind, "make statistics with `seqgan fid-stats`", path,
                    ": expected feature statistics (kind 'fid-stats'), found kind '", meta.kind, "'");
  FeatureStats s;
  for (const char* name : {"mu", "sigma"})
    SEQGAN_CHECK_HINT(file.tensors.count(name), "make statistics with `seqgan fid-stats`", path, ": tensor '", name,
                      "' is missing");
  s.mu = file.tensors.at("mu").to(at::kDouble);
  s.sigma = file.tensors.at("sigma").to(at::kDouble);
  check_pair(s.mu, s.sigma, path.c_str());
  const auto get = [&](const char* key) {
    const auto it = meta.extra.find(key);
    return it == meta.extra.end() ? std::string() : it->second;
  };
  s.network = get("network");
  s.weights = get("weights");
  s.resize = get("resize");
  s.source = get("source");
  s.weights_sha256 = get("weights_sha256");
  s.preprocess = get("preprocess");
  s.count = get("count").empty() ? 0 : std::stoll(get("count"));
  return s;
}

namespace {

InceptionScore score_parts(const at::Tensor& logp, const std::vector<std::pair<int64_t, int64_t>>& parts) {
  std::vector<double> scores;
  for (const auto& [begin, end] : parts) {
    const at::Tensor part = logp.slice(0, begin, end);
    const at::Tensor log_marginal = at::logsumexp(part, 0) - std::log(static_cast<double>(part.size(0)));  // log p(y)
    const double kl = (part.exp() * (part - log_marginal)).sum(1).mean().item<double>();
    scores.push_back(std::exp(kl));
  }
  InceptionScore is;
  is.splits = static_cast<int>(scores.size());
  for (double v : scores) is.mean += v / is.splits;
  for (double v : scores) is.std += (v - is.mean) * (v - is.mean) / is.splits;
  is.std = std::sqrt(is.std);
  return is;
}

}  // namespace

InceptionScore inception_score_parts(const at::Tensor& logits, int64_t split_size) {
  SEQGAN_CHECK(logits.dim() == 2 && logits.size(0) >= 1, "expected logits [N >= 1, C], found shape ", logits.sizes());
  SEQGAN_CHECK(split_size >= 1, "inception_score_parts: split size must be positive, found ", split_size);
  const at::Tensor logp = at::log_softmax(logits.to(at::kDouble).cpu(), 1);
  std::vector<std::pair<int64_t, int64_t>> parts;
  for (int64_t b = 0; b < logp.size(0); b += split_size) parts.emplace_back(b, std::min(logp.size(0), b + split_size));
  return score_parts(logp, parts);
}

InceptionScore inception_score(const at::Tensor& logits, int splits, bool shuffle) {
  SEQGAN_CHECK(logits.dim() == 2, "expected logits [N, C], found shape ", logits.sizes());
  SEQGAN_CHECK_HINT(splits >= 1 && logits.size(0) >= splits,
                    "measure at least as many images as splits, or use fewer splits (--splits N, or eval.is_splits)",
                    logits.size(0), " samples cannot make ", splits, " splits");
  at::Tensor logp = at::log_softmax(logits.to(at::kDouble).cpu(), 1);  // [N, C]
  const int64_t n = logp.size(0);
  if (shuffle) {
    at::Generator gen = at::detail::createCPUGenerator(0);
    logp = logp.index_select(0, at::randperm(n, gen, at::TensorOptions(at::kLong)));
  }
  std::vector<std::pair<int64_t, int64_t>> parts;
  for (int k = 0; k < splits; ++k) parts.emplace_back(n * k / splits, n * (k + 1) / splits);
  return score_parts(logp, parts);
}

namespace {

// Squared distances [U, V] float32 between rows of u [U, D] and v [V, D] (float32).
at::Tensor squared_distances(const at::Tensor& u, const at::Tensor& v) {
  const at::Tensor nu = u.pow(2).sum(1, true);                  // [U, 1]
  const at::Tensor nv = v.pow(2).sum(1, true).transpose(0, 1);  // [1, V]
  return (nu - 2 * at::matmul(u, v.transpose(0, 1)) + nv).clamp_min(0);
}

at::Tensor as_features(const at::Tensor& f, const char* which) {
  SEQGAN_CHECK_HINT(f.dim() == 2 && f.size(0) >= 1, "pass features [N, D]", "precision/recall: ", which,
                    " features must be [N, D], found shape ", f.sizes());
  return f.to(at::kFloat).cpu().contiguous();
}

void check_options(const ManifoldOptions& o) {
  SEQGAN_CHECK(o.k >= 1 && o.row_batch >= 1 && o.col_batch >= 1, "precision/recall: k, row_batch and col_batch must be positive");
}

}  // namespace

at::Tensor manifold_radii(const at::Tensor& features, const ManifoldOptions& options) {
  check_options(options);
  const at::Tensor f = as_features(features, "the");
  const int64_t n = f.size(0);
  SEQGAN_CHECK_HINT(n > options.k, "measure more images than the neighbourhood size", "precision/recall: ", n,
                    " features cannot have a ", options.k, "-th nearest neighbour");
  at::Tensor radii = at::empty({n}, at::kFloat);
  for (int64_t r = 0; r < n; r += options.row_batch) {
    const at::Tensor rows = f.slice(0, r, std::min(n, r + options.row_batch));
    std::vector<at::Tensor> blocks;
    for (int64_t c = 0; c < n; c += options.col_batch)
      blocks.push_back(squared_distances(rows, f.slice(0, c, std::min(n, c + options.col_batch))));
    const at::Tensor d = at::cat(blocks, 1);  // [rows, N]
    const at::Tensor kth = std::get<0>(at::topk(d, options.k + 1, 1, /*largest=*/false, /*sorted=*/true)).select(1, options.k);
    radii.slice(0, r, r + rows.size(0)).copy_(kth);
  }
  return radii;
}

PrecisionRecall precision_recall(const at::Tensor& reference, const at::Tensor& generated, const ManifoldOptions& options) {
  return precision_recall_given_radii(reference, manifold_radii(reference, options), generated, options);
}

PrecisionRecall precision_recall_given_radii(const at::Tensor& reference, const at::Tensor& reference_radii, const at::Tensor& generated,
                                 const ManifoldOptions& options) {
  const at::Tensor ref = as_features(reference, "reference"), gen = as_features(generated, "generated");
  SEQGAN_CHECK_HINT(ref.size(1) == gen.size(1), "compute both sets with the same feature network",
                    "precision/recall: feature dimensions differ (", ref.size(1), " vs ", gen.size(1), ")");
  SEQGAN_CHECK(reference_radii.dim() == 1 && reference_radii.size(0) == ref.size(0),
               "precision/recall: expected one radius per reference feature, found ", reference_radii.sizes());
  const at::Tensor ref_radii = reference_radii.to(at::kFloat).cpu(), gen_radii = manifold_radii(gen, options);
  at::Tensor ref_in = at::zeros({ref.size(0)}, at::kBool), gen_in = at::zeros({gen.size(0)}, at::kBool);
  for (int64_t r = 0; r < ref.size(0); r += options.row_batch) {
    const int64_t r_end = std::min(ref.size(0), r + options.row_batch);
    for (int64_t c = 0; c < gen.size(0); c += options.col_batch) {
      const int64_t c_end = std::min(gen.size(0), c + options.col_batch);
      const at::Tensor d = squared_distances(ref.slice(0, r, r_end), gen.slice(0, c, c_end));  // [R, G]
      // a reference feature is covered when some generated feature's ball holds it, and back
      ref_in.slice(0, r, r_end).bitwise_or_((d <= gen_radii.slice(0, c, c_end).unsqueeze(0)).any(1));
      gen_in.slice(0, c, c_end).bitwise_or_((d <= ref_radii.slice(0, r, r_end).unsqueeze(1)).any(0));
    }
  }
  PrecisionRecall pr;
  pr.precision = gen_in.to(at::kDouble).mean().item<double>();
  pr.recall = ref_in.to(at::kDouble).mean().item<double>();
  return pr;
}

}  // namespace seqgan
