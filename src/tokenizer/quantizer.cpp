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
  const double r = config.init_range > 0 ? config.init_range : 1.0 / static_cast<double>(codebook_size);
  embedding = register_parameter("embedding", torch::empty({codebook_size, code_dim}).uniform_(-r, r));
}

at::Tensor QuantizerImpl::nearest(const at::Tensor& z_e) {
  torch::NoGradGuard no_grad;
  const int64_t B = z_e.size(0), D = z_e.size(1), h = z_e.size(2), w = z_e.size(3);
  SEQGAN_CHECK(D == embedding.size(1), "encoder output has ", D, " channels, the codebook ", embedding.size(1));
  const auto z = z_e.permute({0, 2, 3, 1}).reshape({-1, D}).to(embedding.scalar_type());  // [N, D]
  return squared_distances(z, embedding).argmin(1).view({B, h, w});
}

at::Tensor QuantizerImpl::lookup(const at::Tensor& indices) {
  // [B, h, w] -> [B, h, w, D] -> [B, D, h, w]
  return at::embedding(embedding, indices).permute({0, 3, 1, 2}).contiguous();
}

QuantizerOutput QuantizerImpl::forward(const at::Tensor& z_e_in) {
  const int64_t B = z_e_in.size(0), D = z_e_in.size(1), h = z_e_in.size(2), w = z_e_in.size(3);
  SEQGAN_CHECK(D == embedding.size(1), "encoder output has ", D, " channels, the codebook ", embedding.size(1));
  // The regulariser and the distances are kept in float32 even under autocast.
  const auto z_e = z_e_in.to(at::kFloat);
  const auto z = z_e.permute({0, 2, 3, 1}).reshape({-1, D});  // [N, D]
  QuantizerOutput out;
  const bool need_soft = regularize && (config_.entropy_gamma > 0 || config_.per_sample_entropy_gamma > 0);
  at::Tensor d;
  if (need_soft) {
    d = squared_distances(z, embedding);  // differentiable: the regulariser moves codes and encoder
    out.indices = d.detach().argmin(1).view({B, h, w});
  } else {
    out.indices = nearest(z_e);
  }
  const auto z_q = lookup(out.indices);                                  // [B, D, h, w]
  out.codebook_loss = at::mse_loss(z_q, z_e.detach());
  out.commit_loss = config_.beta * at::mse_loss(z_e, z_q.detach());
  out.z_q = (z_e + (z_q - z_e).detach()).to(z_e_in.scalar_type());       // straight-through
  out.entropy_loss = at::zeros({}, z_e.options());
  if (need_soft) {
    const auto [h_mean, mean_h] = usage_entropies(d, config_.entropy_tau, all_reduce_sum);
    out.entropy_loss = config_.entropy_sign * config_.entropy_gamma * h_mean;
    if (config_.per_sample_entropy_gamma > 0) out.entropy_loss = out.entropy_loss + config_.per_sample_entropy_gamma * mean_h;
    out.soft_usage_entropy = h_mean.item<double>();
  } else {
    torch::NoGradGuard no_grad;
    out.soft_usage_entropy =
        usage_entropies(squared_distances(z, embedding), config_.entropy_tau, all_reduce_sum).first.item<double>();
  }
  const auto hist = code_histogram(out.indices, embedding.size(0)).to(at::kDouble);
  const auto prob = hist / hist.sum();
  out.perplexity = std::exp(-(prob * at::log(prob.clamp_min(1e-12))).sum().item<double>());
  out.codes_used = (hist > 0).sum().item<int64_t>();
  return out;
}

}  // namespace seqgan
