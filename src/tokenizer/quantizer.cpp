#include "tokenizer/quantizer.h"

#include "seqgan/error.h"

namespace seqgan {

at::Tensor squared_distances(const at::Tensor& z, const at::Tensor& codes) {
  // |z|^2 - 2 z.e + |e|^2, [N, K]
  return z.pow(2).sum(1, true) - 2 * at::matmul(z, codes.t()) + codes.pow(2).sum(1).unsqueeze(0);
}

std::pair<at::Tensor, at::Tensor> usage_entropies(const at::Tensor& d, double tau,
                                                  const std::function<at::Tensor(const at::Tensor&)>& reduce_sum) {
  const auto logp = at::log_softmax(-d / tau, 1);  // [N, K]
  const auto p = logp.exp();
  auto sum_p = p.sum(0);                           // [K]
  auto count = at::full({1}, static_cast<double>(d.size(0)), d.options());
  if (reduce_sum) {
    sum_p = reduce_sum(sum_p);
    count = reduce_sum(count);
  }
  const auto mean_p = sum_p / count;
  const auto h_mean = -(mean_p * at::log(mean_p.clamp_min(1e-12))).sum();
  const auto mean_h = -(p * logp).sum(1).mean();
  return {h_mean, mean_h};
}

at::Tensor code_histogram(const at::Tensor& indices, int64_t codebook_size) {
  return at::bincount(indices.reshape({-1}).to(at::kLong).cpu(), {}, codebook_size);
}

CodeUsage code_usage(const at::Tensor& histogram) {
  CodeUsage u;
  u.used = (histogram > 0).sum().item<int64_t>();
  u.fraction = static_cast<double>(u.used) / static_cast<double>(histogram.size(0));
  const at::Tensor p = histogram.to(at::kDouble) / std::max<double>(1.0, histogram.sum().item<double>());
  u.perplexity = std::exp(-(p * at::log(p.clamp_min(1e-300))).sum().item<double>());
  return u;
}

QuantizerImpl::QuantizerImpl(int64_t codebook_size, int64_t code_dim, const QuantizerConfig& config)
    : config_(config) {
  SEQGAN_CHECK(codebook_size >= 2 && code_dim >= 1, "codebook must be at least 2 x 1, got ", codebook_size, " x ",
               code_dim);
  SEQGAN_CHECK_HINT(config.kind == "nearest" || config.kind == "factorized", "set quantizer.kind to nearest or factorized",
                    "unknown quantizer.kind '", config.kind, "'");
  int64_t lookup_dim = code_dim;
  if (config.kind == "factorized") {
    SEQGAN_CHECK_HINT(config.factor_dim >= 1, "set quantizer.factor_dim to a positive dimension",
                      "quantizer.factor_dim is ", config.factor_dim);
    lookup_dim = config.factor_dim;
    in_proj = register_module("in_proj", torch::nn::Linear(code_dim, lookup_dim));
    out_proj = register_module("out_proj", torch::nn::Linear(lookup_dim, code_dim));
  }
  const double r = config.init_range > 0 ? config.init_range : 1.0 / static_cast<double>(codebook_size);
  embedding = register_parameter("embedding", torch::empty({codebook_size, lookup_dim}).uniform_(-r, r));
}

namespace {
at::Tensor unit_rows(const at::Tensor& x) {
  return torch::nn::functional::normalize(x, torch::nn::functional::NormalizeFuncOptions().dim(1));
}
}  // namespace

int64_t QuantizerImpl::input_dim() const { return factorized() ? in_proj->weight.size(1) : embedding.size(1); }

at::Tensor QuantizerImpl::to_lookup_space(const at::Tensor& z) { return factorized() ? unit_rows(in_proj->forward(z)) : z; }

at::Tensor QuantizerImpl::codes() const { return factorized() ? unit_rows(embedding) : embedding; }

at::Tensor QuantizerImpl::nearest(const at::Tensor& z_e) {
  torch::NoGradGuard no_grad;
  const int64_t B = z_e.size(0), D = z_e.size(1), h = z_e.size(2), w = z_e.size(3);
  SEQGAN_CHECK(D == input_dim(), "encoder output has ", D, " channels, the quantizer expects ", input_dim());
  const auto z = z_e.permute({0, 2, 3, 1}).reshape({-1, D}).to(embedding.scalar_type());  // [N, D]
  return squared_distances(to_lookup_space(z), codes()).argmin(1).view({B, h, w});
}

at::Tensor QuantizerImpl::lookup(const at::Tensor& indices) {
  at::Tensor e = at::embedding(codes(), indices);  // [B, h, w, d]
  if (factorized()) e = out_proj->forward(e);      // [B, h, w, D]
  return e.permute({0, 3, 1, 2}).contiguous(at::MemoryFormat::ChannelsLast);  // the decoder's layout, no copy
}

QuantizerOutput QuantizerImpl::forward(const at::Tensor& z_e_in) {
  const int64_t B = z_e_in.size(0), D = z_e_in.size(1), h = z_e_in.size(2), w = z_e_in.size(3);
  SEQGAN_CHECK(D == input_dim(), "encoder output has ", D, " channels, the quantizer expects ", input_dim());
  // The regulariser and the distances are kept in float32 even under autocast.
  const auto z_e = z_e_in.to(at::kFloat);
  const auto z = to_lookup_space(z_e.permute({0, 2, 3, 1}).reshape({-1, D}));  // [N, d]
  const auto e = codes();                                                      // [K, d]
  QuantizerOutput out;
  const bool need_soft = regularize && (config_.entropy_gamma > 0 || config_.per_sample_entropy_gamma > 0);
  // Differentiable only for the regulariser, which moves codes and encoder through it.
  const at::Tensor d = need_soft ? squared_distances(z, e) : squared_distances(z.detach(), e.detach());
  const auto flat_indices = d.detach().argmin(1);
  out.indices = flat_indices.view({B, h, w});
  const auto z_q = at::embedding(e, flat_indices);  // [N, d]
  out.codebook_loss = at::mse_loss(z_q, z.detach());
  out.commit_loss = config_.beta * at::mse_loss(z, z_q.detach());
  at::Tensor st = z + (z_q - z).detach();  // straight-through
  if (factorized()) st = out_proj->forward(st);
  // Channels-last, the layout of the encoder's output and of the decoder's convolutions: no copy.
  out.z_q = st.view({B, h, w, D}).permute({0, 3, 1, 2}).contiguous(at::MemoryFormat::ChannelsLast).to(z_e_in.scalar_type());
  out.lookup_space = z.detach();
  out.entropy_loss = at::zeros({}, z_e.options());
  if (need_soft) {
    const auto [h_mean, mean_h] = usage_entropies(d, config_.entropy_tau, all_reduce_sum);
    out.entropy_loss = config_.entropy_sign * config_.entropy_gamma * h_mean;
    if (config_.per_sample_entropy_gamma > 0) out.entropy_loss = out.entropy_loss + config_.per_sample_entropy_gamma * mean_h;
    out.soft_usage_entropy = h_mean.item<double>();
  } else {
    torch::NoGradGuard no_grad;
    out.soft_usage_entropy = usage_entropies(d, config_.entropy_tau, all_reduce_sum).first.item<double>();
  }
  // Over the whole batch of every rank in data-parallel training, as one process would see it.
  auto hist = code_histogram(out.indices, embedding.size(0)).to(at::kDouble);
  if (all_reduce_sum) hist = all_reduce_sum(hist);
  const auto prob = hist / hist.sum();
  out.perplexity = std::exp(-(prob * at::log(prob.clamp_min(1e-12))).sum().item<double>());
  out.codes_used = (hist > 0).sum().item<int64_t>();
  return out;
}

int64_t QuantizerImpl::reestimate(const at::Tensor& points_in, int iterations, at::Generator generator) {
  torch::NoGradGuard no_grad;
  SEQGAN_CHECK(points_in.dim() == 2 && points_in.size(1) == embedding.size(1), "k-means points must be [N, ",
               embedding.size(1), "], got ", points_in.sizes());
  const auto points = points_in.to(embedding.device(), at::kFloat);
  const int64_t K = embedding.size(0), N = points.size(0);
  at::Tensor centres = codes().to(at::kFloat).clone();
  at::Tensor empty_mask;
  for (int it = 0; it < iterations; ++it) {
    const auto assign = squared_distances(points, centres).argmin(1);  // [N]
    const auto counts = at::bincount(assign, {}, K).to(at::kFloat);    // [K]
    const auto sums = at::zeros_like(centres).index_add_(0, assign, points);
    empty_mask = counts == 0;
    const auto means = sums / counts.clamp_min(1).unsqueeze(1);
    centres = at::where(empty_mask.unsqueeze(1), centres, means);
    if (factorized()) centres = unit_rows(centres);
  }
  // Codes that no point chose in the last iteration move onto random points.
  const auto empty = empty_mask.defined() ? empty_mask.nonzero().view({-1}) : at::empty({0}, at::kLong);
  const int64_t moved = empty.numel();
  if (moved > 0 && N > 0) {
    const auto pick = at::randint(N, {moved}, generator, at::TensorOptions().dtype(at::kLong)).to(points.device());
    centres.index_copy_(0, empty, points.index_select(0, pick));
  }
  embedding.copy_(centres.to(embedding.scalar_type()));
  return moved;
}

}  // namespace seqgan
