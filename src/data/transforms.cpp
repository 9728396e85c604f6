// Per-sample transforms on 8-bit images: channel conversion, padding, resize (Pillow's filters) or
// ADM's center_crop_arr, crop, flip.
#include <cmath>
#include <cstring>

#include "seqgan/data.h"
#include "seqgan/error.h"

namespace seqgan {
namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

Image convert_channels(const Image& in, int channels) {
  Image out(in.width, in.height, channels);
  const size_t n = static_cast<size_t>(in.width) * in.height;
  for (size_t i = 0; i < n; ++i) {
    const uint8_t* s = in.pixels.data() + i * in.channels;
    uint8_t* d = out.pixels.data() + i * channels;
    if (channels == 3) {
      d[0] = d[1] = d[2] = s[0];
    } else {
      d[0] = rgb_to_luma(s[0], s[1], s[2]);
    }
  }
  return out;
}

Image pad_image(const Image& in, int pad) {
  Image out(in.width + 2 * pad, in.height + 2 * pad, in.channels, 0);
  const size_t row = static_cast<size_t>(in.width) * in.channels;
  for (int y = 0; y < in.height; ++y) {
    std::memcpy(&out.at(y + pad, pad, 0), &in.pixels[static_cast<size_t>(y) * row], row);
  }
  return out;
}

void flip_horizontally(Image& img) {
  const int c = img.channels;
  for (int y = 0; y < img.height; ++y) {
    for (int x = 0, xr = img.width - 1; x < xr; ++x, --xr) {
      for (int k = 0; k < c; ++k) std::swap(img.at(y, x, k), img.at(y, xr, k));
    }
  }
}

}  // namespace

int64_t uniform_below(std::mt19937_64& rng, int64_t n) {
  return static_cast<int64_t>((static_cast<unsigned __int128>(rng()) * static_cast<uint64_t>(n)) >> 64);
}

void shuffle_indices(int64_t* v, int64_t n, std::mt19937_64& rng) {
  for (int64_t i = n - 1; i > 0; --i) std::swap(v[i], v[uniform_below(rng, i + 1)]);
}

Transform::Transform(TransformOptions options) : options_(options) {
  SEQGAN_CHECK_HINT(options_.resolution >= 0 && options_.pad >= 0, "use resolution >= 0 (0 keeps the size) and pad >= 0",
                    "expected resolution >= 0 and pad >= 0, got resolution ", options_.resolution, ", pad ",
                    options_.pad);
  SEQGAN_CHECK_HINT(options_.channels == 0 || options_.channels == 1 || options_.channels == 3,
                    "use 1 (grey), 3 (RGB) or 0 (keep)", "expected 0, 1 or 3 channels, got ", options_.channels);
  SEQGAN_CHECK_HINT(!options_.random_crop || options_.resolution > 0, "set the resolution to crop to",
                    "random_crop needs a resolution > 0, got ", options_.resolution);
}

uint64_t Transform::sample_seed(uint64_t seed, int64_t epoch, int64_t index) {
  // Chained mixing keeps (seed, epoch, index) triples apart: no two small triples share a seed
  // the way seed + epoch + index would.
  return splitmix64(splitmix64(splitmix64(seed ^ 0x5EC6A11ull) ^ static_cast<uint64_t>(epoch)) ^
                    static_cast<uint64_t>(index));
}

Image Transform::apply(const Image& image, uint64_t seed, int64_t epoch, int64_t index) const {
  std::mt19937_64 rng(sample_seed(seed, epoch, index));
  return apply(image, rng);
}

Image Transform::apply(const Image& image, std::mt19937_64& rng) const {
  SEQGAN_CHECK(!image.empty() && (image.channels == 1 || image.channels == 3),
               "expected a non-empty grey or RGB image, got ", image.width, "x", image.height, "x",
               image.channels);
  // `in` is the image so far: the caller's until a step makes a new one (no copies of a decoded
  // photo that the resize reads anyway).
  const Image* in = &image;
  Image converted, padded, img;
  if (options_.channels != 0 && options_.channels != image.channels) {
    converted = convert_channels(image, options_.channels);
    in = &converted;
  }
  if (options_.pad > 0) {
    padded = pad_image(*in, options_.pad);
    in = &padded;
  }
  const int res = options_.resolution;
  if (res <= 0) {
    img = *in;
  } else if (options_.preprocess == Preprocess::kAdm) {
    img = adm_center_crop(*in, res);
  } else {
    // Short side to res, long side scaled and truncated like torchvision's Resize(int).
    const int short_side = std::min(in->width, in->height);
    const int64_t w = in->width == short_side ? res : static_cast<int64_t>(res) * in->width / short_side;
    const int64_t h = in->height == short_side ? res : static_cast<int64_t>(res) * in->height / short_side;
    const int rw = static_cast<int>(w), rh = static_cast<int>(h);
    // The crop's offsets come from the resized size, so the crop is known before resizing and
    // only its pixels are computed (resize_crop); the random draws stay those of resize-then-crop.
    int x0 = 0, y0 = 0, cw = rw, ch = rh;
    if (options_.random_crop) {
      x0 = static_cast<int>(uniform_below(rng, rw - res + 1));
      y0 = static_cast<int>(uniform_below(rng, rh - res + 1));
      cw = ch = res;
    } else if (options_.center_crop) {
      // Half-way rounds to even, like Python's round() in torchvision's CenterCrop.
      x0 = static_cast<int>(std::nearbyint((rw - res) / 2.0));
      y0 = static_cast<int>(std::nearbyint((rh - res) / 2.0));
      cw = ch = res;
    }
    img = resize_crop(*in, rw, rh, x0, y0, cw, ch, options_.filter);  // a kept size is only cropped
  }
  if (options_.hflip && (rng() >> 63) != 0) flip_horizontally(img);
  return img;
}

}  // namespace seqgan
