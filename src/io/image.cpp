// Reading files, PNG encoding (stb_image_write, compiled here and nowhere else) and tensor
// conversion. Decoding is in decode.cpp, resampling in resample.cpp.
#include "seqgan/image.h"

#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <unistd.h>

#include "io/files.h"
#include "seqgan/error.h"

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wall"
#pragma GCC diagnostic ignored "-Wextra"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-but-set-variable"
#define STBI_WRITE_NO_STDIO
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb_image_write.h>
#pragma GCC diagnostic pop

namespace seqgan {
namespace fs = std::filesystem;

Image::Image(int w, int h, int c, uint8_t fill)
    : width(w), height(h), channels(c), pixels(static_cast<size_t>(w) * h * c, fill) {
  SEQGAN_CHECK(w >= 0 && h >= 0 && c >= 1 && c <= 4, "expected width, height >= 0 and 1..4 channels, got ",
               w, "x", h, "x", c);
}

std::vector<uint8_t> read_file(const std::string& path) { return read_file_bytes(path); }

namespace {

void write_callback(void* context, void* data, int size) {
  auto* out = static_cast<std::vector<uint8_t>*>(context);
  const auto* bytes = static_cast<const uint8_t*>(data);
  out->insert(out->end(), bytes, bytes + size);
}

void check_channels(int channels, const char* what) {
  SEQGAN_CHECK_HINT(channels == 1 || channels == 3, "use 1 (grey) or 3 (RGB)", what,
                    ": expected 1 or 3 channels, got ", channels);
}

}  // namespace

std::vector<uint8_t> encode_png(const Image& image) {
  check_channels(image.channels, "encode_png");
  SEQGAN_CHECK(image.width > 0 && image.height > 0 &&
                   image.pixels.size() == static_cast<size_t>(image.width) * image.height * image.channels,
               "expected a non-empty image whose pixel buffer matches ", image.width, "x", image.height,
               "x", image.channels, ", found ", image.pixels.size(), " bytes");
  std::vector<uint8_t> out;
  const int ok = stbi_write_png_to_func(write_callback, &out, image.width, image.height, image.channels,
                                        image.pixels.data(), image.width * image.channels);
  SEQGAN_CHECK(ok != 0, "stb_image_write failed to encode a ", image.width, "x", image.height, " PNG");
  return out;
}

void write_png(const std::string& path, const Image& image) {
  const std::vector<uint8_t> bytes = encode_png(image);
  const fs::path target(path);
  if (target.has_parent_path()) {
    std::error_code ec;
    fs::create_directories(target.parent_path(), ec);
    SEQGAN_CHECK(!ec, "cannot create folder '", target.parent_path().string(), "': ", ec.message());
  }
  write_file_atomic(path, bytes.data(), bytes.size());
}

at::Tensor image_to_tensor(const Image& image) {
  SEQGAN_CHECK(image.channels >= 1 && !image.empty(), "expected a non-empty image, got ", image.width,
               "x", image.height, "x", image.channels);
  const int64_t c = image.channels, h = image.height, w = image.width;
  at::Tensor out = at::empty({c, h, w}, at::kFloat);  // [C, H, W]
  float* o = out.data_ptr<float>();
  const uint8_t* p = image.pixels.data();
  for (int64_t ch = 0; ch < c; ++ch) {
    for (int64_t i = 0; i < h * w; ++i) o[ch * h * w + i] = p[i * c + ch] / 127.5f - 1.0f;
  }
  return out;
}

at::Tensor pixel_levels(const at::Tensor& tensor) {
  return tensor.detach().to(at::kCPU, at::kFloat).nan_to_num(-1.0).clamp(-1.0, 1.0).add(1.0).mul(127.5).round();
}

Image tensor_to_image(const at::Tensor& tensor) {
  at::Tensor t = tensor;
  if (t.dim() == 4 && t.size(0) == 1) t = t.squeeze(0);
  SEQGAN_CHECK_HINT(t.dim() == 3 && (t.size(0) == 1 || t.size(0) == 3),
                    "pass one image [C, H, W] with C = 1 or 3; use tensor_to_images for a batch",
                    "expected a tensor [C, H, W] with C in {1, 3}, got ", t.sizes());
  // [C, H, W] -> [H, W, C], mapped to 0..255
  t = pixel_levels(t).permute({1, 2, 0}).contiguous().to(at::kByte);
  Image out(static_cast<int>(t.size(1)), static_cast<int>(t.size(0)), static_cast<int>(t.size(2)));
  std::memcpy(out.pixels.data(), t.data_ptr<uint8_t>(), out.pixels.size());
  return out;
}

std::vector<Image> tensor_to_images(const at::Tensor& tensor) {
  SEQGAN_CHECK(tensor.dim() == 4, "expected a tensor [N, C, H, W], got ", tensor.sizes());
  std::vector<Image> out;
  out.reserve(static_cast<size_t>(tensor.size(0)));
  for (int64_t i = 0; i < tensor.size(0); ++i) out.push_back(tensor_to_image(tensor[i]));
  return out;
}

void write_png(const std::string& path, const at::Tensor& tensor) { write_png(path, tensor_to_image(tensor)); }

}  // namespace seqgan
