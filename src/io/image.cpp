// Image decoding (stb_image), PNG encoding (stb_image_write), resampling (stb_image_resize) and
// tensor conversion. The stb implementations are compiled here and nowhere else.
#include "seqgan/image.h"

#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <unistd.h>
#include <zlib.h>

#include "seqgan/error.h"

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wall"
#pragma GCC diagnostic ignored "-Wextra"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-but-set-variable"
#define STBI_NO_STDIO  // files are read here, so errors can name them
#define STBI_ONLY_PNG
#define STBI_ONLY_JPEG
#define STBI_FAILURE_USERMSG  // "JPEG format not supported: 8-bit only" rather than "only 8-bit"
#define STB_IMAGE_IMPLEMENTATION
#include <stb_image.h>
#define STBI_WRITE_NO_STDIO
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb_image_write.h>
#define STB_IMAGE_RESIZE_IMPLEMENTATION
#include <stb_image_resize.h>
#pragma GCC diagnostic pop

namespace seqgan {
namespace fs = std::filesystem;

Image::Image(int w, int h, int c, uint8_t fill)
    : width(w), height(h), channels(c), pixels(static_cast<size_t>(w) * h * c, fill) {
  SEQGAN_CHECK(w >= 0 && h >= 0 && c >= 1 && c <= 4, "expected width, height >= 0 and 1..4 channels, got ",
               w, "x", h, "x", c);
}

namespace {

enum class Format { kPng, kJpeg, kUnknown };

Format sniff(const uint8_t* d, size_t n) {
  static const uint8_t kPngSig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (n >= 8 && std::memcmp(d, kPngSig, 8) == 0) return Format::kPng;
  if (n >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF) return Format::kJpeg;
  return Format::kUnknown;
}

uint32_t be32(const uint8_t* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
}

// Walks the chunk list: stb_image neither checks CRCs nor insists on IEND, so a file cut after
// the first IDAT or with flipped bytes can decode "successfully" into garbage.
// Returns an empty string when the structure is sound, else what is wrong.
std::string check_png_structure(const uint8_t* d, size_t n) {
  size_t pos = 8;
  while (pos + 12 <= n) {
    const uint32_t length = be32(d + pos);
    const uint8_t* type = d + pos + 4;
    const std::string type_name(reinterpret_cast<const char*>(type), 4);
    if (length > n - pos - 12) {
      return str("chunk '", type_name, "' at byte ", pos, " claims ", length, " bytes but only ",
                 n - pos - 12, " remain: the file is truncated");
    }
    const bool critical = (type[0] & 0x20) == 0;  // uppercase first letter: IHDR, PLTE, IDAT, IEND
    if (critical) {
      const uint32_t stored = be32(d + pos + 8 + length);
      const uint32_t computed =
          static_cast<uint32_t>(crc32(crc32(0L, Z_NULL, 0), type, 4 + length));
      if (stored != computed) {
        return str("chunk '", type_name, "' at byte ", pos, " fails its CRC check (stored 0x",
                   std::hex, stored, ", computed 0x", computed, std::dec, "): the file is corrupt");
      }
    }
    if (std::memcmp(type, "IEND", 4) == 0) return {};
    pos += 12 + static_cast<size_t>(length);
  }
  return str("no IEND chunk before the end of the data (", n, " bytes): the file is truncated");
}

// Walks the JPEG marker segments and the entropy-coded data after each SOS up to EOI. stb_image
// pads a truncated scan with zeros and reports success, so a JPEG cut in half must be caught
// here. Bytes after EOI are allowed (some cameras append data).
std::string check_jpeg_structure(const uint8_t* d, size_t n) {
  size_t pos = 2;  // after SOI
  while (true) {
    if (pos >= n) break;
    if (d[pos] != 0xFF) return str("expected a marker (0xFF) at byte ", pos, ", found 0x", std::hex, int(d[pos]));
    while (pos < n && d[pos] == 0xFF) ++pos;  // fill bytes
    if (pos >= n) break;
    const uint8_t marker = d[pos++];
    if (marker == 0xD9) return {};                                   // EOI
    if (marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7)) continue;  // no payload
    if (pos + 2 > n) break;
    const size_t length = (size_t(d[pos]) << 8) | d[pos + 1];
    if (length < 2) return str("marker segment at byte ", pos - 2, " has invalid length ", length);
    if (pos + length > n) break;
    pos += length;
    if (marker == 0xDA) {  // SOS: skip entropy-coded data up to the next real marker
      while (pos + 1 < n) {
        if (d[pos] != 0xFF) { ++pos; continue; }
        const uint8_t next = d[pos + 1];
        if (next == 0x00 || (next >= 0xD0 && next <= 0xD7) || next == 0xFF) { pos += (next == 0xFF) ? 1 : 2; continue; }
        break;
      }
      if (pos + 1 >= n) break;
    }
  }
  return str("no end-of-image marker (0xFFD9) before the end of the data (", n,
             " bytes): the file is truncated");
}

uint8_t luma(int r, int g, int b) {
  // ITU-R 601 in fixed point (weights * 2^16), rounded to nearest.
  return static_cast<uint8_t>((19595 * r + 38470 * g + 7471 * b + 32768) >> 16);
}

uint8_t over_white(int v, int a) { return static_cast<uint8_t>((v * a + 255 * (255 - a) + 127) / 255); }

std::vector<uint8_t> read_file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  SEQGAN_CHECK_HINT(in.good(), "check that the path exists and is readable",
                    "cannot open '", path, "': ", std::strerror(errno));
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  in.seekg(0, std::ios::beg);
  SEQGAN_CHECK(size >= 0, "cannot determine the size of '", path, "'");
  std::vector<uint8_t> bytes(static_cast<size_t>(size));
  in.read(reinterpret_cast<char*>(bytes.data()), size);
  SEQGAN_CHECK(in.gcount() == size, "expected ", size, " bytes from '", path, "', read ", in.gcount());
  return bytes;
}

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

