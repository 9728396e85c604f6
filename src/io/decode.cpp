// Image decoding through the libraries Pillow is built on (libjpeg-turbo, libpng, libwebp), with
// Pillow's own conversions to "RGB" and "L" applied afterwards, so that the pixels equal
// Image.open(f).convert(mode) byte for byte (see decode_image in seqgan/image.h).
//
// libjpeg and libpng report errors by longjmp. Each decoder therefore runs in a function that
// holds no object with a destructor between its setjmp and the library calls; the buffers it
// fills live in the caller.
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <jpeglib.h>
#include <jerror.h>  // after jpeglib.h: the message codes (JWRN_JPEG_EOF)
#include <png.h>
#include <webp/decode.h>

#include "seqgan/error.h"
#include "seqgan/image.h"

namespace seqgan {
namespace {

// Pillow refuses images above twice its MAX_IMAGE_PIXELS (89,478,485) as decompression bombs;
// seqgan refuses them too, before allocating.
constexpr uint64_t kMaxPixels = 2ull * 89478485ull;

// The decoded image in one of Pillow's modes before conversion.
enum class Mode {
  kL,     // 8-bit grey
  kI,     // grey with more than 8 bits (a 16-bit grey PNG): Pillow's "I", clipped on conversion
  kLA,    // grey + alpha (alpha dropped)
  kRGB,
  kRGBA,  // alpha dropped
  kCMYK,  // as Pillow stores it after reading a JPEG: inverted (Adobe's convention)
};

struct Decoded {
  int width = 0;
  int height = 0;
  Mode mode = Mode::kRGB;
  std::vector<uint8_t> bytes;     // 8-bit samples, interleaved (every mode but kI)
  std::vector<uint16_t> samples;  // kI
};

int channels_of(Mode mode) {
  switch (mode) {
    case Mode::kL: case Mode::kI: return 1;
    case Mode::kLA: return 2;
    case Mode::kRGB: return 3;
    default: return 4;
  }
}

// Checks the size before any pixel buffer is allocated; returns "" or the problem.
std::string check_size(uint64_t width, uint64_t height) {
  if (width == 0 || height == 0) return str("the image is ", width, "x", height, " pixels");
  if (width * height > kMaxPixels) {
    return str("the image is ", width, "x", height, " = ", width * height, " pixels, more than ", kMaxPixels,
               " (a decompression bomb, as Pillow calls it)");
  }
  return {};
}

// ---------------------------------------------------------------------------------------------
// JPEG (libjpeg-turbo). Pillow leaves libjpeg's defaults (islow DCT, fancy upsampling) and lets
// it convert YCbCr to RGB and YCCK to CMYK.

struct JpegErrors {
  jpeg_error_mgr mgr;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
  bool truncated;
};

void jpeg_fail(j_common_ptr cinfo) {
  auto* e = reinterpret_cast<JpegErrors*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, e->message);
  std::longjmp(e->jump, 1);
}

// libjpeg only warns when the data ends early and decodes the rest as grey; Pillow reports
// "image file is truncated" then. Other warnings (extraneous bytes, ...) Pillow ignores too.
void jpeg_message(j_common_ptr cinfo, int level) {
  auto* e = reinterpret_cast<JpegErrors*>(cinfo->err);
  if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) e->truncated = true;
}

