#include "nn/blocks.h"

#include "nn/attention.h"
#include "nn/group_norm.h"
#include "seqgan/error.h"
#include "seqgan/runtime.h"

namespace seqgan::nn {

namespace F = torch::nn::functional;

torch::nn::GroupNorm make_norm(int64_t channels, const NormSpec& spec) {
  SEQGAN_CHECK_HINT(channels % spec.groups == 0, "choose widths divisible by tokenizer.norm_groups",
                    "GroupNorm over ", channels, " channels needs a group count dividing it, got ", spec.groups);
  return torch::nn::GroupNorm(torch::nn::GroupNormOptions(spec.groups, channels).eps(spec.eps).affine(true));
}

void use_channels_last(torch::nn::Module& module) {
  torch::NoGradGuard no_grad;
  for (auto& p : module.parameters())
    if (p.dim() == 4) p.set_data(p.contiguous(at::MemoryFormat::ChannelsLast));
  for (auto& b : module.buffers())
    if (b.dim() == 4) b.set_data(b.contiguous(at::MemoryFormat::ChannelsLast));
}

at::Tensor to_channels_last(const at::Tensor& x) {
  if (x.dim() != 4 || x.suggest_memory_format() == at::MemoryFormat::ChannelsLast) return x;
  return at::empty(x.sizes(), x.options().memory_format(at::MemoryFormat::ChannelsLast)).copy_(x);
}

namespace {
torch::nn::Conv2d conv(int64_t in, int64_t out, int64_t k, bool bias) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, k).padding(k / 2).bias(bias));
}
}  // namespace

ResBlockImpl::ResBlockImpl(int64_t in_channels, int64_t out_channels, const NormSpec& norm, bool skip_on_output)
    : skip_on_output_(skip_on_output) {
  norm1 = register_module("norm1", make_norm(in_channels, norm));
  conv1 = register_module("conv1", conv(in_channels, out_channels, 3, false));
  norm2 = register_module("norm2", make_norm(out_channels, norm));
  conv2 = register_module("conv2", conv(out_channels, out_channels, 3, false));
  if (in_channels != out_channels)
    skip = register_module("skip", conv(skip_on_output ? out_channels : in_channels, out_channels, 1, false));
}

at::Tensor ResBlockImpl::forward(const at::Tensor& x) {
  auto h = conv1(group_norm_silu(x, norm1));
  h = conv2(group_norm_silu(h, norm2));
  if (!skip) return x + h;
  return skip_on_output_ ? h + skip(h) : skip(x) + h;
}

