// 8-bit images in memory, PNG/JPEG decoding, PNG writing, conversion to and from tensors in
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

// Decodes a PNG or JPEG file to `channels` (1 or 3) channels. Grey, grey+alpha, RGB and RGBA
// sources are accepted: alpha is composited on white (a transparent logo stays on a white page
// rather than on whatever colour its transparent pixels happen to hold), RGB -> grey is ITU-R
// 601 luma (0.299 R + 0.587 G + 0.114 B, rounded), grey -> RGB repeats the value.
// Throws seqgan::Error naming the file for: unreadable files, formats other than PNG/JPEG,
// truncated files (a JPEG without its end-of-image marker, a PNG without IEND; stb would
// otherwise decode half an image without complaint), bad PNG chunk checksums, and anything
// stb_image rejects (its reason is quoted).
Image read_image(const std::string& path, int channels);

// The same from bytes in memory; `name` is used in error messages.
Image decode_image(const uint8_t* data, size_t size, int channels,
                   const std::string& name = "<memory>");

// Encodes an 8-bit grey or RGB image as PNG.
std::vector<uint8_t> encode_png(const Image& image);

// Writes an 8-bit grey or RGB PNG atomically: a temporary file in the same folder is renamed
// over `path`, so a reader never sees half a file. Creates missing parent folders.
void write_png(const std::string& path, const Image& image);

// Resamples to width x height with an antialiased triangle (bilinear) filter, clamping at the
// borders; downscaling averages over the footprint like PIL's bilinear resize.
Image resize_image(const Image& image, int width, int height);

// Image -> float32 tensor [C, H, W] in [-1, 1] (0 -> -1, 255 -> +1).
at::Tensor image_to_tensor(const Image& image);

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
