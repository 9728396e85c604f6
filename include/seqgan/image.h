// 8-bit images in memory, JPEG/PNG/WebP decoding, PNG writing, Pillow's resampling, conversion to and from tensors in
// [-1, 1], and image grids (plain and captioned figures) for samples and reconstructions.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace seqgan {

// Interleaved 8-bit pixels, row-major HWC: pixel (y, x, c) is pixels[(y * width + x) * channels + c].
// channels is 1 (grey) or 3 (RGB) after decoding; 2 and 4 exist only inside the decoder.
struct Image {
  int width = 0;
  int height = 0;
  int channels = 0;
  std::vector<uint8_t> pixels;

  Image() = default;
  Image(int width, int height, int channels, uint8_t fill = 0);

  bool empty() const { return pixels.empty(); }
  uint8_t& at(int y, int x, int c) { return pixels[(static_cast<size_t>(y) * width + x) * channels + c]; }
  uint8_t at(int y, int x, int c) const { return pixels[(static_cast<size_t>(y) * width + x) * channels + c]; }
};

// The format of encoded image bytes, by their signature (not a file name).
enum class ImageFormat { kUnknown, kJpeg, kPng, kWebp };
ImageFormat sniff_image_format(const uint8_t* data, size_t size);
// "jpg", "png" or "webp" (the extensions seqgan writes), "" for kUnknown.
const char* image_format_extension(ImageFormat format);

// Pillow's RGB -> L: ITU-R 601 luma in 16-bit fixed point, (19595 R + 38470 G + 7471 B + 2^15)
// >> 16. The weights sum to 2^16, so grey passes through unchanged.
inline uint8_t rgb_to_luma(int r, int g, int b) {
  return static_cast<uint8_t>((19595 * r + 38470 * g + 7471 * b + 0x8000) >> 16);
}

// Decodes a JPEG, PNG or WebP file (recognised by its content, not its name) to `channels`
// (1 or 3) channels, with the libraries Pillow itself is built on (libjpeg-turbo, libpng,
// libwebp), and converts exactly as Pillow's Image.open(f).convert("RGB") / .convert("L") do,
// so the pixels equal those torchvision's ImageFolder hands to a PyTorch model:
//   - JPEG: islow DCT with fancy upsampling (libjpeg's defaults, as Pillow leaves them); CMYK
//     JPEGs (Adobe-inverted or not) convert with Pillow's CMYK -> RGB formula;
//   - PNG: palette looked up, 16-bit samples reduced to their high byte for RGB(A) and grey+
//     alpha, and a 16-bit grey PNG clipped to 255 (Pillow opens it as 32-bit integers "I" and
//     clips on conversion: a 16-bit grey PNG therefore comes out mostly white, as in PIL);
//   - alpha is dropped, not composited (PIL's convert("RGB") ignores it);
//   - RGB -> grey is ITU-R 601 luma in Pillow's fixed point, (19595 R + 38470 G + 7471 B +
//     2^15) >> 16; grey -> RGB repeats the value;
//   - EXIF orientation is ignored, as torchvision's PIL loader ignores it: a photo whose camera
//     stored it sideways is seen sideways by both.
// Throws seqgan::Error naming the file for unreadable files, other formats, truncated or
// corrupt data (a JPEG cut short, a PNG chunk failing its CRC, a WebP whose RIFF size exceeds
// the data), and whatever the decoding library rejects (its message is quoted).
Image read_image(const std::string& path, int channels);

// The whole file as bytes; errors name the file and the reason.
std::vector<uint8_t> read_file(const std::string& path);

// The same from bytes in memory; `name` is used in error messages.
Image decode_image(const uint8_t* data, size_t size, int channels,
                   const std::string& name = "<memory>");

// Encodes an 8-bit grey or RGB image as PNG.
std::vector<uint8_t> encode_png(const Image& image);

// Writes an 8-bit grey or RGB PNG atomically: a temporary file in the same folder is renamed
// over `path`, so a reader never sees half a file. Creates missing parent folders.
void write_png(const std::string& path, const Image& image);

// The resampling filters of Pillow's Image.resize: BOX, BILINEAR, BICUBIC (a = -0.5) and
// LANCZOS (a = 3), each antialiased by widening its support by the downscaling factor.
enum class ResizeFilter { kBox, kBilinear, kBicubic, kLanczos };

// "box", "bilinear", "bicubic", "lanczos" (the names of data.resize_filter).
ResizeFilter parse_resize_filter(const std::string& name);
const char* resize_filter_name(ResizeFilter filter);

// Resamples to width x height exactly as Pillow's Image.resize((width, height), filter) does for
// 8-bit "L" and "RGB" images: separable, horizontal pass first, the filter's coefficients
// normalised per output pixel and rounded to 22-bit fixed point, each pass rounded and clipped
// to 8 bits. The same size returns the image unchanged.
Image resize_image(const Image& image, int width, int height,
                   ResizeFilter filter = ResizeFilter::kBilinear);

