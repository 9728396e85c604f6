// Images (decode, encode, conversion), make_grid and captioned figures.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>

#include "file_bytes.h"
#include "remove_tree.h"
#include "seqgan/error.h"
#include "seqgan/image.h"

namespace fs = std::filesystem;
using seqgan::Image;

namespace {

const std::string kImages = std::string(SEQGAN_TEST_DATA_DIR) + "/images/";

using seqgan::test::TempDir;

using seqgan::test::read_bytes;
using seqgan::test::write_bytes;

// The formulas of tests/data/images/make_fixtures.py.
int grey_value(int x, int y) { return (13 * x + 50 * y) & 0xFF; }
int rgb_value(int x, int y, int k) { return (40 * x + 60 * y + 70 * k) & 0xFF; }
int alpha_value(int x) { return (60 * x + 5) & 0xFF; }
// Pillow's RGB -> L: ITU-R 601 weights in 16-bit fixed point.
int luma(int r, int g, int b) { return (19595 * r + 38470 * g + 7471 * b + 32768) >> 16; }

// Runs f, expecting a seqgan::Error whose text contains every one of `parts`.
template <class F>
void expect_error(F f, std::vector<std::string> parts) {
  try {
    f();
    ADD_FAILURE() << "expected a seqgan::Error";
  } catch (const seqgan::Error& e) {
    for (const std::string& p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
  }
}

}  // namespace

TEST(Image, ReadsGreyPngAsGreyAndRgb) {
  const Image g = seqgan::read_image(kImages + "grey.png", 1);
  ASSERT_EQ(g.width, 5);
  ASSERT_EQ(g.height, 4);
  ASSERT_EQ(g.channels, 1);
  const Image rgb = seqgan::read_image(kImages + "grey.png", 3);
  ASSERT_EQ(rgb.channels, 3);
  for (int y = 0; y < 4; ++y) {
    for (int x = 0; x < 5; ++x) {
      EXPECT_EQ(g.at(y, x, 0), grey_value(x, y));
      for (int k = 0; k < 3; ++k) EXPECT_EQ(rgb.at(y, x, k), grey_value(x, y));
    }
  }
}

TEST(Image, RgbToGreyIsRec601Luma) {
  const Image rgb = seqgan::read_image(kImages + "rgb.png", 3);
  const Image grey = seqgan::read_image(kImages + "rgb.png", 1);
  for (int y = 0; y < 4; ++y) {
    for (int x = 0; x < 5; ++x) {
      for (int k = 0; k < 3; ++k) EXPECT_EQ(rgb.at(y, x, k), rgb_value(x, y, k));
      EXPECT_EQ(grey.at(y, x, 0), luma(rgb_value(x, y, 0), rgb_value(x, y, 1), rgb_value(x, y, 2)))
          << "at " << x << "," << y;
    }
  }
}

// Pillow's convert("RGB") / convert("L") ignore alpha (torchvision's loader sees the colour
// values under it); every pixel here has a different alpha, so compositing would show.
TEST(Image, AlphaIsDroppedAsPillowDoes) {
  const Image ga = seqgan::read_image(kImages + "grey_alpha.png", 1);
  const Image rgba = seqgan::read_image(kImages + "rgba.png", 3);
  const Image rgba_grey = seqgan::read_image(kImages + "rgba.png", 1);
  for (int y = 0; y < 4; ++y) {
    for (int x = 0; x < 5; ++x) {
      ASSERT_LT(alpha_value(x), 255);
      EXPECT_EQ(ga.at(y, x, 0), grey_value(x, y));
      for (int k = 0; k < 3; ++k) EXPECT_EQ(rgba.at(y, x, k), rgb_value(x, y, k)) << "at " << x << "," << y << "," << k;
      EXPECT_EQ(rgba_grey.at(y, x, 0), luma(rgb_value(x, y, 0), rgb_value(x, y, 1), rgb_value(x, y, 2)));
    }
  }
}

// Pillow opens a 16-bit grey PNG as 32-bit integers and clips them to 255 on conversion (it does
// not scale them): the stored values 257 * v come out as 255 wherever v > 0.
TEST(Image, Reads16BitGreyPngClippedAsPillowDoes) {
  const Image g = seqgan::read_image(kImages + "grey16.png", 1);
  for (int y = 0; y < 4; ++y)
    for (int x = 0; x < 5; ++x) EXPECT_EQ(g.at(y, x, 0), grey_value(x, y) == 0 ? 0 : 255) << "at " << x << "," << y;
}

TEST(Image, PngRoundTripGreyAndRgb) {
  TempDir dir;
  for (const int c : {1, 3}) {
    Image img(7, 3, c);
    for (size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = static_cast<uint8_t>(i * 37 + 11);
    const std::string path = dir / ("sub/round" + std::to_string(c) + ".png");  // folder is created
    seqgan::write_png(path, img);
    const Image back = seqgan::read_image(path, c);
    EXPECT_EQ(back.width, 7);
    EXPECT_EQ(back.height, 3);
    EXPECT_EQ(back.pixels, img.pixels);
    // From memory too.
    const std::vector<uint8_t> bytes = seqgan::encode_png(img);
    EXPECT_EQ(seqgan::decode_image(bytes.data(), bytes.size(), c).pixels, img.pixels);
  }
  // Atomic write leaves no temporary files behind, and overwrites.
  seqgan::write_png(dir / "sub/round1.png", Image(2, 2, 1, 9));
  EXPECT_EQ(seqgan::read_image(dir / "sub/round1.png", 1).pixels, std::vector<uint8_t>(4, 9));
  int files = 0;
  for (const auto& e : fs::directory_iterator(dir.path / "sub")) files += e.is_regular_file();
  EXPECT_EQ(files, 2);
}

TEST(Image, JpegDecodesCloseToSource) {
  const Image rgb = seqgan::read_image(kImages + "rgb.jpg", 3);
  ASSERT_EQ(rgb.width, 32);
  ASSERT_EQ(rgb.height, 24);
  const Image grey = seqgan::read_image(kImages + "grey.jpg", 1);
  const Image grey_of_rgb = seqgan::read_image(kImages + "rgb.jpg", 1);
  int worst = 0;
  for (int y = 0; y < 24; ++y) {
    for (int x = 0; x < 32; ++x) {
      for (int k = 0; k < 3; ++k) worst = std::max(worst, std::abs(rgb.at(y, x, k) - (20 + 3 * x + 2 * y + 40 * k)));
      worst = std::max(worst, std::abs(grey.at(y, x, 0) - (30 + 5 * x + 2 * y)));
      EXPECT_EQ(grey_of_rgb.at(y, x, 0), luma(rgb.at(y, x, 0), rgb.at(y, x, 1), rgb.at(y, x, 2)));
    }
  }
  EXPECT_LE(worst, 6);  // quality 95 on a smooth ramp
}

TEST(Image, JpegCutInHalfIsAnError) {
  const std::vector<uint8_t> bytes = read_bytes(kImages + "rgb.jpg");
  const std::vector<uint8_t> half(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(bytes.size() / 2));
  expect_error([&] { seqgan::decode_image(half.data(), half.size(), 3, "half.jpg"); }, {"half.jpg", "truncated"});
  TempDir dir;
  write_bytes(dir / "cut.jpg", half);
  expect_error([&] { seqgan::read_image(dir / "cut.jpg", 3); }, {dir / "cut.jpg", "truncated"});
  // Cut just before the end-of-image marker.
  const std::vector<uint8_t> almost(bytes.begin(), bytes.end() - 2);
  expect_error([&] { seqgan::decode_image(almost.data(), almost.size(), 1, "almost.jpg"); }, {"almost.jpg"});
}

TEST(Image, TruncatedPngIsAnError) {
  const std::vector<uint8_t> bytes = read_bytes(kImages + "rgb.png");
  for (size_t cut : {bytes.size() - 1, bytes.size() - 12, bytes.size() / 2, size_t{10}}) {
    const std::vector<uint8_t> part(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(cut));
    expect_error([&] { seqgan::decode_image(part.data(), part.size(), 3, "part.png"); }, {"part.png", "truncated"});
  }
}

TEST(Image, CorruptBytesAreAnError) {
  TempDir dir;
  std::vector<uint8_t> png = read_bytes(kImages + "rgb.png");
  png[png.size() / 2] ^= 0x5A;  // inside IDAT: zlib's check fails before the chunk's CRC is read
  write_bytes(dir / "flipped.png", png);
  expect_error([&] { seqgan::read_image(dir / "flipped.png", 3); }, {dir / "flipped.png", "IDAT", "corrupt"});
  // A flipped byte in a chunk whose data is read whole before use: the CRC check names it.
  std::vector<uint8_t> header = read_bytes(kImages + "rgb.png");
  header[8 + 8 + 9] ^= 0x01;  // IHDR's compression-method byte
  write_bytes(dir / "badihdr.png", header);
  expect_error([&] { seqgan::read_image(dir / "badihdr.png", 3); }, {dir / "badihdr.png", "CRC"});

  write_bytes(dir / "junk.png", {'h', 'e', 'l', 'l', 'o'});
  expect_error([&] { seqgan::read_image(dir / "junk.png", 3); }, {dir / "junk.png", "JPEG, PNG or WebP"});

  write_bytes(dir / "empty.jpg", {});
  expect_error([&] { seqgan::read_image(dir / "empty.jpg", 3); }, {dir / "empty.jpg", "0 bytes"});

  // A JPEG whose frame header is wrecked but whose marker structure is intact: libjpeg's reason is quoted.
  std::vector<uint8_t> jpg = read_bytes(kImages + "rgb.jpg");
  size_t sof = 2;
  while (sof + 1 < jpg.size() && !(jpg[sof] == 0xFF && jpg[sof + 1] == 0xC0)) ++sof;
  ASSERT_LT(sof + 9, jpg.size());
  jpg[sof + 4] = 0x11;  // precision 17 bits
  write_bytes(dir / "badframe.jpg", jpg);
  expect_error([&] { seqgan::read_image(dir / "badframe.jpg", 3); }, {dir / "badframe.jpg", "libjpeg"});

  expect_error([&] { seqgan::read_image(dir / "missing.png", 3); }, {dir / "missing.png", "cannot open"});
  expect_error([&] { seqgan::read_image(kImages + "rgb.png", 2); }, {"1 or 3 channels"});
}

TEST(Image, TensorConversion) {
  Image img(3, 2, 3);
  for (size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = static_cast<uint8_t>(i * 15);
  img.pixels[0] = 0;
  img.pixels[1] = 255;
  const at::Tensor t = seqgan::image_to_tensor(img);
  ASSERT_EQ(t.sizes(), (std::vector<int64_t>{3, 2, 3}));
  EXPECT_EQ(t.scalar_type(), at::kFloat);
  EXPECT_EQ(t[0][0][0].item<float>(), -1.0f);
  EXPECT_EQ(t[1][0][0].item<float>(), 1.0f);
  EXPECT_NEAR(t[2][1][2].item<float>(), img.at(1, 2, 2) / 127.5 - 1.0, 1e-6);  // CHW vs HWC
  EXPECT_EQ(seqgan::tensor_to_image(t).pixels, img.pixels);
  EXPECT_EQ(seqgan::tensor_to_image(t.unsqueeze(0)).pixels, img.pixels);

  // Clamping, rounding to the nearest level, NaN.
  at::Tensor v = at::zeros({1, 1, 5});
  v[0][0][0] = 3.0;
  v[0][0][1] = -7.0;
  v[0][0][2] = 10.4f / 127.5f - 1.0f;
  v[0][0][3] = 10.6f / 127.5f - 1.0f;
  v[0][0][4] = std::nanf("");
  EXPECT_EQ(seqgan::tensor_to_image(v).pixels, (std::vector<uint8_t>{255, 0, 10, 11, 0}));

  const std::vector<Image> batch = seqgan::tensor_to_images(at::zeros({2, 1, 4, 5}));
  ASSERT_EQ(batch.size(), 2u);
  EXPECT_EQ(batch[1].width, 5);
  EXPECT_EQ(batch[1].pixels[0], 128);
  expect_error([] { seqgan::tensor_to_image(at::zeros({2, 4, 5})); }, {"C in {1, 3}"});
}

TEST(Image, ResizeKeepsConstantsAndSize) {
  const Image flat(40, 30, 3, 77);
  const Image small = seqgan::resize_image(flat, 8, 6);
  EXPECT_EQ(small.width, 8);
  EXPECT_EQ(small.height, 6);
  EXPECT_EQ(small.pixels, std::vector<uint8_t>(8 * 6 * 3, 77));
  const Image big = seqgan::resize_image(flat, 50, 61);
  EXPECT_EQ(big.pixels, std::vector<uint8_t>(50 * 61 * 3, 77));
}

// resize_crop computes only the kept pixels; they must be those of resizing, then cropping.
TEST(Image, ResizeCropEqualsResizeThenCrop) {
  std::mt19937 gen(5);
  for (const int c : {1, 3}) {
    Image src(37, 23, c);
    for (uint8_t& v : src.pixels) v = static_cast<uint8_t>(gen());
    for (const auto filter : {seqgan::ResizeFilter::kBox, seqgan::ResizeFilter::kBilinear, seqgan::ResizeFilter::kBicubic,
                              seqgan::ResizeFilter::kLanczos}) {
      // Down, up, and one axis kept as it is (that axis is then only cropped).
      for (const auto& [w, h] : std::vector<std::pair<int, int>>{{20, 13}, {61, 40}, {37, 50}, {16, 23}}) {
        const Image full = seqgan::resize_image(src, w, h, filter);
        for (int trial = 0; trial < 6; ++trial) {
          const int cw = 1 + static_cast<int>(gen() % w), ch = 1 + static_cast<int>(gen() % h);
          const int x0 = static_cast<int>(gen() % (w - cw + 1)), y0 = static_cast<int>(gen() % (h - ch + 1));
          const Image part = seqgan::resize_crop(src, w, h, x0, y0, cw, ch, filter);
          ASSERT_EQ(part.width, cw);
          ASSERT_EQ(part.height, ch);
          for (int y = 0; y < ch; ++y)
            for (int x = 0; x < cw; ++x)
              for (int k = 0; k < c; ++k)
                ASSERT_EQ(part.at(y, x, k), full.at(y + y0, x + x0, k))
                    << seqgan::resize_filter_name(filter) << " " << w << "x" << h << " crop " << cw << "x" << ch
                    << " at " << x0 << "," << y0 << ", pixel " << x << "," << y << "," << k;
        }
      }
    }
  }
  expect_error([] { seqgan::resize_crop(Image(8, 8, 3), 4, 4, 2, 0, 3, 4); }, {"not inside"});
}

TEST(Grid, MatchesTorchvisionReference) {
  const at::Tensor x = at::arange(5 * 3 * 4 * 6, at::kFloat).reshape({5, 3, 4, 6}) / 64.0;
  const at::Tensor grid = seqgan::make_grid(x, 3, 2, 0.5);
  ASSERT_EQ(grid.sizes(), (std::vector<int64_t>{3, 14, 26}));
  const std::vector<uint8_t> raw = read_bytes(kImages + "make_grid_5x3x4x6_nrow3_pad2.f32");
  ASSERT_EQ(raw.size(), static_cast<size_t>(grid.numel()) * 4);
  const at::Tensor ref = at::from_blob(const_cast<uint8_t*>(raw.data()), {3, 14, 26}, at::kFloat).clone();
  EXPECT_TRUE(at::equal(grid, ref));
}

TEST(Grid, ShapeAndPaddingValues) {
  const at::Tensor x = at::full({5, 1, 3, 4}, -1.0);
  for (int64_t i = 0; i < 5; ++i) x[i].fill_(static_cast<double>(i) / 10);
  const at::Tensor g = seqgan::make_grid(x, 8, 1, 0.75);  // one row of 5, grey stays grey
  ASSERT_EQ(g.sizes(), (std::vector<int64_t>{1, 3 + 2, 5 * 5 + 1}));
  EXPECT_EQ(g[0][0][0].item<float>(), 0.75f);           // top-left padding
  EXPECT_EQ(g[0][4][25].item<float>(), 0.75f);          // bottom-right padding
  EXPECT_EQ(g[0][1][5].item<float>(), 0.75f);           // between image 0 and 1
  EXPECT_FLOAT_EQ(g[0][1][1].item<float>(), 0.0f);      // image 0
  EXPECT_FLOAT_EQ(g[0][3][4 * 5 + 4].item<float>(), 0.4f);  // image 4, last pixel
  const at::Tensor two_rows = seqgan::make_grid(x, 2, 0, -0.3);
  EXPECT_EQ(two_rows.sizes(), (std::vector<int64_t>{1, 9, 8}));
  EXPECT_FLOAT_EQ(two_rows[0][6][0].item<float>(), 0.4f);  // image 4 starts row 2
  EXPECT_FLOAT_EQ(two_rows[0][6][4].item<float>(), -0.3f);  // the empty cell keeps pad_value
  EXPECT_EQ(seqgan::make_grid(x.narrow(0, 0, 1), 8, 2, 0.0).sizes(), (std::vector<int64_t>{1, 7, 8}));
  expect_error([] { seqgan::make_grid(at::zeros({3, 4, 5}), 8, 2, 0.0); }, {"[N, C, H, W]"});
}

TEST(Grid, DrawTextUsesTheBitmapFont) {
  at::Tensor canvas = at::zeros({1, 9, 20});
  // 'I' is columns 0x00 0x41 0x7F 0x41 0x00: the middle column is a full 7-pixel bar.
  EXPECT_EQ(seqgan::draw_text(canvas, "I", 1, 1, 1, 1.0), 5);
  for (int r = 0; r < 7; ++r) EXPECT_EQ(canvas[0][1 + r][1 + 2].item<float>(), 1.0f) << r;
  EXPECT_EQ(canvas[0][1 + 3][1 + 1].item<float>(), 0.0f);  // 0x41: only top and bottom rows
  EXPECT_EQ(canvas[0][1][1 + 1].item<float>(), 1.0f);
  EXPECT_EQ(canvas.sum().item<float>(), 7 + 2 + 2);
  // Scaled and clipped at the border without throwing.
  at::Tensor small = at::zeros({3, 5, 5});
  seqgan::draw_text(small, "Hello", -1, -1, 2, -1.0);
  EXPECT_LT(small.min().item<float>(), 0.0f);
  EXPECT_EQ(seqgan::text_width("abc", 2), 3 * 12 - 2);
}

TEST(Grid, FigureLayoutWithCaptionsHeadersAndSeparators) {
  seqgan::FigureOptions opt;
  opt.padding = 2;
  opt.font_scale = 1;
  opt.separator_width = 1;
  seqgan::Figure fig(opt);
  fig.set_column_groups({1, 1, 2}, {"in", "rec", "AR"});
  const at::Tensor rgb = at::full({4, 3, 8, 8}, 0.25);
  fig.add_row(rgb, "cls 3");
  fig.add_row(at::full({4, 1, 8, 8}, -0.5), "c7");  // grey row on an RGB figure
  const at::Tensor f = fig.render();
  const int64_t caption_w = seqgan::text_width("cls 3", 1);
  const int64_t x0 = 2 + caption_w + 2;
  // Group 0: 1 cell (8) under "in" (11 wide) -> 11 wide, the cell centred at +1; gap 2, line 1,
  // gap 2. Group 1: "rec" (17) -> 17 wide, cell at +4. Group 2: 2 cells (18) under "AR" (11).
  const int64_t g1 = x0 + 11 + 2 + 1 + 2, g2 = g1 + 17 + 2 + 1 + 2;
  const int64_t width = g2 + 18 + 2;
  const int64_t y0 = 2 + 7 + 2;
  ASSERT_EQ(f.sizes(), (std::vector<int64_t>{3, y0 + 2 * (8 + 2), width}));
  EXPECT_FLOAT_EQ(f[1][y0][x0 + 1].item<float>(), 0.25f);   // row 0, column 0
  EXPECT_EQ(f[1][y0][x0].item<float>(), 1.0f);              // left of the centred cell
  EXPECT_FLOAT_EQ(f[1][y0][g1 + 4].item<float>(), 0.25f);   // row 0, column 1
  EXPECT_FLOAT_EQ(f[1][y0 + 7][g2 + 17].item<float>(), 0.25f);  // row 0, last pixel
  EXPECT_FLOAT_EQ(f[2][y0 + 10][g2].item<float>(), -0.5f);  // grey row 1, column 2
  // Separator lines in the middle of the gaps, across the image rows only.
  EXPECT_EQ(f[0][y0 + 3][x0 + 13].item<float>(), -1.0f);
  EXPECT_EQ(f[0][y0 + 3][x0 + 12].item<float>(), 1.0f);
  EXPECT_EQ(f[0][y0 + 3][x0 + 14].item<float>(), 1.0f);
  EXPECT_EQ(f[0][y0 + 17][g1 + 17 + 2].item<float>(), -1.0f);
  EXPECT_EQ(f[0][2][x0 + 13].item<float>(), 1.0f);
  // Header and caption ink, and no header running into the next one.
  EXPECT_LT(f.narrow(1, 2, 7).narrow(2, x0, 11).min().item<float>(), -0.99f);
  EXPECT_LT(f.narrow(1, 2, 7).narrow(2, g1, 17).min().item<float>(), -0.99f);
  EXPECT_EQ(f.narrow(1, 2, 7).narrow(2, x0 + 11, g1 - x0 - 11).min().item<float>(), 1.0f);
  EXPECT_LT(f.narrow(1, y0, 8).narrow(2, 2, caption_w).min().item<float>(), -0.99f);

  TempDir dir;
  fig.write_png(dir / "fig.png");
  const Image back = seqgan::read_image(dir / "fig.png", 3);
  EXPECT_EQ(back.width, width);
  EXPECT_EQ(back.at(0, 0, 0), 255);

  seqgan::Figure bad;
  bad.add_row(rgb);
  expect_error([&] { bad.add_row(at::zeros({3, 3, 8, 8})); }, {"same number"});
  bad.set_column_groups({1, 2});
  expect_error([&] { bad.render(); }, {"cover 3 columns"});
}
