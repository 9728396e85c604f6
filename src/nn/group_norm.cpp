#include "nn/group_norm.h"

#include <ATen/Parallel.h>
#include <torch/autograd.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "seqgan/error.h"

// The per-sample loops are compiled for AVX2 as well as the baseline (SSE2), picked at load time
// by the CPU's features.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define SEQGAN_SIMD_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define SEQGAN_SIMD_CLONES
#endif

namespace seqgan::nn {

namespace {

// out[p, c] = x[p, c] * a[c] + b[c] over HW rows of C channels.
inline void affine(const float* x, const float* a, const float* b, int64_t HW, int64_t C, float* out) {
  for (int64_t p = 0; p < HW; ++p) {
    const float* row = x + p * C;
    float* o = out + p * C;
    for (int64_t c = 0; c < C; ++c) o[c] = row[c] * a[c] + b[c];
  }
}

// Per channel over HW rows of C channels: s1[c] = sum of u, s2[c] = sum of u * v (in double).
inline void channel_sums(const float* u, const float* v, int64_t HW, int64_t C, double* s1, double* s2) {
  for (int64_t c = 0; c < C; ++c) s1[c] = s2[c] = 0.0;
  for (int64_t p = 0; p < HW; ++p) {
    const float* ur = u + p * C;
    const float* vr = v + p * C;
    for (int64_t c = 0; c < C; ++c) {
      s1[c] += ur[c];
      s2[c] += static_cast<double>(ur[c]) * vr[c];
    }
  }
}

struct Shape {
  int64_t C, HW, G;
};

// Per-channel affine map of one sample: y = x * a[c] + b[c] with the group's mean and 1/std folded in.
void fold_affine(const Shape& s, const float* weight, const float* bias, const float* mean, const float* rstd,
                 float* a, float* b) {
  const int64_t cg = s.C / s.G;
  for (int64_t c = 0; c < s.C; ++c) {
    const int64_t g = c / cg;
    a[c] = rstd[g] * weight[c];
    b[c] = bias[c] - mean[g] * a[c];
  }
}

// One sample, channels-last [HW, C]: statistics of each group, then x * a + b.
SEQGAN_SIMD_CLONES
void forward_sample(const Shape& s, const float* x, const float* weight, const float* bias, double eps, float* out,
                    float* mean, float* rstd, double* sum, double* sum_sq, float* a, float* b) {
  const int64_t C = s.C, HW = s.HW, cg = C / s.G;
  channel_sums(x, x, HW, C, sum, sum_sq);
  const double count = static_cast<double>(cg * HW);
  for (int64_t g = 0; g < s.G; ++g) {
    double s1 = 0, s2 = 0;
    for (int64_t c = g * cg; c < (g + 1) * cg; ++c) s1 += sum[c], s2 += sum_sq[c];
    const double m = s1 / count, var = std::max(s2 / count - m * m, 0.0);
    mean[g] = static_cast<float>(m);
    rstd[g] = static_cast<float>(1.0 / std::sqrt(var + eps));
  }
  fold_affine(s, weight, bias, mean, rstd, a, b);
  affine(x, a, b, HW, C, out);
}

// One sample backward. First the output gradient becomes the normalised value's gradient dy in
// dx: through SiLU, dy = grad * s (1 + y (1 - s)) where dx holds the recomputed y on entry and
// `sig` its sigmoid; without SiLU, dy = grad. Then dy and dy * x are summed per channel, and a
// last pass maps dy to dx in place:
// dx = rstd * (w dy - mean(w dy) - xhat * mean(w dy xhat)) over the group, which is affine in dy
// and x per channel.
SEQGAN_SIMD_CLONES
void backward_sample(const Shape& s, const float* x, const float* grad, const float* sig, const float* weight,
                     const float* mean, const float* rstd, float* dx, double* sum_dy, double* sum_dyx, float* a,
                     float* cx, float* c0) {
  const int64_t C = s.C, HW = s.HW, cg = C / s.G;
  if (sig) {
    for (int64_t i = 0; i < HW * C; ++i) {
      const float y = dx[i], sg = sig[i];
      dx[i] = grad[i] * sg * (1.0f + y * (1.0f - sg));
    }
  } else {
    std::memcpy(dx, grad, sizeof(float) * static_cast<size_t>(HW * C));
  }
  channel_sums(dx, x, HW, C, sum_dy, sum_dyx);
  const double count = static_cast<double>(cg * HW);
  for (int64_t g = 0; g < s.G; ++g) {
    const double m = mean[g], r = rstd[g];
    double m1 = 0, m2 = 0;
    for (int64_t c = g * cg; c < (g + 1) * cg; ++c) {
      m1 += weight[c] * sum_dy[c];
      m2 += weight[c] * r * (sum_dyx[c] - m * sum_dy[c]);
    }
    m1 /= count;
    m2 /= count;
    for (int64_t c = g * cg; c < (g + 1) * cg; ++c) {
      a[c] = static_cast<float>(r * weight[c]);
      cx[c] = static_cast<float>(-r * r * m2);
      c0[c] = static_cast<float>(r * r * m * m2 - r * m1);
    }
  }
  for (int64_t p = 0; p < HW; ++p) {
    const float* row = x + p * C;
    float* d = dx + p * C;
    for (int64_t c = 0; c < C; ++c) d[c] = a[c] * d[c] + cx[c] * row[c] + c0[c];
  }
}

Shape shape_of(const at::Tensor& x, int64_t groups) { return {x.size(1), x.size(2) * x.size(3), groups}; }

// Runs fn(n, scratch) for every sample over libtorch's threads; scratch holds `doubles` doubles and
// `floats` floats private to the calling thread.
template <typename Fn>
void for_each_sample(int64_t N, int64_t doubles, int64_t floats, const Fn& fn) {
  at::parallel_for(0, N, 1, [&](int64_t n0, int64_t n1) {
    std::vector<double> d(static_cast<size_t>(doubles));
    std::vector<float> f(static_cast<size_t>(floats));
    for (int64_t n = n0; n < n1; ++n) fn(n, d.data(), f.data());
  });
}

// out, mean [N, G], rstd [N, G]
std::tuple<at::Tensor, at::Tensor, at::Tensor> fused_forward(const at::Tensor& x, const at::Tensor& weight,
                                                             const at::Tensor& bias, int64_t groups, double eps,
                                                             bool silu) {
  const Shape s = shape_of(x, groups);
  const int64_t N = x.size(0);
  auto out = at::empty_like(x, at::MemoryFormat::ChannelsLast);
  auto mean = at::empty({N, groups}, x.options());
  auto rstd = at::empty({N, groups}, x.options());
  const float* xp = x.data_ptr<float>();
  const float* w = weight.data_ptr<float>();
  const float* b = bias.data_ptr<float>();
  float* op = out.data_ptr<float>();
  float* mp = mean.data_ptr<float>();
  float* rp = rstd.data_ptr<float>();
  for_each_sample(N, 2 * s.C, 2 * s.C, [&](int64_t n, double* d, float* f) {
    forward_sample(s, xp + n * s.HW * s.C, w, b, eps, op + n * s.HW * s.C, mp + n * groups, rp + n * groups, d,
                   d + s.C, f, f + s.C);
  });
  // ATen's SiLU is vectorised for the widest instruction set of the CPU, which a portable build of
  // this file cannot assume.
  if (silu) at::silu_(out);
  return {out, mean, rstd};
}

class GroupNormSiLU : public torch::autograd::Function<GroupNormSiLU> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight,
                            const at::Tensor& bias, int64_t groups, double eps, bool silu) {
    auto [out, mean, rstd] = fused_forward(x, weight, bias, groups, eps, silu);
    ctx->save_for_backward({x, weight, bias, mean, rstd});
    ctx->saved_data["groups"] = groups;
    ctx->saved_data["silu"] = silu;
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &weight = saved[1], &bias = saved[2], &mean = saved[3], &rstd = saved[4];
    const int64_t groups = ctx->saved_data["groups"].toInt();
    const bool silu = ctx->saved_data["silu"].toBool();
    if (!grads[0].defined()) return {at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
    const auto grad = grads[0].contiguous(at::MemoryFormat::ChannelsLast);
    const Shape s = shape_of(x, groups);
    const int64_t N = x.size(0), C = s.C, cg = C / groups;
    auto dx = at::empty_like(x, at::MemoryFormat::ChannelsLast);
    std::vector<double> sum_dy(static_cast<size_t>(N * C)), sum_dyx(static_cast<size_t>(N * C));
    const float* xp = x.data_ptr<float>();
    const float* gp = grad.data_ptr<float>();
    const float* w = weight.data_ptr<float>();
    const float* b = bias.data_ptr<float>();
    const float* mp = mean.data_ptr<float>();
    const float* rp = rstd.data_ptr<float>();
    float* dp = dx.data_ptr<float>();
    at::Tensor sig;  // through SiLU: dx first holds the recomputed y, sig its sigmoid
    if (silu) {
      for_each_sample(N, 0, 2 * C, [&](int64_t n, double*, float* f) {
        fold_affine(s, w, b, mp + n * groups, rp + n * groups, f, f + C);
        affine(xp + n * s.HW * C, f, f + C, s.HW, C, dp + n * s.HW * C);
      });
      sig = at::sigmoid(dx);
    }
    const float* sp = silu ? sig.data_ptr<float>() : nullptr;
    for_each_sample(N, 0, 3 * C, [&](int64_t n, double*, float* f) {
      const int64_t off = n * s.HW * C;
      backward_sample(s, xp + off, gp + off, sp ? sp + off : nullptr, w, mp + n * groups, rp + n * groups, dp + off,
                      sum_dy.data() + n * C, sum_dyx.data() + n * C, f, f + C, f + 2 * C);
    });
    // d weight[c] = sum over samples of rstd * (sum dy x - mean * sum dy); d bias[c] = sum of dy.
    auto dweight = at::empty({C}, weight.options());
    auto dbias = at::empty({C}, bias.options());
    float* dw = dweight.data_ptr<float>();
    float* db = dbias.data_ptr<float>();
    for (int64_t c = 0; c < C; ++c) {
      double gw = 0, gb = 0;
      for (int64_t n = 0; n < N; ++n) {
        const int64_t g = n * groups + c / cg;
        gw += rp[g] * (sum_dyx[n * C + c] - mp[g] * sum_dy[n * C + c]);
        gb += sum_dy[n * C + c];
      }
      dw[c] = static_cast<float>(gw);
      db[c] = static_cast<float>(gb);
    }
    return {dx, dweight, dbias, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

bool fusable(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  auto plain = [](const at::Tensor& t) {
    return t.defined() && t.device().is_cpu() && t.scalar_type() == at::kFloat && t.dim() == 1 && t.is_contiguous();
  };
  return x.device().is_cpu() && x.scalar_type() == at::kFloat && x.dim() == 4 && x.size(0) > 0 &&
         x.is_contiguous(at::MemoryFormat::ChannelsLast) && plain(weight) && plain(bias) &&
         weight.numel() == x.size(1) && bias.numel() == x.size(1);
}

}  // namespace

at::Tensor group_norm_silu(const at::Tensor& x, int64_t groups, const at::Tensor& weight, const at::Tensor& bias,
                           double eps, bool silu) {
  SEQGAN_CHECK(x.dim() >= 2 && groups > 0 && x.size(1) % groups == 0, "group_norm_silu: ", groups,
               " groups do not divide the ", x.dim() >= 2 ? x.size(1) : 0, " channels of a tensor of shape ",
               x.sizes());
  if (!fusable(x, weight, bias)) {
    auto y = at::group_norm(x, groups, weight, bias, eps);
    return silu ? at::silu(y) : y;
  }
  const bool needs_grad =
      at::GradMode::is_enabled() && (x.requires_grad() || weight.requires_grad() || bias.requires_grad());
  if (!needs_grad) return std::get<0>(fused_forward(x, weight, bias, groups, eps, silu));
  return GroupNormSiLU::apply(x, weight, bias, groups, eps, silu);
}

at::Tensor group_norm_silu(const at::Tensor& x, const torch::nn::GroupNorm& norm, bool silu) {
  const auto& o = norm->options;
  SEQGAN_CHECK(o.affine(), "group_norm_silu needs an affine GroupNorm");
  return group_norm_silu(x, o.num_groups(), norm->weight, norm->bias, o.eps(), silu);
}

}  // namespace seqgan::nn