// resize_image to width x height followed by the crop_width x crop_height crop at (x0, y0) of the
// result: the same pixels as the two steps, computing only those that are kept (a random 256
// crop of an image resized to 341x256 resamples a quarter fewer pixels).
Image resize_crop(const Image& image, int width, int height, int x0, int y0, int crop_width, int crop_height,
                  ResizeFilter filter = ResizeFilter::kBilinear);

// The ImageNet preprocessing of guided-diffusion's ADM evaluator and of LlamaGen
// (center_crop_arr): halve with BOX while the short side is at least 2 * size, resize with BICUBIC
// so that the short side is `size` (each side scaled and rounded half to even, as Python's
// round()), then cut the central size x size square (offsets rounded down).
Image adm_center_crop(const Image& image, int size);

// Image -> float32 tensor [C, H, W] in [-1, 1] (0 -> -1, 255 -> +1).
at::Tensor image_to_tensor(const Image& image);

// Values in [-1, 1] (any shape, any device) -> the 8-bit levels 0..255 they are written as, a
// float32 CPU tensor: clamped to [-1, 1], NaN as -1, (x + 1) 127.5 rounded to the nearest level.
at::Tensor pixel_levels(const at::Tensor& tensor);

// Tensor [C, H, W] (or [1, C, H, W]) with C in {1, 3}, values in [-1, 1] -> 8-bit image.
// Values are clamped to [-1, 1] and rounded to the nearest of the 256 levels; NaN becomes black
// (0), so a diverged model shows up as black instead of undefined bytes.
Image tensor_to_image(const at::Tensor& tensor);

// Tensor [N, C, H, W] -> N images.
std::vector<Image> tensor_to_images(const at::Tensor& tensor);

// Writes a [C, H, W] or [1, C, H, W] tensor in [-1, 1] as a PNG (see write_png).
void write_png(const std::string& path, const at::Tensor& tensor);

// torchvision.utils.make_grid: images [N, C, H, W] laid out `nrow` per row, `padding` pixels of
// `pad_value` around and between them -> [C, H', W'] with
//   H' = ceil(N / nrow') * (H + padding) + padding, W' = nrow' * (W + padding) + padding,
// where nrow' = min(nrow, N); images are placed row by row. Two deliberate differences from
// torchvision: grey input stays grey (torchvision copies it to 3 channels), and a single image
// is padded like any other (torchvision returns it bare), so the layout never depends on N.
at::Tensor make_grid(const at::Tensor& images, int64_t nrow = 8, int64_t padding = 2,
                     double pad_value = 0.0);

// A captioned figure: rows of equally sized images, an optional caption left of each row,
// optional headers above groups of columns, and separator lines between the groups, e.g.
//
//            input  | recon  | AR prediction
//   class 3  [img]  | [img]  | [img] [img] [img]
//   class 7  [img]  | [img]  | [img] [img] [img]
//
// Text is drawn with a built-in 5x7 ASCII font scaled by `font_scale`; characters outside
// 32..126 are drawn as '?'. Values are in [-1, 1] like the images.
struct FigureOptions {
  int padding = 2;             // pixels between cells and around the figure
  double background = 1.0;     // white page
  double text_value = -1.0;    // black text
  int font_scale = 2;          // 5x7 glyphs become 10x14 pixels
  int separator_width = 2;     // line between column groups (0: a plain gap of `padding`)
  double separator_value = -1.0;
};

class Figure {
 public:
  explicit Figure(FigureOptions options = {});

  // Splits the columns into consecutive groups of the given sizes; each group gets the header
  // of the same index (an empty header draws nothing) and groups are divided by separator lines.
  // Sizes must add up to the number of images per row. Without a call all columns form one group.
  void set_column_groups(std::vector<int64_t> sizes, std::vector<std::string> headers = {});

  // Appends a row: images [N, C, H, W] in [-1, 1]. Every row has the same N, H and W; grey and
  // RGB rows may be mixed (grey rows are drawn in grey on an RGB figure).
  void add_row(const at::Tensor& images, std::string caption = {});

  int64_t rows() const { return static_cast<int64_t>(rows_.size()); }

  // The figure as [C, H', W'] in [-1, 1].
  at::Tensor render() const;

  // render() written as PNG via write_png.
  void write_png(const std::string& path) const;

 private:
  struct Row {
    at::Tensor images;  // [N, C, H, W], float32, CPU
    std::string caption;
  };
  FigureOptions options_;
  std::vector<int64_t> group_sizes_;
  std::vector<std::string> headers_;
  std::vector<Row> rows_;
};

// Draws `text` into a [C, H, W] float tensor with its top-left corner at (x, y), clipped at the
// borders. Returns the width in pixels the text occupies (6 * scale per character).
int64_t draw_text(at::Tensor& canvas, const std::string& text, int64_t x, int64_t y, int scale,
                  double value);

// Width and height in pixels of `text` drawn at `scale` (one line).
int64_t text_width(const std::string& text, int scale);
int64_t text_height(int scale);

}  // namespace seqgan