// Returns "" or what went wrong.
std::string decode_jpeg(const uint8_t* data, size_t size, Decoded& out) {
  jpeg_decompress_struct cinfo;
  JpegErrors errors;
  cinfo.err = jpeg_std_error(&errors.mgr);
  errors.mgr.error_exit = jpeg_fail;
  errors.mgr.emit_message = jpeg_message;
  errors.truncated = false;
  errors.message[0] = '\0';
  if (setjmp(errors.jump)) {
    jpeg_destroy_decompress(&cinfo);
    // A file cut before its scan ends in "missing SOS marker" or the like: say why.
    if (errors.truncated) return str("the data ends before the image does (", size, " bytes): the file is truncated");
    return str("libjpeg cannot decode it (corrupt or unsupported data): ", errors.message);
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, data, static_cast<unsigned long>(size));
  jpeg_read_header(&cinfo, TRUE);
  switch (cinfo.num_components) {
    case 1: cinfo.out_color_space = JCS_GRAYSCALE; out.mode = Mode::kL; break;
    case 3: cinfo.out_color_space = JCS_RGB; out.mode = Mode::kRGB; break;
    case 4: cinfo.out_color_space = JCS_CMYK; out.mode = Mode::kCMYK; break;
    default: {
      const int n = cinfo.num_components;
      jpeg_destroy_decompress(&cinfo);
      return str("a JPEG with ", n, " components (expected 1, 3 or 4)");
    }
  }
  if (!check_size(cinfo.image_width, cinfo.image_height).empty()) {
    const uint64_t w = cinfo.image_width, h = cinfo.image_height;
    jpeg_destroy_decompress(&cinfo);
    return check_size(w, h);
  }
  jpeg_start_decompress(&cinfo);
  out.width = static_cast<int>(cinfo.output_width);
  out.height = static_cast<int>(cinfo.output_height);
  const size_t row = static_cast<size_t>(out.width) * cinfo.output_components;
  out.bytes.resize(row * out.height);
  while (cinfo.output_scanline < cinfo.output_height && !errors.truncated) {
    JSAMPROW rows[1] = {out.bytes.data() + row * cinfo.output_scanline};
    jpeg_read_scanlines(&cinfo, rows, 1);
  }
  if (!errors.truncated) jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  if (errors.truncated) return str("the data ends before the image does (", size, " bytes): the file is truncated");
  if (out.mode == Mode::kCMYK) {
    // Pillow reads every 4-component JPEG with the Adobe convention (raw mode "CMYK;I").
    for (uint8_t& v : out.bytes) v = static_cast<uint8_t>(255 - v);
  }
  return {};
}

// ---------------------------------------------------------------------------------------------
// PNG (libpng). Pillow's modes: palette -> "P" (looked up on conversion), 1/2/4-bit grey scaled
// to 8 bits, 16-bit grey -> "I", other 16-bit data -> their high bytes; transparency ignored.

struct PngReader {
  const uint8_t* data;
  size_t size;
  size_t pos;
  std::jmp_buf jump;
  char message[256];
};

void png_fail(png_structp png, png_const_charp message) {
  auto* r = static_cast<PngReader*>(png_get_error_ptr(png));
  std::snprintf(r->message, sizeof(r->message), "%s", message);
  std::longjmp(r->jump, 1);
}

void png_warn(png_structp, png_const_charp) {}  // e.g. "iCCP: known incorrect sRGB profile"

void png_read_memory(png_structp png, png_bytep out, png_size_t n) {
  auto* r = static_cast<PngReader*>(png_get_io_ptr(png));
  if (n > r->size - r->pos) {
    std::snprintf(r->message, sizeof(r->message),
                  "the data ends before the image does (%zu bytes): the file is truncated", r->size);
    std::longjmp(r->jump, 2);
  }
  std::memcpy(out, r->data + r->pos, n);
  r->pos += n;
}