namespace {

// Along `dim` (size 3), the taps seen by output phase `phase` of a x2 nearest upsampling: phase 0
// (even rows) reads input rows i - 1 (tap 0) and i (taps 1 and 2), phase 1 reads rows i (taps 0
// and 1) and i + 1 (tap 2).
at::Tensor fold_taps(const at::Tensor& w, int64_t dim, int64_t phase) {
  const auto t0 = w.select(dim, 0), t1 = w.select(dim, 1), t2 = w.select(dim, 2);
  return phase == 0 ? at::stack({t0, t1 + t2}, dim) : at::stack({t0 + t1, t2}, dim);
}

// [B, 4 O, H + 1, W + 1] (phase (a, b) in channel block 2a + b, its value for output (2i + a, 2j + b)
// at (i + a, j + b)) <-> [B, O, 2H, 2W]. Plain strided copies both ways; keeps the memory format.
// fn(phase of y [B, O, H, W], the same phase of out [B, O, H, W]) for the four phases, as views.
template <typename Fn>
void for_each_phase(const at::Tensor& y, const at::Tensor& out, const Fn& fn) {
  const int64_t B = y.size(0), O = y.size(1) / 4, H = y.size(2) - 1, W = y.size(3) - 1;
  const auto yv = y.view({B, 2, 2, O, H + 1, W + 1});
  const auto ov = out.view({B, O, H, 2, W, 2});
  for (int64_t a = 0; a < 2; ++a)
    for (int64_t b = 0; b < 2; ++b)
      fn(yv.select(1, a).select(1, b).narrow(2, a, H).narrow(3, b, W), ov.select(5, b).select(3, a));
}

class InterleavePhases : public torch::autograd::Function<InterleavePhases> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& y) {
    const int64_t B = y.size(0), O = y.size(1) / 4, H = y.size(2) - 1, W = y.size(3) - 1;
    ctx->saved_data["shape"] = y.sizes().vec();
    ctx->saved_data["channels_last"] = y.suggest_memory_format() == at::MemoryFormat::ChannelsLast;
    auto out = at::empty({B, O, 2 * H, 2 * W}, y.options().memory_format(y.suggest_memory_format()));
    for_each_phase(y, out, [](const at::Tensor& phase, const at::Tensor& out_phase) { out_phase.copy_(phase); });
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto shape = ctx->saved_data["shape"].toIntVector();
    const auto& g = grads[0];
    // Each phase leaves one row and one column of its (H + 1) x (W + 1) block unread: zero them.
    // In y's layout, which the convolution's backward reads.
    const auto format = ctx->saved_data["channels_last"].toBool() ? at::MemoryFormat::ChannelsLast
                                                                   : at::MemoryFormat::Contiguous;
    auto gy = at::empty(shape, g.options().memory_format(format)).zero_();  // at::zeros drops the format
    for_each_phase(gy, g, [](const at::Tensor& phase, const at::Tensor& out_phase) { phase.copy_(out_phase); });
    return {gy};
  }
};

bool fold_pays_off(const at::Tensor& x, int64_t out_channels) {
  // Measured on a 2-core CPU (oneDNN), forward + backward: 1.3-1.6x faster from 16x16 to 96x96
  // inputs, slower at 8x8, where the (H + 1) x (W + 1) border and the small image cost more than the
  // 5/9 of the products saved. Above 32 MiB the folded output leaves the range that
  // tune_memory_allocator keeps in the heap and is page-faulted in on every call (the forward at
  // 128x128 took 1.7x as long). GPUs keep the plain path: not measured there.
  const int64_t H = x.size(2), W = x.size(3);
  const int64_t folded_bytes = x.size(0) * 4 * out_channels * (H + 1) * (W + 1) * static_cast<int64_t>(x.element_size());
  return x.device().is_cpu() && std::min(H, W) >= 16 && folded_bytes <= kHeapBlockBytes;
}

}  // namespace

at::Tensor upsample2x_conv3x3(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, Upsampling how) {
  SEQGAN_CHECK(x.dim() == 4 && weight.dim() == 4 && weight.size(2) == 3 && weight.size(3) == 3 &&
                   weight.size(1) == x.size(1),
               "upsample2x_conv3x3: x [B, C, H, W] and weight [O, C, 3, 3], got ", x.sizes(), " and ", weight.sizes());
  if (how == Upsampling::Plain || (how == Upsampling::Auto && !fold_pays_off(x, weight.size(0)))) {
    const auto up = torch::nn::functional::interpolate(
        x, torch::nn::functional::InterpolateFuncOptions().scale_factor(std::vector<double>{2.0, 2.0}).mode(torch::kNearest));
    return at::conv2d(up, weight, bias, /*stride=*/1, /*padding=*/1);
  }
  std::vector<at::Tensor> phases;
  for (int64_t a = 0; a < 2; ++a) {
    const auto rows = fold_taps(weight, 2, a);
    for (int64_t b = 0; b < 2; ++b) phases.push_back(fold_taps(rows, 3, b));
  }
  auto w = at::cat(phases, 0);  // [4 O, C, 2, 2]
  if (x.suggest_memory_format() == at::MemoryFormat::ChannelsLast) w = w.contiguous(at::MemoryFormat::ChannelsLast);
  const auto y = at::conv2d(x, w, bias.defined() ? bias.repeat({4}) : bias, /*stride=*/1, /*padding=*/1);
  return InterleavePhases::apply(y);
}

