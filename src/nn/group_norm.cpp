#include "nn/group_norm.h"

#include <ATen/Parallel.h>
#include <torch/autograd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "seqgan/error.h"

// The per-sample loops are compiled for AVX-512 and AVX2 as well as the baseline (SSE2), picked at
// load time by the CPU's features.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define SEQGAN_SIMD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define SEQGAN_SIMD_CLONES
#endif

namespace seqgan::nn {

namespace {

// exp(x) to within 2e-7 relative (about 1 ulp; Cody-Waite reduction to |r| <= ln2 / 2, then a
// degree-6 polynomial, then the exponent bits). No branches and no library call, so that the loops
// calling it vectorise. Inputs are clamped to [-87, 88], where float's exp neither overflows nor
// becomes denormal; sigmoid() only needs that range.
inline float fast_exp(float x) {
  x = std::min(std::max(x, -87.0f), 88.0f);
  const float n = (x * 1.44269504f + 12582912.0f) - 12582912.0f;  // round(x / ln 2): 1.5 * 2^23 trick
  const float r = (x - n * 0.693359375f) + n * 2.12194440e-4f;    // x - n ln 2 in two parts
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;  // 2^n
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

inline float sigmoid(float v) { return 1.0f / (1.0f + fast_exp(-v)); }

// Per-channel sums over HW rows of C channels are added in float over blocks of this many rows
// (vectorised across channels), and the blocks in double: one float rounding per 32 terms.
constexpr int64_t kBlockRows = 32;

// One row of C channels: b1 += u, b2 += u * v. The row helpers below take restrict pointers so that
// the compiler vectorises them without run-time overlap checks.
inline void sums_row(const float* __restrict u, const float* __restrict v, int64_t C, float* __restrict b1,
                     float* __restrict b2) {
  for (int64_t c = 0; c < C; ++c) {
    b1[c] += u[c];
    b2[c] += u[c] * v[c];
  }
}

// out = x * a + b, then SiLU when `silu`.
inline void affine_row(const float* __restrict x, const float* __restrict a, const float* __restrict b, int64_t C,
                       bool silu, float* __restrict out) {
  if (silu) {
    for (int64_t c = 0; c < C; ++c) {
      const float y = x[c] * a[c] + b[c];
      out[c] = y * sigmoid(y);
    }
  } else {
    for (int64_t c = 0; c < C; ++c) out[c] = x[c] * a[c] + b[c];
  }
}

// Through SiLU: y = x * a + b, d = g * s (1 + y (1 - s)) with s = sigmoid(y); b1 += d, b2 += d * x.
inline void silu_grad_row(const float* __restrict x, const float* __restrict g, const float* __restrict a,
                          const float* __restrict b, int64_t C, float* __restrict d, float* __restrict b1,
                          float* __restrict b2) {
  for (int64_t c = 0; c < C; ++c) {
    const float y = x[c] * a[c] + b[c], sg = sigmoid(y);
    const float dy = g[c] * sg * (1.0f + y * (1.0f - sg));
    d[c] = dy;
    b1[c] += dy;
    b2[c] += dy * x[c];
  }
}

// d = a * dy + cx * x + c0 (dy may be d itself).
inline void input_grad_row(const float* __restrict x, const float* dy, const float* __restrict a,
                           const float* __restrict cx, const float* __restrict c0, int64_t C, float* d) {
  for (int64_t c = 0; c < C; ++c) d[c] = a[c] * dy[c] + cx[c] * x[c] + c0[c];
}

// Adds the float block sums b1, b2 (C each) into s1, s2 and clears them.
inline void flush_block(int64_t C, float* b1, float* b2, double* s1, double* s2) {
  for (int64_t c = 0; c < C; ++c) {
    s1[c] += b1[c];
    s2[c] += b2[c];
    b1[c] = b2[c] = 0.0f;
  }
}

// Per-channel sums over HW rows: row(p, b1, b2) adds row p's terms into the float block sums b1, b2
// (C floats of scratch each), which go into the double sums s1, s2 every kBlockRows rows.
template <typename RowFn>
inline void blocked_channel_sums(int64_t HW, int64_t C, double* s1, double* s2, float* b1, float* b2,
                                 const RowFn& row) {
  for (int64_t c = 0; c < C; ++c) s1[c] = s2[c] = 0.0, b1[c] = b2[c] = 0.0f;
  for (int64_t p = 0; p < HW; ++p) {
    row(p, b1, b2);
    if ((p + 1) % kBlockRows == 0 || p + 1 == HW) flush_block(C, b1, b2, s1, s2);
  }
}

// Per channel over HW rows of C channels: s1[c] = sum of u, s2[c] = sum of u * v.
inline void channel_sums(const float* u, const float* v, int64_t HW, int64_t C, double* s1, double* s2, float* b1,
                         float* b2) {
  blocked_channel_sums(HW, C, s1, s2, b1, b2,
                       [&](int64_t p, float* r1, float* r2) { sums_row(u + p * C, v + p * C, C, r1, r2); });
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

// One sample, channels-last [HW, C]: statistics of each group, then x * a + b (and SiLU) in one pass.
// Scratch: sum, sum_sq (C doubles each), a, b, b1, b2 (C floats each).
SEQGAN_SIMD_CLONES
void forward_sample(const Shape& s, const float* x, const float* weight, const float* bias, double eps, bool silu,
                    float* out, float* mean, float* rstd, double* sum, double* sum_sq, float* a, float* b, float* b1,
                    float* b2) {
  const int64_t C = s.C, HW = s.HW, cg = C / s.G;
  channel_sums(x, x, HW, C, sum, sum_sq, b1, b2);
  const double count = static_cast<double>(cg * HW);
  for (int64_t g = 0; g < s.G; ++g) {
    double s1 = 0, s2 = 0;
    for (int64_t c = g * cg; c < (g + 1) * cg; ++c) s1 += sum[c], s2 += sum_sq[c];
    const double m = s1 / count, var = std::max(s2 / count - m * m, 0.0);
    mean[g] = static_cast<float>(m);
    rstd[g] = static_cast<float>(1.0 / std::sqrt(var + eps));
  }
  fold_affine(s, weight, bias, mean, rstd, a, b);
  for (int64_t p = 0; p < HW; ++p) affine_row(x + p * C, a, b, C, silu, out + p * C);
}

// One sample backward, two passes. The first recomputes the normalised value y = x * a + b, turns
// the output gradient into y's gradient dy (through SiLU: dy = grad * s (1 + y (1 - s)), s the
// sigmoid of y; without SiLU dy = grad), stores it in dx and sums dy and dy * x per channel. The
// second maps dy to dx in place:
// dx = rstd * (w dy - mean(w dy) - xhat * mean(w dy xhat)) over the group, which is affine in dy
// and x per channel. Scratch: a, b, cx, c0, b1, b2 (C floats each).
SEQGAN_SIMD_CLONES
void backward_sample(const Shape& s, const float* x, const float* grad, bool silu, const float* weight,
                     const float* bias, const float* mean, const float* rstd, float* dx, double* sum_dy,
                     double* sum_dyx, float* a, float* b, float* cx, float* c0, float* b1, float* b2) {
  const int64_t C = s.C, HW = s.HW, cg = C / s.G;
  if (silu) {
    fold_affine(s, weight, bias, mean, rstd, a, b);
    blocked_channel_sums(HW, C, sum_dy, sum_dyx, b1, b2, [&](int64_t p, float* r1, float* r2) {
      silu_grad_row(x + p * C, grad + p * C, a, b, C, dx + p * C, r1, r2);
    });
  } else {
    channel_sums(grad, x, HW, C, sum_dy, sum_dyx, b1, b2);
  }
  const float* dy = silu ? dx : grad;
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
  for (int64_t p = 0; p < HW; ++p) input_grad_row(x + p * C, dy + p * C, a, cx, c0, C, dx + p * C);
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
  for_each_sample(N, 2 * s.C, 4 * s.C, [&](int64_t n, double* d, float* f) {
    forward_sample(s, xp + n * s.HW * s.C, w, b, eps, silu, op + n * s.HW * s.C, mp + n * groups, rp + n * groups, d,
                   d + s.C, f, f + s.C, f + 2 * s.C, f + 3 * s.C);
  });
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
    for_each_sample(N, 0, 6 * C, [&](int64_t n, double*, float* f) {
      const int64_t off = n * s.HW * C;
      backward_sample(s, xp + off, gp + off, silu, w, b, mp + n * groups, rp + n * groups, dp + off,
                      sum_dy.data() + n * C, sum_dyx.data() + n * C, f, f + C, f + 2 * C, f + 3 * C, f + 4 * C,
                      f + 5 * C);
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
  SEQGAN_CHECK(x.dim() >= 2 && groups > 0 && x.size(1) % groups == 0, groups,
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