std::string decode_png(const uint8_t* data, size_t size, Decoded& out) {
  PngReader reader{data, size, 0, {}, {}};
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &reader, png_fail, png_warn);
  if (png == nullptr) return "libpng cannot allocate its reader";
  png_infop info = png_create_info_struct(png);
  std::vector<png_bytep>* volatile rows = nullptr;  // set after setjmp: volatile keeps it valid after longjmp
  if (const int code = setjmp(reader.jump)) {
    png_destroy_read_struct(&png, &info, nullptr);
    delete rows;
    return code == 2 ? std::string(reader.message)
                     : str("libpng cannot decode it (corrupt or unsupported data): ", reader.message);
  }
  if (info == nullptr) png_error(png, "cannot allocate the info struct");
  png_set_read_fn(png, &reader, png_read_memory);
  png_set_user_limits(png, 0x7fffffff, 0x7fffffff);
  png_read_info(png, info);
  const png_uint_32 width = png_get_image_width(png, info);
  const png_uint_32 height = png_get_image_height(png, info);
  bool too_large = false;
  {  // no object with a destructor may be alive at a longjmp
    const std::string problem = check_size(width, height);
    too_large = !problem.empty();
    if (too_large) std::snprintf(reader.message, sizeof(reader.message), "%s", problem.c_str());
  }
  if (too_large) std::longjmp(reader.jump, 2);
  const int color = png_get_color_type(png, info);
  const int depth = png_get_bit_depth(png, info);
  if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  if (depth == 16) png_set_swap(png);  // native (little-endian) 16-bit samples
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  const int channels = png_get_channels(png, info);
  const size_t row = png_get_rowbytes(png, info);
  const bool wide = png_get_bit_depth(png, info) == 16;
  out.width = static_cast<int>(width);
  out.height = static_cast<int>(height);
  out.bytes.resize(row * height);
  rows = new std::vector<png_bytep>(height);
  for (png_uint_32 y = 0; y < height; ++y) (*rows)[y] = out.bytes.data() + row * y;
  png_read_image(png, (*rows).data());
  png_read_end(png, nullptr);  // checks the chunks after the image data, up to IEND
  png_destroy_read_struct(&png, &info, nullptr);
  delete rows;

  // Palette expansion may add an alpha channel from tRNS; Pillow's "P" -> "RGB" ignores it.
  static const Mode kModes[5] = {Mode::kL, Mode::kL, Mode::kLA, Mode::kRGB, Mode::kRGBA};
  if (channels < 1 || channels > 4) return str("a PNG with ", channels, " channels");
  out.mode = kModes[channels];
  if (wide) {
    const size_t n = static_cast<size_t>(width) * height * channels;
    const auto* s = reinterpret_cast<const uint16_t*>(out.bytes.data());
    if (channels == 1) {
      out.mode = Mode::kI;
      out.samples.assign(s, s + n);
      out.bytes.clear();
    } else {
      std::vector<uint8_t> high(n);
      for (size_t i = 0; i < n; ++i) high[i] = static_cast<uint8_t>(s[i] >> 8);
      out.bytes = std::move(high);
    }
  }
  return {};
}

// ---------------------------------------------------------------------------------------------
// WebP (libwebp): the still image, with alpha when the file has one (dropped on conversion).

std::string decode_webp(const uint8_t* data, size_t size, Decoded& out) {
  WebPBitstreamFeatures features;
  const VP8StatusCode status = WebPGetFeatures(data, size, &features);
  if (status == VP8_STATUS_NOT_ENOUGH_DATA) return "the data ends before the image does: the file is truncated";
  if (status != VP8_STATUS_OK) return str("libwebp cannot read its header (status ", int(status), ")");
  if (features.has_animation) return "an animated WebP (only still images are data)";
  const std::string problem = check_size(static_cast<uint64_t>(features.width), static_cast<uint64_t>(features.height));
  if (!problem.empty()) return problem;
  const int channels = features.has_alpha ? 4 : 3;
  out.width = features.width;
  out.height = features.height;
  out.mode = features.has_alpha ? Mode::kRGBA : Mode::kRGB;
  const size_t stride = static_cast<size_t>(out.width) * channels;
  out.bytes.resize(stride * out.height);
  const uint8_t* ok =
      features.has_alpha
          ? WebPDecodeRGBAInto(data, size, out.bytes.data(), out.bytes.size(), static_cast<int>(stride))
          : WebPDecodeRGBInto(data, size, out.bytes.data(), out.bytes.size(), static_cast<int>(stride));
  if (ok == nullptr) return "libwebp cannot decode it: the data is truncated or corrupt";
  return {};
}

// ---------------------------------------------------------------------------------------------
// Pillow's conversions.

