// Bit-exact parity with Pillow 9.4 and torchvision 0.14 (Debian 12's python3-pil and
// python3-torchvision): decoding of every kind of JPEG, PNG and WebP in the fixtures,
// Image.resize with each filter, torchvision's Resize + CenterCrop, and guided-diffusion's
// center_crop_arr. tools/pil_fixtures.py writes the images, Pillow's pixels (expected.safetensors,
// U8 [H, W, C]) and cases.json, which lists every case with its tensor names, so nothing here
// knows a file or tensor name. Each test checks all of its cases and reports every one that
// differs: how many values, the largest difference and the first differing (x, y, c).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "python_fixtures.h"
#include "seqgan/data.h"
#include "seqgan/image.h"
#include "seqgan/safetensors.h"

using json = nlohmann::json;
using seqgan::Image;

namespace {

const char* const kNoReference =
    "tools/pil_fixtures.py wrote no reference; its output is in the first failure of this test binary";

struct Reference {
  std::string dir;  // empty when the script failed (python_fixture_dir has reported it)
  json cases;
  seqgan::safetensors::TensorMap tensors;
};

const Reference& reference() {
  static const Reference ref = [] {
    Reference r;
    r.dir = seqgan::test::python_fixture_dir("pillow", {"pil_fixtures.py", "weights_io.py"});
    if (r.dir.empty()) return r;
    r.tensors = seqgan::safetensors::load(r.dir + "/expected.safetensors").tensors;
    std::ifstream in(r.dir + "/cases.json");
    r.cases = json::parse(in);
    return r;
  }();
  return ref;
}

std::string text(const json& c, const char* key) { return c.at(key).get<std::string>(); }

std::string shape(const Image& image) {
  return std::to_string(image.width) + "x" + std::to_string(image.height) + "x" + std::to_string(image.channels);
}

// A U8 tensor [H, W, C] of the reference (C = 1 or 3) as an Image.
Image reference_image(const Reference& ref, const std::string& name) {
  const auto it = ref.tensors.find(name);
  if (it == ref.tensors.end()) throw std::runtime_error("expected.safetensors has no tensor " + name);
  const at::Tensor& t = it->second;
  if (t.scalar_type() != at::kByte || t.dim() != 3 || (t.size(2) != 1 && t.size(2) != 3)) {
    std::ostringstream os;
    os << name << ": expected a U8 tensor [H, W, 1 or 3], got " << t.scalar_type() << " " << t.sizes();
    throw std::runtime_error(os.str());
  }
  Image image(static_cast<int>(t.size(1)), static_cast<int>(t.size(0)), static_cast<int>(t.size(2)));
  const at::Tensor contiguous = t.contiguous();
  std::memcpy(image.pixels.data(), contiguous.data_ptr<uint8_t>(), image.pixels.size());
  return image;
}

// "" when `got` equals `want` byte for byte; otherwise the size mismatch, or how many values
// differ, the largest difference and the first differing value.
std::string difference(const Image& got, const Image& want) {
  std::ostringstream os;
  if (got.width != want.width || got.height != want.height || got.channels != want.channels) {
    os << "got " << shape(got) << ", expected " << shape(want) << " (width x height x channels)";
    return os.str();
  }
  if (got.pixels.size() != want.pixels.size()) {
    os << "got " << got.pixels.size() << " bytes for a " << shape(got) << " image";
    return os.str();
  }
  size_t count = 0;
  size_t first = 0;
  int worst = 0;
  for (size_t i = 0; i < want.pixels.size(); ++i) {
    const int d = std::abs(static_cast<int>(got.pixels[i]) - static_cast<int>(want.pixels[i]));
    if (d == 0) continue;
    if (count == 0) first = i;
    ++count;
    worst = std::max(worst, d);
  }
  if (count == 0) return {};
  const size_t channels = static_cast<size_t>(want.channels);
  const size_t width = static_cast<size_t>(want.width);
  const size_t pixel = first / channels;
  os << count << " of " << want.pixels.size() << " values differ, max |difference| " << worst << "; the first at (x "
     << pixel % width << ", y " << pixel / width << ", c " << first % channels << "): "
     << static_cast<int>(got.pixels[first]) << " instead of " << static_cast<int>(want.pixels[first]);
  return os.str();
}

// Runs the cases of one test, reporting each that differs (or throws) without stopping, then how
// many of them failed.
class Tally {
 public:
  explicit Tally(std::string what) : what_(std::move(what)) {}

  // `check` returns difference(...) of the case: "" when it matches.
  template <class F>
  void run(const std::string& label, F&& check) {
    ++cases_;
    std::string why;
    try {
      why = check();
    } catch (const std::exception& e) {
      why = std::string("threw: ") + e.what();
    }
    if (why.empty()) return;
    ++failed_;
    ADD_FAILURE() << label << ": " << why;
  }

  void finish() const {
    EXPECT_EQ(failed_, 0) << failed_ << " of " << cases_ << " " << what_ << " differ from the reference";
  }

 private:
  std::string what_;
  int cases_ = 0;
  int failed_ = 0;
};

// Resize (or ADM) and a central crop to `resolution`, nothing else: no channel conversion, padding,
// random crop or flip.
seqgan::TransformOptions center_crop_options(int resolution, seqgan::ResizeFilter filter,
                                             seqgan::Preprocess preprocess) {
  seqgan::TransformOptions opt;
  opt.resolution = resolution;
  opt.filter = filter;
  opt.preprocess = preprocess;
  opt.channels = 0;
  opt.pad = 0;
  opt.random_crop = false;
  opt.hflip = false;
  opt.center_crop = true;
  return opt;
}

// [W, H] -> "WxH".
std::string size_text(const json& wh) {
  return std::to_string(wh.at(0).get<int>()) + "x" + std::to_string(wh.at(1).get<int>());
}

// [[W, H], ...] -> "WxH -> WxH -> ...".
std::string sizes_text(const json& sizes) {
  std::string s;
  for (const json& wh : sizes) s += (s.empty() ? "" : " -> ") + size_text(wh);
  return s;
}

}  // namespace

