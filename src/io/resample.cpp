// Pillow's resampling (Image.resize with BOX, BILINEAR, BICUBIC, LANCZOS) reproduced to the bit:
// the same filters, supports, per-pixel normalisation, 22-bit fixed-point coefficients, pass
// order (horizontal, then vertical) and rounding, so that seqgan's training and reference images
// equal torchvision's. And guided-diffusion's center_crop_arr built on it.
#include <cmath>
#include <cstring>
#include <vector>

#include "seqgan/error.h"
#include "seqgan/image.h"

namespace seqgan {
namespace {

constexpr int kPrecisionBits = 32 - 8 - 2;  // Pillow's PRECISION_BITS for 8-bit samples

struct Filter {
  double support;
  double (*weight)(double);
};

double box_weight(double x) { return x > -0.5 && x <= 0.5 ? 1.0 : 0.0; }

double bilinear_weight(double x) {
  x = std::fabs(x);
  return x < 1.0 ? 1.0 - x : 0.0;
}

double bicubic_weight(double x) {  // Keys' cubic with a = -0.5
  constexpr double a = -0.5;
  x = std::fabs(x);
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

double sinc(double x) {
  if (x == 0.0) return 1.0;
  x *= M_PI;
  return std::sin(x) / x;
}

double lanczos_weight(double x) { return -3.0 <= x && x < 3.0 ? sinc(x) * sinc(x / 3) : 0.0; }

Filter filter_of(ResizeFilter f) {
  switch (f) {
    case ResizeFilter::kBox: return {0.5, box_weight};
    case ResizeFilter::kBilinear: return {1.0, bilinear_weight};
    case ResizeFilter::kBicubic: return {2.0, bicubic_weight};
    default: return {3.0, lanczos_weight};
  }
}

// For every output position along one axis: the first input position, the count of inputs and
// their fixed-point weights (ksize slots per output, unused ones zero).
struct Taps {
  int ksize = 0;
  std::vector<int> first, count;
  std::vector<int32_t> weights;
};

// Pillow's precompute_coeffs: the window of every output position is rounded by adding 0.5 and
// truncating; the filter is evaluated at distances multiplied by 1 / filter_scale (a product, as
// in Pillow: a division gives other doubles now and then); the weights are normalised to sum 1
// and then rounded half away from zero to fixed point.
Taps compute_taps(int in_size, int out_size, const Filter& filter) {
  const double scale = static_cast<double>(in_size) / out_size;
  const double filter_scale = std::max(scale, 1.0);  // widen the filter when shrinking (antialiasing)
  const double support = filter.support * filter_scale;
  const double inverse = 1.0 / filter_scale;
  Taps t;
  t.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  t.first.resize(out_size);
  t.count.resize(out_size);
  t.weights.assign(static_cast<size_t>(out_size) * t.ksize, 0);
  std::vector<double> w(t.ksize);
  for (int o = 0; o < out_size; ++o) {
    const double center = (o + 0.5) * scale;
    const int lo = std::max(static_cast<int>(center - support + 0.5), 0);
    const int hi = std::min(static_cast<int>(center + support + 0.5), in_size);
    const int n = hi - lo;
    double sum = 0.0;
    for (int k = 0; k < n; ++k) {
      w[k] = filter.weight((k + lo - center + 0.5) * inverse);
      sum += w[k];
    }
    int32_t* fixed = &t.weights[static_cast<size_t>(o) * t.ksize];
    for (int k = 0; k < n; ++k) {
      if (sum != 0.0) w[k] /= sum;
      const double v = w[k] * (1 << kPrecisionBits);
      fixed[k] = static_cast<int32_t>(v < 0 ? -0.5 + v : 0.5 + v);
    }
    t.first[o] = lo;
    t.count[o] = n;
  }
  return t;
}

// Accumulators are 32-bit as in Pillow: 255 * sum |w| * 2^22 stays below 2^31 for every filter
// (sum |w| <= 1.25 for Lanczos, the largest).
// The taps of output positions [begin, begin + n).
Taps slice(const Taps& t, int begin, int n) {
  Taps out;
  out.ksize = t.ksize;
  out.first.assign(t.first.begin() + begin, t.first.begin() + begin + n);
  out.count.assign(t.count.begin() + begin, t.count.begin() + begin + n);
  out.weights.assign(t.weights.begin() + static_cast<ptrdiff_t>(begin) * t.ksize,
                     t.weights.begin() + static_cast<ptrdiff_t>(begin + n) * t.ksize);
  return out;
}

inline uint8_t clip8(int32_t acc) {
  const int32_t v = acc >> kPrecisionBits;  // floor, as Pillow's arithmetic shift
  return static_cast<uint8_t>(v < 0 ? 0 : v > 255 ? 255 : v);
}

// Resamples along x: rows [row0, row0 + out.height) of `in` into `out`. C channels at compile
// time, so that the channel loop unrolls and the taps stream once per pixel.
template <int C>
void resample_rows(const Image& in, int row0, Image& out, const Taps& t) {
  for (int y = 0; y < out.height; ++y) {
    const uint8_t* src = &in.pixels[static_cast<size_t>(y + row0) * in.width * C];
    uint8_t* dst = &out.pixels[static_cast<size_t>(y) * out.width * C];
    for (int x = 0; x < out.width; ++x) {
      const int32_t* w = &t.weights[static_cast<size_t>(x) * t.ksize];
      const uint8_t* s = src + static_cast<size_t>(t.first[x]) * C;
      int32_t acc[C];
      for (int ch = 0; ch < C; ++ch) acc[ch] = int32_t{1} << (kPrecisionBits - 1);
      for (int k = 0; k < t.count[x]; ++k) {
        for (int ch = 0; ch < C; ++ch) acc[ch] += s[k * C + ch] * w[k];
      }
      for (int ch = 0; ch < C; ++ch) dst[x * C + ch] = clip8(acc[ch]);
    }
  }
}

// Resamples along y: input row t.first[y] - row0 is the first tap of output row y. The row loop
// vectorises; x86-64's baseline (SSE2) has no 32-bit vector multiply, so an AVX2 clone is built
// beside it and chosen at load time where the processor has AVX2.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("avx2", "default")))
#endif
void resample_columns(const Image& in, int row0, Image& out, const Taps& t) {
  const size_t stride = static_cast<size_t>(in.width) * in.channels;
  std::vector<int32_t> acc(stride);
  for (int y = 0; y < out.height; ++y) {
    std::fill(acc.begin(), acc.end(), int32_t{1} << (kPrecisionBits - 1));
    const int32_t* w = &t.weights[static_cast<size_t>(y) * t.ksize];
    int32_t* __restrict a = acc.data();
    for (int k = 0; k < t.count[y]; ++k) {
      const uint8_t* __restrict src = &in.pixels[static_cast<size_t>(t.first[y] - row0 + k) * stride];
      const int32_t wk = w[k];
      for (size_t i = 0; i < stride; ++i) a[i] += src[i] * wk;
    }
    uint8_t* dst = &out.pixels[static_cast<size_t>(y) * stride];
    for (size_t i = 0; i < stride; ++i) dst[i] = clip8(a[i]);
  }
}

}  // namespace

ResizeFilter parse_resize_filter(const std::string& name) {
  if (name == "box") return ResizeFilter::kBox;
  if (name == "bilinear") return ResizeFilter::kBilinear;
  if (name == "bicubic") return ResizeFilter::kBicubic;
  if (name == "lanczos") return ResizeFilter::kLanczos;
  throw Error(str("unknown resize filter '", name, "'"), "use box, bilinear, bicubic or lanczos");
}

const char* resize_filter_name(ResizeFilter filter) {
  switch (filter) {
    case ResizeFilter::kBox: return "box";
    case ResizeFilter::kBilinear: return "bilinear";
    case ResizeFilter::kBicubic: return "bicubic";
    default: return "lanczos";
  }
}

Image resize_image(const Image& image, int width, int height, ResizeFilter filter) {
  if (width == image.width && height == image.height && !image.empty()) return image;
  return resize_crop(image, width, height, 0, 0, width, height, filter);
}

Image resize_crop(const Image& image, int width, int height, int x0, int y0, int crop_width, int crop_height,
                  ResizeFilter filter) {
  SEQGAN_CHECK(width > 0 && height > 0, "expected a positive target size, got ", width, "x", height);
  SEQGAN_CHECK(!image.empty(), "cannot resize an empty image");
  SEQGAN_CHECK(image.channels == 1 || image.channels == 3, "expected a grey or RGB image, got ", image.channels,
               " channels");
  SEQGAN_CHECK(x0 >= 0 && y0 >= 0 && crop_width > 0 && crop_height > 0 && x0 + crop_width <= width &&
                   y0 + crop_height <= height,
               "the crop ", crop_width, "x", crop_height, " at (", x0, ", ", y0, ") is not inside the resized ", width,
               "x", height, " image");
  const Filter f = filter_of(filter);
  const int c = image.channels;
  // The input rows that the kept output rows read; only they go through the horizontal pass.
  const bool along_y = height != image.height;
  Taps vertical;
  int row0 = y0, row_end = y0 + crop_height;
  if (along_y) {
    vertical = slice(compute_taps(image.height, height, f), y0, crop_height);
    row0 = vertical.first.front();
    row_end = vertical.first.back() + vertical.count.back();
  }
  Image rows(crop_width, row_end - row0, c);
  if (width != image.width) {
    const Taps taps = slice(compute_taps(image.width, width, f), x0, crop_width);
    if (c == 3) resample_rows<3>(image, row0, rows, taps);
    else resample_rows<1>(image, row0, rows, taps);
  } else {
    const size_t n = static_cast<size_t>(crop_width) * c;
    for (int y = 0; y < rows.height; ++y) {
      std::memcpy(&rows.pixels[y * n], &image.pixels[(static_cast<size_t>(y + row0) * image.width + x0) * c], n);
    }
  }
  if (!along_y) return rows;
  Image out(crop_width, crop_height, c);
  resample_columns(rows, row0, out, vertical);
  return out;
}

Image adm_center_crop(const Image& image, int size) {
  SEQGAN_CHECK(size > 0, "expected a positive size, got ", size);
  SEQGAN_CHECK(!image.empty(), "cannot crop an empty image");
  const Image* img = &image;  // the caller's image until the first halving
  Image halved;
  while (std::min(img->width, img->height) >= 2 * size) {
    halved = resize_image(*img, img->width / 2, img->height / 2, ResizeFilter::kBox);
    img = &halved;
  }
  const double scale = static_cast<double>(size) / std::min(img->width, img->height);
  // Python's round(): half to even, which nearbyint gives in the default rounding mode.
  const int w = static_cast<int>(std::nearbyint(img->width * scale));
  const int h = static_cast<int>(std::nearbyint(img->height * scale));
  SEQGAN_CHECK(w >= size && h >= size, "the resized image is ", w, "x", h, ", smaller than ", size);
  return resize_crop(*img, w, h, (w - size) / 2, (h - size) / 2, size, size, ResizeFilter::kBicubic);
}

}  // namespace seqgan