Image decode_image(const uint8_t* data, size_t size, int channels, const std::string& name) {
  check_channels(channels, "decode_image");
  SEQGAN_CHECK_HINT(size > 0, "the file is empty; re-create or remove it", "'", name,
                    "': expected PNG or JPEG data, found 0 bytes");
  const Format format = sniff(data, size);
  SEQGAN_CHECK_HINT(format != Format::kUnknown, "only PNG and JPEG are supported; convert the file",
                    "'", name, "': expected a PNG or JPEG signature, found neither");
  const std::string problem =
      format == Format::kPng ? check_png_structure(data, size) : check_jpeg_structure(data, size);
  SEQGAN_CHECK_HINT(problem.empty(), "re-create the file, or skip undecodable files (skip_bad)",
                    "'", name, "': ", problem);
  SEQGAN_CHECK(size <= static_cast<size_t>(INT32_MAX), "'", name, "' is larger than 2 GiB");

  int w = 0, h = 0, source_channels = 0;
  stbi_uc* raw = stbi_load_from_memory(data, static_cast<int>(size), &w, &h, &source_channels, 0);
  SEQGAN_CHECK_HINT(raw != nullptr, "re-create the file, or skip undecodable files (skip_bad)",
                    "'", name, "': stb_image cannot decode it: ", stbi_failure_reason());
  std::unique_ptr<stbi_uc, void (*)(void*)> guard(raw, stbi_image_free);

  Image out(w, h, channels);
  const size_t n = static_cast<size_t>(w) * h;
  for (size_t i = 0; i < n; ++i) {
    const stbi_uc* s = raw + i * source_channels;
    int r, g, b;
    switch (source_channels) {
      case 1: r = g = b = s[0]; break;
      case 2: r = g = b = over_white(s[0], s[1]); break;
      case 3: r = s[0]; g = s[1]; b = s[2]; break;
      default: r = over_white(s[0], s[3]); g = over_white(s[1], s[3]); b = over_white(s[2], s[3]); break;
    }
    uint8_t* o = out.pixels.data() + i * channels;
    if (channels == 3) {
      o[0] = static_cast<uint8_t>(r); o[1] = static_cast<uint8_t>(g); o[2] = static_cast<uint8_t>(b);
    } else {
      o[0] = luma(r, g, b);  // the weights sum to 2^16, so grey sources pass through exactly
    }
  }
  return out;
}

Image read_image(const std::string& path, int channels) {
  const std::vector<uint8_t> bytes = read_file_bytes(path);
  return decode_image(bytes.data(), bytes.size(), channels, path);
}

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
  static std::atomic<uint64_t> counter{0};
  const std::string temp = str(path, ".tmp.", ::getpid(), ".", counter++);
  FILE* f = std::fopen(temp.c_str(), "wb");
  SEQGAN_CHECK_HINT(f != nullptr, "check that the folder is writable", "cannot create '", temp,
                    "': ", std::strerror(errno));
  const bool written = std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size() &&
                       std::fflush(f) == 0 && ::fsync(::fileno(f)) == 0;
  const int saved_errno = errno;
  std::fclose(f);
  if (!written) {
    std::remove(temp.c_str());
    throw Error(str("write_png: cannot write '", temp, "': ", std::strerror(saved_errno)),
                "check free disk space");
  }
  std::error_code ec;
  fs::rename(temp, target, ec);
  if (ec) {
    std::remove(temp.c_str());
    throw Error(str("write_png: cannot rename '", temp, "' to '", path, "': ", ec.message()));
  }
}

Image resize_image(const Image& image, int width, int height) {
  SEQGAN_CHECK(width > 0 && height > 0, "expected a positive target size, got ", width, "x", height);
  SEQGAN_CHECK(!image.empty(), "cannot resize an empty image");
  if (width == image.width && height == image.height) return image;
  Image out(width, height, image.channels);
  // Linear colour space: the [-1, 1] training data is the sRGB code values themselves, so
  // averaging them is what the model sees elsewhere too.
  const int ok = stbir_resize_uint8_generic(image.pixels.data(), image.width, image.height, 0,
                                            out.pixels.data(), width, height, 0, image.channels,
                                            STBIR_ALPHA_CHANNEL_NONE, 0, STBIR_EDGE_CLAMP,
                                            STBIR_FILTER_TRIANGLE, STBIR_COLORSPACE_LINEAR, nullptr);
  SEQGAN_CHECK(ok != 0, "stb_image_resize failed for ", image.width, "x", image.height, " -> ", width,
               "x", height);
  return out;
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

Image tensor_to_image(const at::Tensor& tensor) {
  at::Tensor t = tensor;
  if (t.dim() == 4 && t.size(0) == 1) t = t.squeeze(0);
  SEQGAN_CHECK_HINT(t.dim() == 3 && (t.size(0) == 1 || t.size(0) == 3),
                    "pass one image [C, H, W] with C = 1 or 3; use tensor_to_images for a batch",
                    "expected a tensor [C, H, W] with C in {1, 3}, got ", t.sizes());
  // [C, H, W] -> [H, W, C], mapped to 0..255
  t = t.detach().to(at::kCPU, at::kFloat).nan_to_num(-1.0).clamp(-1.0, 1.0).add(1.0).mul(127.5).round();
  t = t.permute({1, 2, 0}).contiguous().to(at::kByte);
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