// Pillow's CMYK -> RGB: each ink scaled by the remaining brightness, with its rounding division
// by 255.
inline uint8_t cmyk_channel(int ink, int not_black) {
  const int t = ink * not_black + 128;
  const int v = not_black - (((t >> 8) + t) >> 8);
  return static_cast<uint8_t>(v < 0 ? 0 : v);
}

Image convert(Decoded& d, int channels) {
  if ((d.mode == Mode::kRGB && channels == 3) || (d.mode == Mode::kL && channels == 1)) {
    Image out;  // already in the requested layout: no copy
    out.width = d.width, out.height = d.height, out.channels = channels;
    out.pixels = std::move(d.bytes);
    return out;
  }
  Image out(d.width, d.height, channels);
  const size_t n = static_cast<size_t>(d.width) * d.height;
  const int c = channels_of(d.mode);
  uint8_t* o = out.pixels.data();
  for (size_t i = 0; i < n; ++i) {
    int r, g, b;
    switch (d.mode) {
      case Mode::kI: r = g = b = d.samples[i] > 255 ? 255 : d.samples[i]; break;
      case Mode::kL: case Mode::kLA: r = g = b = d.bytes[i * c]; break;
      case Mode::kCMYK: {
        const uint8_t* s = &d.bytes[i * 4];
        const int not_black = 255 - s[3];
        r = cmyk_channel(s[0], not_black), g = cmyk_channel(s[1], not_black), b = cmyk_channel(s[2], not_black);
        break;
      }
      default: {
        const uint8_t* s = &d.bytes[i * c];
        r = s[0], g = s[1], b = s[2];
      }
    }
    if (channels == 3) {
      o[i * 3] = static_cast<uint8_t>(r), o[i * 3 + 1] = static_cast<uint8_t>(g), o[i * 3 + 2] = static_cast<uint8_t>(b);
    } else {
      o[i] = rgb_to_luma(r, g, b);
    }
  }
  return out;
}

}  // namespace

ImageFormat sniff_image_format(const uint8_t* d, size_t n) {
  static const uint8_t kPngSig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (n >= 8 && std::memcmp(d, kPngSig, 8) == 0) return ImageFormat::kPng;
  if (n >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF) return ImageFormat::kJpeg;
  if (n >= 12 && std::memcmp(d, "RIFF", 4) == 0 && std::memcmp(d + 8, "WEBP", 4) == 0) return ImageFormat::kWebp;
  return ImageFormat::kUnknown;
}

const char* image_format_extension(ImageFormat format) {
  switch (format) {
    case ImageFormat::kJpeg: return "jpg";
    case ImageFormat::kPng: return "png";
    case ImageFormat::kWebp: return "webp";
    default: return "";
  }
}

Image decode_image(const uint8_t* data, size_t size, int channels, const std::string& name) {
  SEQGAN_CHECK_HINT(channels == 1 || channels == 3, "use 1 (grey) or 3 (RGB)",
                    "expected 1 or 3 channels, got ", channels);
  const char* fix = "re-create the file, or skip undecodable images (data.skip_bad_files=true)";
  SEQGAN_CHECK_HINT(size > 0, fix, "'", name, "': expected JPEG, PNG or WebP data, found 0 bytes");
  const ImageFormat format = sniff_image_format(data, size);
  SEQGAN_CHECK_HINT(format != ImageFormat::kUnknown, "convert the image to JPEG, PNG or WebP",
                    "'", name, "': expected a JPEG, PNG or WebP signature, found neither");
  Decoded decoded;
  const std::string problem = format == ImageFormat::kJpeg  ? decode_jpeg(data, size, decoded)
                              : format == ImageFormat::kPng ? decode_png(data, size, decoded)
                                                       : decode_webp(data, size, decoded);
  SEQGAN_CHECK_HINT(problem.empty(), fix, "'", name, "': ", problem);
  return convert(decoded, channels);
}

Image read_image(const std::string& path, int channels) {
  const std::vector<uint8_t> bytes = read_file(path);
  return decode_image(bytes.data(), bytes.size(), channels, path);
}

}  // namespace seqgan