UpsampleImpl::UpsampleImpl(int64_t channels) { conv = register_module("conv", nn::conv(channels, channels, 3, true)); }

at::Tensor UpsampleImpl::forward(const at::Tensor& x) {
  // [B, C, H, W] -> [B, C, 2H, 2W]
  return upsample2x_conv3x3(x, conv->weight, conv->bias);
}

WindowAttentionImpl::WindowAttentionImpl(int64_t channels, int64_t heads, int64_t window, Mode mode,
                                         const NormSpec& norm_spec)
    : channels_(channels), heads_(heads), window_(window), mode_(mode) {
  SEQGAN_CHECK(channels % heads == 0, "width ", channels, " is not divisible by ", heads, " heads");
  SEQGAN_CHECK(window >= 1, "attention window must be >= 1, got ", window);
  norm = register_module("norm", make_norm(channels, norm_spec));
  q = register_module("q", torch::nn::Linear(channels, channels));
  k = register_module("k", torch::nn::Linear(channels, channels));
  v = register_module("v", torch::nn::Linear(channels, channels));
  proj_out = register_module("proj_out", torch::nn::Linear(channels, channels));
  torch::NoGradGuard no_grad;
  proj_out->weight.zero_();
  proj_out->bias.zero_();
}

at::Tensor WindowAttentionImpl::forward(const at::Tensor& x) {
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), b = window_;
  const int64_t Hp = (H + b - 1) / b * b, Wp = (W + b - 1) / b * b, nh = Hp / b, nw = Wp / b;
  auto h = group_norm_silu(x, norm, false);
  const bool padded = Hp != H || Wp != W;
  if (padded) h = F::pad(h, F::PadFuncOptions({0, Wp - W, 0, Hp - H}));
  // Grouping as a permutation of [B, C, nh, b, nw, b]; `inverse` undoes it.
  const bool regional = mode_ == Mode::Regional;
  const std::vector<int64_t> perm = regional ? std::vector<int64_t>{0, 2, 4, 3, 5, 1} : std::vector<int64_t>{0, 3, 5, 2, 4, 1};
  const std::vector<int64_t> inverse = regional ? std::vector<int64_t>{0, 5, 1, 3, 2, 4} : std::vector<int64_t>{0, 5, 3, 1, 4, 2};
  const int64_t groups = regional ? nh * nw : b * b, len = regional ? b * b : nh * nw;
  auto group = [&](const at::Tensor& t, int64_t batch, int64_t ch) {
    return t.view({batch, ch, nh, b, nw, b}).permute(perm).reshape({batch * groups, len, ch});
  };
  auto tokens = group(h, B, C);  // [B*G, L, C]
  const int64_t d = C / heads_;
  auto split = [&](const at::Tensor& t) { return t.view({B * groups, len, heads_, d}).transpose(1, 2); };
  at::Tensor mask;
  if (padded) {
    // Additive mask: padded keys get a large negative score (finite, so a group that is entirely
    // padding yields no NaN; its rows are cropped away).
    auto valid = at::zeros({1, 1, Hp, Wp}, x.options());
    valid.slice(2, 0, H).slice(3, 0, W).fill_(1);
    mask = ((group(valid, 1, 1).view({groups, len}) - 1) * 1e9).repeat({B, 1}).view({B * groups, 1, 1, len});
  }
  auto out = attention(split(q(tokens)), split(k(tokens)), split(v(tokens)), mask);  // [B*G, heads, L, d]
  out = proj_out(out.transpose(1, 2).reshape({B * groups, len, C}));
  // [B*G, L, C] -> [B, C, Hp, Wp]
  const std::vector<int64_t> grouped_shape =
      regional ? std::vector<int64_t>{B, nh, nw, b, b, C} : std::vector<int64_t>{B, b, b, nh, nw, C};
  out = out.view(grouped_shape).permute(inverse).reshape({B, C, Hp, Wp});
  if (padded) out = out.slice(2, 0, H).slice(3, 0, W);
  return x + out;
}

}  // namespace seqgan::nn
