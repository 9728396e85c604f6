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

// Uniform integer in [0, n) from one 64-bit draw (Lemire's multiply-shift). std::uniform_int_
// distribution is avoided on purpose: its algorithm differs between standard libraries, and the
// augmentations must be the same on every machine.
int64_t below(std::mt19937_64& rng, int64_t n) {
  return static_cast<int64_t>((static_cast<unsigned __int128>(rng()) * static_cast<uint64_t>(n)) >> 64);
}

Image convert_channels(const Image& in, int channels) {
  if (channels == 0 || channels == in.channels) return in;
  Image out(in.width, in.height, channels);
  const size_t n = static_cast<size_t>(in.width) * in.height;
  for (size_t i = 0; i < n; ++i) {
    const uint8_t* s = in.pixels.data() + i * in.channels;
    uint8_t* d = out.pixels.data() + i * channels;
    if (channels == 3) {
      d[0] = d[1] = d[2] = s[0];
    } else {  // ITU-R 601 luma, as in decode_image
      d[0] = static_cast<uint8_t>((19595 * s[0] + 38470 * s[1] + 7471 * s[2] + 32768) >> 16);
    }
  }
  return out;
}

Image pad_image(const Image& in, int pad) {
  if (pad == 0) return in;
  Image out(in.width + 2 * pad, in.height + 2 * pad, in.channels, 0);
  const size_t row = static_cast<size_t>(in.width) * in.channels;
  for (int y = 0; y < in.height; ++y) {
    std::memcpy(&out.at(y + pad, pad, 0), &in.pixels[static_cast<size_t>(y) * row], row);
  }
  return out;
}

Image crop_image(const Image& in, int x0, int y0, int w, int h) {
  if (x0 == 0 && y0 == 0 && w == in.width && h == in.height) return in;
  Image out(w, h, in.channels);
  const size_t row = static_cast<size_t>(w) * in.channels;
  const size_t in_row = static_cast<size_t>(in.width) * in.channels;
  const uint8_t* src = in.pixels.data() + static_cast<size_t>(y0) * in_row + static_cast<size_t>(x0) * in.channels;
  for (int y = 0; y < h; ++y) std::memcpy(&out.at(y, 0, 0), src + y * in_row, row);
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
  Image img = pad_image(convert_channels(image, options_.channels), options_.pad);
  const int res = options_.resolution;
  if (res > 0 && options_.preprocess == Preprocess::kAdm) {
    img = adm_center_crop(img, res);
  } else if (res > 0) {
    // Short side to res, long side scaled and truncated like torchvision's Resize(int).
    const int short_side = std::min(img.width, img.height);
    const int64_t w = img.width == short_side ? res : static_cast<int64_t>(res) * img.width / short_side;
    const int64_t h = img.height == short_side ? res : static_cast<int64_t>(res) * img.height / short_side;
    const int rw = static_cast<int>(w), rh = static_cast<int>(h);
    // The crop's offsets come from the resized size, so the crop is known before resizing and
    // only its pixels are computed (resize_crop); the random draws stay those of resize-then-crop.
    int x0 = 0, y0 = 0, cw = rw, ch = rh;
    if (options_.random_crop) {
      x0 = static_cast<int>(below(rng, rw - res + 1));
      y0 = static_cast<int>(below(rng, rh - res + 1));
      cw = ch = res;
    } else if (options_.center_crop) {
      // Half-way rounds to even, like Python's round() in torchvision's CenterCrop.
      x0 = static_cast<int>(std::nearbyint((rw - res) / 2.0));
      y0 = static_cast<int>(std::nearbyint((rh - res) / 2.0));
      cw = ch = res;
    }
    if (rw == img.width && rh == img.height) img = crop_image(img, x0, y0, cw, ch);
    else img = resize_crop(img, rw, rh, x0, y0, cw, ch, options_.filter);
  }
  if (options_.hflip && (rng() >> 63) != 0) flip_horizontally(img);
  return img;
}

}  // namespace seqgan
