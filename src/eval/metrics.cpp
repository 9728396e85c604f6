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
                {"count", std::to_string(stats.count)}, {"source", stats.source}};
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
  s.count = get("count").empty() ? 0 : std::stoll(get("count"));
  return s;
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
  std::vector<double> scores;
  for (int k = 0; k < splits; ++k) {
    const at::Tensor part = logp.slice(0, n * k / splits, n * (k + 1) / splits);
    const at::Tensor log_marginal = at::logsumexp(part, 0) - std::log(static_cast<double>(part.size(0)));  // log p(y)
    const double kl = (part.exp() * (part - log_marginal)).sum(1).mean().item<double>();
    scores.push_back(std::exp(kl));
  }
  InceptionScore is;
  is.splits = splits;
  for (double s : scores) is.mean += s / splits;
  for (double s : scores) is.std += (s - is.mean) * (s - is.mean) / splits;
  is.std = std::sqrt(is.std);
  return is;
}

}  // namespace seqgan