// Image.open(f).convert("RGB") and .convert("L") for every file, through read_image and, for RGB,
// decode_image from the bytes.
TEST(PilParity, DecodesEveryFixtureLikePil) {
  const Reference& ref = reference();
  ASSERT_FALSE(ref.dir.empty()) << kNoReference;
  const json& cases = ref.cases.at("decode");
  ASSERT_FALSE(cases.empty());
  Tally tally("decoded images");
  for (const json& c : cases) {
    const std::string file = text(c, "file");
    const std::string path = ref.dir + "/" + file;
    const std::string label = file + " (" + text(c, "what") + "; Pillow opens it as " + text(c, "pil_mode") + ")";
    tally.run(label + ", read_image(3) vs convert(\"RGB\")",
              [&] { return difference(seqgan::read_image(path, 3), reference_image(ref, text(c, "rgb"))); });
    tally.run(label + ", read_image(1) vs convert(\"L\")",
              [&] { return difference(seqgan::read_image(path, 1), reference_image(ref, text(c, "l"))); });
    tally.run(label + ", decode_image(3) from memory vs convert(\"RGB\")", [&] {
      const std::vector<uint8_t> bytes = seqgan::read_file(path);
      return difference(seqgan::decode_image(bytes.data(), bytes.size(), 3, file),
                        reference_image(ref, text(c, "rgb")));
    });
  }
  tally.finish();
}

// img.resize((W, H), filter) for L and RGB sources: down- and upscaling, one axis only, 1x1, the
// identity, and a 7x5 source whose filter supports reach past both edges.
TEST(PilParity, ResizeMatchesPilForEveryFilter) {
  const Reference& ref = reference();
  ASSERT_FALSE(ref.dir.empty()) << kNoReference;
  const json& cases = ref.cases.at("resize");
  ASSERT_FALSE(cases.empty());
  for (const char* name : {"box", "bilinear", "bicubic", "lanczos"}) {
    EXPECT_STREQ(seqgan::resize_filter_name(seqgan::parse_resize_filter(name)), name);
  }
  Tally tally("resized images");
  for (const json& c : cases) {
    const int width = c.at("width").get<int>();
    const int height = c.at("height").get<int>();
    const std::string filter = text(c, "filter");
    const std::string label =
        text(c, "src") + " -> " + std::to_string(width) + "x" + std::to_string(height) + ", " + filter;
    tally.run(label, [&] {
      const Image src = reference_image(ref, text(c, "src"));
      const Image got = seqgan::resize_image(src, width, height, seqgan::parse_resize_filter(filter));
      return difference(got, reference_image(ref, text(c, "expected")));
    });
  }
  tally.finish();
}

// Compose([Resize(res, interpolation), CenterCrop(res)]) on Pillow's decode of a landscape and a
// portrait JPEG and of a grey PNG: Transform with Preprocess::kResize and a center crop.
TEST(PilParity, TorchvisionResizeCenterCropMatches) {
  const Reference& ref = reference();
  ASSERT_FALSE(ref.dir.empty()) << kNoReference;
  const json& cases = ref.cases.at("torchvision");
  ASSERT_FALSE(cases.empty());
  Tally tally("torchvision crops");
  for (const json& c : cases) {
    const int res = c.at("resolution").get<int>();
    const std::string filter = text(c, "filter");
    const std::string label = text(c, "src_file") + ", Resize(" + std::to_string(res) + ", " + filter + ") -> " +
                              size_text(c.at("resized")) + ", CenterCrop(" + std::to_string(res) + ")";
    tally.run(label, [&] {
      const Image src = reference_image(ref, text(c, "src"));
      const seqgan::Transform transform(
          center_crop_options(res, seqgan::parse_resize_filter(filter), seqgan::Preprocess::kResize));
      std::mt19937_64 rng(0);
      return difference(transform.apply(src, rng), reference_image(ref, text(c, "expected")));
    });
  }
  tally.finish();
}

// center_crop_arr(pil_image, size): adm_center_crop and Transform with Preprocess::kAdm.
TEST(PilParity, AdmCenterCropMatches) {
  const Reference& ref = reference();
  ASSERT_FALSE(ref.dir.empty()) << kNoReference;
  const json& cases = ref.cases.at("adm");
  ASSERT_FALSE(cases.empty());
  Tally tally("ADM crops");
  for (const json& c : cases) {
    const int res = c.at("resolution").get<int>();
    const std::string label = text(c, "src") + ", center_crop_arr(" + std::to_string(res) + ") via " +
                              sizes_text(c.at("sizes"));
    tally.run(label + ", adm_center_crop", [&] {
      return difference(seqgan::adm_center_crop(reference_image(ref, text(c, "src")), res),
                        reference_image(ref, text(c, "expected")));
    });
    tally.run(label + ", Transform with Preprocess::kAdm", [&] {
      const seqgan::Transform transform(
          center_crop_options(res, seqgan::ResizeFilter::kBicubic, seqgan::Preprocess::kAdm));
      std::mt19937_64 rng(0);
      return difference(transform.apply(reference_image(ref, text(c, "src")), rng),
                        reference_image(ref, text(c, "expected")));
    });
  }
  tally.finish();
}
