#include "transformer/cpu_decode.h"

#include <ATen/Parallel.h>
#include <dlfcn.h>

#include <algorithm>
#include <cmath>

#include "seqgan/error.h"
#include "transformer/transformer.h"

namespace seqgan {

namespace {

// CBLAS, looked up at run time (Debian's libtorch links OpenBLAS, which exports it; other builds
// may hide their BLAS, and then the loops below do the work). OpenBLAS takes 32-bit sizes.
constexpr int kRowMajor = 101, kNoTrans = 111, kTrans = 112;
using SgemvFn = void (*)(int, int, int, int, float, const float*, int, const float*, int, float, float*, int);
using SgemmFn = void (*)(int, int, int, int, int, int, float, const float*, int, const float*, int, float, float*, int);

SgemvFn blas_sgemv() {
  static const auto f = reinterpret_cast<SgemvFn>(dlsym(RTLD_DEFAULT, "cblas_sgemv"));
  return f;
}
SgemmFn blas_sgemm() {
  static const auto f = reinterpret_cast<SgemmFn>(dlsym(RTLD_DEFAULT, "cblas_sgemm"));
  return f;
}

// Y[b, r] = sum_c X[b, c] W[r, c] + bias[r], b < B, r < N; W is [N, C] row-major (nn::Linear).
// Rows are split into blocks over libtorch's threads; small products stay on one thread.
void linear(const float* X, int64_t B, int64_t C, const float* W, const float* bias, int64_t N, float* Y) {
  const int64_t grain = std::max<int64_t>(16, (int64_t{1} << 17) / std::max<int64_t>(1, C * B));
  at::parallel_for(0, N, grain, [&](int64_t r0, int64_t r1) {
    const int rows = static_cast<int>(r1 - r0);
    if (B == 1 && blas_sgemv()) {
      blas_sgemv()(kRowMajor, kNoTrans, rows, static_cast<int>(C), 1.0f, W + r0 * C, static_cast<int>(C), X, 1, 0.0f,
                   Y + r0, 1);
    } else if (blas_sgemm()) {
      blas_sgemm()(kRowMajor, kNoTrans, kTrans, static_cast<int>(B), rows, static_cast<int>(C), 1.0f, X,
                   static_cast<int>(C), W + r0 * C, static_cast<int>(C), 0.0f, Y + r0, static_cast<int>(N));
    } else {
      for (int64_t b = 0; b < B; ++b)
        for (int64_t r = r0; r < r1; ++r) {
          const float* w = W + r * C;
          const float* x = X + b * C;
          float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
          int64_t c = 0;
          for (; c + 8 <= C; c += 8)
            for (int j = 0; j < 8; ++j) acc[j] += w[c + j] * x[c + j];
          float s = 0;
          for (; c < C; ++c) s += w[c] * x[c];
          for (float a : acc) s += a;
          Y[b * N + r] = s;
        }
    }
    if (bias)
      for (int64_t b = 0; b < B; ++b)
        for (int64_t r = r0; r < r1; ++r) Y[b * N + r] += bias[r];
  });
}

void layer_norm(const float* x, int64_t B, int64_t C, const float* g, const float* beta, double eps, float* y) {
  for (int64_t b = 0; b < B; ++b) {
    const float* xb = x + b * C;
    double mean = 0, var = 0;
    for (int64_t c = 0; c < C; ++c) mean += xb[c];
    mean /= static_cast<double>(C);
    for (int64_t c = 0; c < C; ++c) var += (xb[c] - mean) * (xb[c] - mean);
    const double inv = 1.0 / std::sqrt(var / static_cast<double>(C) + eps);
    for (int64_t c = 0; c < C; ++c)
      y[b * C + c] = static_cast<float>((xb[c] - mean) * inv) * g[c] + beta[c];
  }
}

const float* data(const at::Tensor& t) { return t.data_ptr<float>(); }

struct LayerWeights {
  const float *ln1_w, *ln1_b, *qkv_w, *qkv_b, *proj_w, *proj_b, *ln2_w, *ln2_b, *fc1_w, *fc1_b, *fc2_w, *fc2_b;
  double ln1_eps, ln2_eps;
};

}  // namespace

struct CpuArDecoder::Impl {
  int64_t B, C, H, D, L, K, mlp;
  const float *tok_emb, *pos_emb, *lnf_w, *lnf_b, *head_w, *head_b;
  double lnf_eps;
  std::vector<LayerWeights> layers;
  std::vector<std::vector<float>> keys, values;  // per layer [B, L, C]
  std::vector<float> x, h, qkv, att, tmp, ff;
  std::vector<at::Tensor> keep;  // contiguous copies, when a weight was not contiguous
};

bool CpuArDecoder::supports(const TransformerImpl& model) {
  if (!model.causal()) return false;
  for (const auto& p : model.parameters())
    if (!p.device().is_cpu() || p.scalar_type() != at::kFloat) return false;
  return true;
}

CpuArDecoder::CpuArDecoder(const TransformerImpl& model, int64_t batch) : impl_(std::make_unique<Impl>()) {
  SEQGAN_CHECK(supports(model), "CpuArDecoder needs a causal transformer with float32 weights on the CPU");
  SEQGAN_CHECK(batch >= 1, "batch must be >= 1, got ", batch);
  auto& m = *impl_;
  m.B = batch;
  m.C = model.config().width;
  m.H = model.config().heads;
  m.D = m.C / m.H;
  m.L = model.space().length;
  m.K = model.space().codebook_size;
  m.mlp = model.config().mlp;
  auto ptr = [&](const at::Tensor& t) {
    if (t.is_contiguous()) return data(t);
    m.keep.push_back(t.contiguous());
    return data(m.keep.back());
  };
  m.tok_emb = ptr(model.tok_emb->weight);
  m.pos_emb = ptr(model.pos_emb);
  m.lnf_w = ptr(model.ln_f->weight);
  m.lnf_b = ptr(model.ln_f->bias);
  m.lnf_eps = model.ln_f->options.eps();
  m.head_w = ptr(model.head->weight);
  m.head_b = ptr(model.head->bias);
  for (const auto& item : *model.blocks) {
    const auto* b = item->as<TransformerBlockImpl>();
    m.layers.push_back({ptr(b->ln1->weight), ptr(b->ln1->bias), ptr(b->attn->qkv->weight), ptr(b->attn->qkv->bias),
                        ptr(b->attn->proj->weight), ptr(b->attn->proj->bias), ptr(b->ln2->weight), ptr(b->ln2->bias),
                        ptr(b->fc1->weight), ptr(b->fc1->bias), ptr(b->fc2->weight), ptr(b->fc2->bias),
                        b->ln1->options.eps(), b->ln2->options.eps()});
    m.keys.emplace_back(static_cast<size_t>(m.B * m.L * m.C));
    m.values.emplace_back(static_cast<size_t>(m.B * m.L * m.C));
  }
  m.x.resize(static_cast<size_t>(m.B * m.C));
  m.h.resize(m.x.size());
  m.att.resize(m.x.size());
  m.tmp.resize(m.x.size());
  m.qkv.resize(static_cast<size_t>(m.B * 3 * m.C));
  m.ff.resize(static_cast<size_t>(m.B * m.mlp));
}

CpuArDecoder::~CpuArDecoder() = default;

at::Tensor CpuArDecoder::step(const at::Tensor& ids_in) {
  auto& m = *impl_;
  SEQGAN_CHECK(pos_ < m.L, "the decoder holds ", m.L, " positions; the AR model never needs the last token as input");
  const auto ids = ids_in.to(at::kLong).contiguous();
  SEQGAN_CHECK(ids.numel() == m.B, "expected ", m.B, " token ids, got ", ids.numel());
  const int64_t* id = ids.data_ptr<int64_t>();
  const int64_t B = m.B, C = m.C, H = m.H, D = m.D, L = m.L, pos = pos_;

  for (int64_t b = 0; b < B; ++b) {
    const float* e = m.tok_emb + id[b] * C;
    const float* p = m.pos_emb + pos * C;
    for (int64_t c = 0; c < C; ++c) m.x[b * C + c] = e[c] + p[c];
  }
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  for (size_t l = 0; l < m.layers.size(); ++l) {
    const auto& w = m.layers[l];
    float* keys = m.keys[l].data();
    float* values = m.values[l].data();
    layer_norm(m.x.data(), B, C, w.ln1_w, w.ln1_b, w.ln1_eps, m.h.data());
    linear(m.h.data(), B, C, w.qkv_w, w.qkv_b, 3 * C, m.qkv.data());
    // qkv is [3, heads, d] per sequence: queries, then keys, then values.
    for (int64_t b = 0; b < B; ++b) {
      std::copy_n(&m.qkv[b * 3 * C + C], C, keys + (b * L + pos) * C);
      std::copy_n(&m.qkv[b * 3 * C + 2 * C], C, values + (b * L + pos) * C);
    }
    const int64_t n = pos + 1;
    at::parallel_for(0, B * H, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, n * D)), [&](int64_t i0, int64_t i1) {
      std::vector<float> s(static_cast<size_t>(n));
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t b = i / H, hd = i % H;
        const float* q = &m.qkv[b * 3 * C + hd * D];
        float mx = -INFINITY;
        for (int64_t t = 0; t < n; ++t) {
          const float* k = keys + (b * L + t) * C + hd * D;
          float dot = 0;
          for (int64_t j = 0; j < D; ++j) dot += q[j] * k[j];
          s[t] = dot * scale;
          mx = std::max(mx, s[t]);
        }
        float sum = 0;
        for (int64_t t = 0; t < n; ++t) sum += (s[t] = std::exp(s[t] - mx));
        float* out = &m.att[b * C + hd * D];
        std::fill_n(out, D, 0.0f);
        for (int64_t t = 0; t < n; ++t) {
          const float pt = s[t] / sum;
          const float* v = values + (b * L + t) * C + hd * D;
          for (int64_t j = 0; j < D; ++j) out[j] += pt * v[j];
        }
      }
    });
    linear(m.att.data(), B, C, w.proj_w, w.proj_b, C, m.tmp.data());
    for (size_t i = 0; i < m.x.size(); ++i) m.x[i] += m.tmp[i];
    layer_norm(m.x.data(), B, C, w.ln2_w, w.ln2_b, w.ln2_eps, m.h.data());
    linear(m.h.data(), B, C, w.fc1_w, w.fc1_b, m.mlp, m.ff.data());
    for (auto& v : m.ff) v = 0.5f * v * (1.0f + std::erf(v * static_cast<float>(M_SQRT1_2)));  // exact GELU
    linear(m.ff.data(), B, m.mlp, w.fc2_w, w.fc2_b, C, m.tmp.data());
    for (size_t i = 0; i < m.x.size(); ++i) m.x[i] += m.tmp[i];
  }
  layer_norm(m.x.data(), B, C, m.lnf_w, m.lnf_b, m.lnf_eps, m.h.data());
  auto logits = at::empty({B, m.K}, at::kFloat);
  linear(m.h.data(), B, C, m.head_w, m.head_b, m.K, logits.data_ptr<float>());
  ++pos_;
  return logits;
}

}  // namespace seqgan
