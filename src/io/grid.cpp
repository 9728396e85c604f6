// Image grids: torchvision-style make_grid and captioned figures with a built-in bitmap font.
#include "io/font5x7.h"
#include "seqgan/error.h"
#include "seqgan/image.h"

namespace seqgan {

at::Tensor make_grid(const at::Tensor& images, int64_t nrow, int64_t padding, double pad_value) {
  SEQGAN_CHECK_HINT(images.dim() == 4 && images.size(0) >= 1,
                    "stack the images into one tensor, e.g. torch::stack(list)",
                    "expected images [N, C, H, W] with N >= 1, got ", images.sizes());
  SEQGAN_CHECK(nrow >= 1 && padding >= 0, "expected nrow >= 1 and padding >= 0, got nrow ", nrow,
               ", padding ", padding);
  const int64_t n = images.size(0), c = images.size(1), h = images.size(2), w = images.size(3);
  const int64_t xmaps = std::min(nrow, n);
  const int64_t ymaps = (n + xmaps - 1) / xmaps;
  const int64_t cell_h = h + padding, cell_w = w + padding;
  at::Tensor grid = at::full({c, ymaps * cell_h + padding, xmaps * cell_w + padding}, pad_value,
                             images.options());  // [C, H', W']
  for (int64_t k = 0; k < n; ++k) {
    const int64_t y = k / xmaps, x = k % xmaps;
    grid.narrow(1, y * cell_h + padding, h).narrow(2, x * cell_w + padding, w).copy_(images[k]);
  }
  return grid;
}

int64_t text_width(const std::string& text, int scale) {
  if (text.empty()) return 0;
  // One blank column between glyphs, none after the last.
  return static_cast<int64_t>(text.size()) * (font5x7::kWidth + 1) * scale - scale;
}

int64_t text_height(int scale) { return font5x7::kHeight * scale; }

int64_t draw_text(at::Tensor& canvas, const std::string& text, int64_t x, int64_t y, int scale,
                  double value) {
  SEQGAN_CHECK(canvas.dim() == 3 && canvas.device().is_cpu() && canvas.scalar_type() == at::kFloat,
               "expected a CPU float32 canvas [C, H, W], got ", canvas.sizes(), " ",
               canvas.scalar_type(), " on ", canvas.device());
  SEQGAN_CHECK(scale >= 1, "expected a font scale >= 1, got ", scale);
  auto a = canvas.accessor<float, 3>();
  const int64_t channels = canvas.size(0), height = canvas.size(1), width = canvas.size(2);
  const float v = static_cast<float>(value);
  int64_t pen = x;
  for (const char ch : text) {
    int code = static_cast<unsigned char>(ch);
    if (code < font5x7::kFirst || code > font5x7::kLast) code = '?';
    const uint8_t* glyph = font5x7::kGlyphs[code - font5x7::kFirst];
    for (int col = 0; col < font5x7::kWidth; ++col) {
      for (int row = 0; row < font5x7::kHeight; ++row) {
        if (!((glyph[col] >> row) & 1)) continue;
        for (int dy = 0; dy < scale; ++dy) {
          const int64_t py = y + row * scale + dy;
          if (py < 0 || py >= height) continue;
          for (int dx = 0; dx < scale; ++dx) {
            const int64_t px = pen + col * scale + dx;
            if (px < 0 || px >= width) continue;
            for (int64_t c = 0; c < channels; ++c) a[c][py][px] = v;
          }
        }
      }
    }
    pen += (font5x7::kWidth + 1) * scale;
  }
  return text_width(text, scale);
}

Figure::Figure(FigureOptions options) : options_(options) {
  SEQGAN_CHECK(options_.padding >= 0 && options_.font_scale >= 1 && options_.separator_width >= 0,
               "expected padding >= 0, font_scale >= 1, separator_width >= 0, got ", options_.padding,
               ", ", options_.font_scale, ", ", options_.separator_width);
}

void Figure::set_column_groups(std::vector<int64_t> sizes, std::vector<std::string> headers) {
  SEQGAN_CHECK(!sizes.empty(), "expected at least one column group");
  for (const int64_t s : sizes) SEQGAN_CHECK(s >= 1, "expected group sizes >= 1, got ", s);
  SEQGAN_CHECK(headers.size() <= sizes.size(), "got ", headers.size(), " headers for ", sizes.size(),
               " column groups");
  group_sizes_ = std::move(sizes);
  headers_ = std::move(headers);
}

void Figure::add_row(const at::Tensor& images, std::string caption) {
  SEQGAN_CHECK(images.dim() == 4 && images.size(0) >= 1 && (images.size(1) == 1 || images.size(1) == 3),
               "expected row images [N, C, H, W] with N >= 1 and C in {1, 3}, got ", images.sizes());
  if (!rows_.empty()) {
    const at::Tensor& first = rows_.front().images;
    SEQGAN_CHECK_HINT(images.size(0) == first.size(0) && images.size(2) == first.size(2) &&
                          images.size(3) == first.size(3),
                      "every row needs the same number of images of the same size",
                      "row ", rows_.size(), " has images ", images.sizes(), ", row 0 has ", first.sizes());
  }
  rows_.push_back({images.detach().to(at::kCPU, at::kFloat), std::move(caption)});
}

at::Tensor Figure::render() const {
  SEQGAN_CHECK(!rows_.empty(), "the figure has no rows; call add_row first");
  const int64_t pad = options_.padding, scale = options_.font_scale;
  const int64_t cols = rows_.front().images.size(0);
  const int64_t h = rows_.front().images.size(2), w = rows_.front().images.size(3);
  int64_t channels = 1;
  int64_t caption_w = 0;
  for (const Row& r : rows_) {
    channels = std::max(channels, r.images.size(1));
    caption_w = std::max(caption_w, text_width(r.caption, static_cast<int>(scale)));
  }
  std::vector<int64_t> groups = group_sizes_.empty() ? std::vector<int64_t>{cols} : group_sizes_;
  int64_t total = 0;
  for (const int64_t g : groups) total += g;
  SEQGAN_CHECK_HINT(total == cols, "make the group sizes add up to the images per row",
                    "column groups cover ", total, " columns, but rows have ", cols, " images");
  bool has_header = false;
  for (const std::string& s : headers_) has_header |= !s.empty();

  // Horizontal layout: [caption] group 0 | group 1 | ... A group is as wide as its cells or its
  // header, whichever is wider (cells centred), so that headers never run into each other.
  const int64_t x0 = pad + (caption_w > 0 ? caption_w + pad : 0);
  const int64_t sep = options_.separator_width > 0 ? options_.separator_width + pad : 0;
  std::vector<int64_t> cell_x, line_x, group_x0, group_w;
  int64_t cursor = x0;
  for (size_t g = 0; g < groups.size(); ++g) {
    const int64_t span = groups[g] * (w + pad) - pad;
    const int64_t header_w = g < headers_.size() ? text_width(headers_[g], static_cast<int>(scale)) : 0;
    const int64_t gw = std::max(span, header_w);
    group_x0.push_back(cursor);
    group_w.push_back(gw);
    for (int64_t j = 0; j < groups[g]; ++j) cell_x.push_back(cursor + (gw - span) / 2 + j * (w + pad));
    cursor += gw + pad;
    if (g + 1 < groups.size() && sep > 0) {
      line_x.push_back(cursor);
      cursor += sep;
    }
  }
  const int64_t width = cursor;
  const int64_t y0 = pad + (has_header ? text_height(static_cast<int>(scale)) + pad : 0);
  const int64_t height = y0 + static_cast<int64_t>(rows_.size()) * (h + pad);

  at::Tensor canvas = at::full({channels, height, width}, options_.background, at::kFloat);  // [C, H', W']
  for (size_t r = 0; r < rows_.size(); ++r) {
    const int64_t y = y0 + static_cast<int64_t>(r) * (h + pad);
    const at::Tensor& imgs = rows_[r].images;
    for (int64_t j = 0; j < cols; ++j) {
      canvas.narrow(1, y, h).narrow(2, cell_x[j], w).copy_(imgs[j].expand({channels, h, w}));
    }
    const int64_t ty = y + (h - text_height(static_cast<int>(scale))) / 2;
    draw_text(canvas, rows_[r].caption, pad, ty, static_cast<int>(scale), options_.text_value);
  }
  for (size_t g = 0; g < headers_.size(); ++g) {
    const int64_t tw = text_width(headers_[g], static_cast<int>(scale));
    const int64_t tx = group_x0[g] + (group_w[g] - tw) / 2;
    draw_text(canvas, headers_[g], tx, pad, static_cast<int>(scale), options_.text_value);
  }
  for (const int64_t x : line_x) {
    // Cell, pad, line, pad, cell: the line sits in the middle of the gap, across the rows only.
    canvas.narrow(1, y0, height - y0 - pad).narrow(2, x, options_.separator_width)
        .fill_(options_.separator_value);
  }
  return canvas;
}

void Figure::write_png(const std::string& path) const { ::seqgan::write_png(path, render()); }

}  // namespace seqgan
