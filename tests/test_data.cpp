// IDX files, Fashion-MNIST, image folders, transforms and the loader.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include "remove_tree.h"
#include "seqgan/data.h"
#include "seqgan/error.h"

namespace fs = std::filesystem;
using seqgan::Image;

namespace {

const std::string kData = SEQGAN_TEST_DATA_DIR;

using seqgan::test::TempDir;

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()),
                                              static_cast<std::streamsize>(bytes.size()));
}

template <class F>
void expect_error(F f, std::vector<std::string> parts) {
  try {
    f();
    ADD_FAILURE() << "expected a seqgan::Error";
  } catch (const seqgan::Error& e) {
    for (const std::string& p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
  }
}

// Sample i is a size x size grey image whose pixels encode i; label i % 5. Optionally throws at
// one index, sleeps per sample, or makes one sample a different size.
class Synthetic : public seqgan::Dataset {
 public:
  explicit Synthetic(int64_t n, int size = 12) : n_(n), size_(size) {}
  int64_t throw_at = -1;
  int64_t odd_size_at = -1;
  int sleep_ms = 0;
  mutable std::atomic<int64_t> loads{0};

  int64_t size() const override { return n_; }
  seqgan::RawExample load(int64_t i) const override {
    check_index(i);
    ++loads;
    if (sleep_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(sleep_ms));
    if (i == throw_at) throw seqgan::Error(seqgan::str("synthetic failure at ", i));
    const int s = i == odd_size_at ? size_ + 1 : size_;
    Image img(s, s, 1);
    for (int y = 0; y < s; ++y)
      for (int x = 0; x < s; ++x) img.at(y, x, 0) = static_cast<uint8_t>((i * 7 + x * 3 + y * 11) % 256);
    return {img, i % 5};
  }
  int num_classes() const override { return 5; }
  std::vector<std::string> class_names() const override { return {"a", "b", "c", "d", "e"}; }
  int channels() const override { return 1; }
  std::string description() const override { return "synthetic"; }

 private:
  int64_t n_;
  int size_;
};

std::vector<seqgan::Batch> drain(seqgan::Loader& loader) {
  std::vector<seqgan::Batch> out;
  seqgan::Batch b;
  while (loader.next(b)) out.push_back(b);
  return out;
}

void write_png_file(const std::string& path, uint8_t value, int size = 6) {
  seqgan::write_png(path, Image(size, size, 3, value));
}

}  // namespace

// ------------------------------------------------------------------------------------------ IDX

TEST(Idx, ParsesRawAndGzipFixtures) {
  const seqgan::IdxArray raw = seqgan::read_idx(kData + "/idx/t10k-images-idx3-ubyte");
  EXPECT_EQ(raw.dims, (std::vector<int64_t>{2, 4, 5}));
  ASSERT_EQ(raw.data.size(), 40u);
  for (int i = 0; i < 40; ++i) EXPECT_EQ(raw.data[i], (255 - 3 * i) % 256);
  const seqgan::IdxArray gz = seqgan::read_idx(kData + "/idx/train-images-idx3-ubyte.gz");
  EXPECT_EQ(gz.dims, (std::vector<int64_t>{3, 4, 5}));
  ASSERT_EQ(gz.data.size(), 60u);
  for (int i = 0; i < 60; ++i) EXPECT_EQ(gz.data[i], (7 * i) % 256);
  const seqgan::IdxArray labels = seqgan::read_idx(kData + "/idx/train-labels-idx1-ubyte.gz");
  EXPECT_EQ(labels.dims, (std::vector<int64_t>{3}));
  EXPECT_EQ(labels.data, (std::vector<uint8_t>{2, 0, 9}));
}

TEST(Idx, WriteReadRoundTrip) {
  TempDir dir;
  seqgan::IdxArray a;
  a.dims = {2, 3, 4};
  for (int i = 0; i < 24; ++i) a.data.push_back(static_cast<uint8_t>(i * 11));
  for (const char* name : {"a-idx3-ubyte", "a-idx3-ubyte.gz"}) {
    seqgan::write_idx(dir / name, a);
    const seqgan::IdxArray b = seqgan::read_idx(dir / name);
    EXPECT_EQ(b.dims, a.dims);
    EXPECT_EQ(b.data, a.data);
  }
  const std::vector<uint8_t> gz = read_bytes(dir / "a-idx3-ubyte.gz");
  EXPECT_EQ(gz[0], 0x1f);  // really compressed
  const std::vector<uint8_t> raw = read_bytes(dir / "a-idx3-ubyte");
  EXPECT_EQ(raw.size(), 4u + 12u + 24u);
  EXPECT_EQ(raw[3], 3);
}

TEST(Idx, BadMagicIsAnError) {
  std::vector<uint8_t> bytes = read_bytes(kData + "/idx/t10k-images-idx3-ubyte");
  bytes[2] = 0x0D;  // float elements
  expect_error([&] { seqgan::parse_idx(bytes.data(), bytes.size(), "bad.idx"); }, {"bad.idx", "magic", "0xd03"});
  bytes[2] = 0x08;
  bytes[0] = 0x1F;
  expect_error([&] { seqgan::parse_idx(bytes.data(), bytes.size(), "bad.idx"); }, {"bad.idx", "magic"});
  TempDir dir;
  write_bytes(dir / "png-idx3-ubyte", read_bytes(kData + "/images/grey.png"));
  expect_error([&] { seqgan::read_idx(dir / "png-idx3-ubyte"); }, {dir / "png-idx3-ubyte", "magic", "HINT"});
}

TEST(Idx, TruncatedOrPaddedIsAnError) {
  const std::vector<uint8_t> bytes = read_bytes(kData + "/idx/t10k-images-idx3-ubyte");
  const std::vector<uint8_t> cut(bytes.begin(), bytes.end() - 1);
  expect_error([&] { seqgan::parse_idx(cut.data(), cut.size(), "cut"); }, {"cut", "need 40", "found 39", "truncated"});
  const std::vector<uint8_t> header_only(bytes.begin(), bytes.begin() + 9);
  expect_error([&] { seqgan::parse_idx(header_only.data(), header_only.size(), "h"); }, {"3 dimensions"});
  std::vector<uint8_t> longer = bytes;
  longer.push_back(0);
  expect_error([&] { seqgan::parse_idx(longer.data(), longer.size(), "long"); }, {"trailing"});
  expect_error([&] { seqgan::parse_idx(bytes.data(), 2, "tiny"); }, {"4-byte"});

  const std::vector<uint8_t> gz = read_bytes(kData + "/idx/train-images-idx3-ubyte.gz");
  const std::vector<uint8_t> gz_cut(gz.begin(), gz.begin() + static_cast<std::ptrdiff_t>(gz.size() / 2));
  expect_error([&] { seqgan::parse_idx(gz_cut.data(), gz_cut.size(), "cut.gz"); }, {"cut.gz", "truncated"});
  std::vector<uint8_t> gz_bad = gz;
  gz_bad[gz.size() / 2] ^= 0xFF;
  expect_error([&] { seqgan::parse_idx(gz_bad.data(), gz_bad.size(), "bad.gz"); }, {"bad.gz"});
  std::vector<uint8_t> gz_junk = gz;
  gz_junk.push_back('x');
  expect_error([&] { seqgan::parse_idx(gz_junk.data(), gz_junk.size(), "junk.gz"); }, {"garbage"});
}

TEST(Idx, HugeDimensionsAreRefusedBeforeAllocating) {
  const std::vector<uint8_t> bytes = {0, 0, 8, 3, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
                                      0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3};
  expect_error([&] { seqgan::parse_idx(bytes.data(), bytes.size(), "huge"); }, {"huge", "limit"});
  const std::vector<uint8_t> big = {0, 0, 8, 1, 0, 1, 0, 0, 1, 2, 3};  // claims 65536 bytes, has 3
  expect_error([&] { seqgan::parse_idx(big.data(), big.size(), "big"); }, {"need 65536", "truncated"});
}

TEST(Idx, DatasetFromFixtureFolder) {
  const seqgan::IdxDataset train(seqgan::IdxDataset::find_split(kData + "/idx", "train").first,
                                 seqgan::IdxDataset::find_split(kData + "/idx", "train").second);
  ASSERT_EQ(train.size(), 3);
  EXPECT_EQ(train.height(), 4);
  EXPECT_EQ(train.width(), 5);
  EXPECT_EQ(train.num_classes(), 10);  // named "0".."9" up to the largest label
  const seqgan::RawExample r = train.load(1);
  EXPECT_EQ(r.label, 0);
  EXPECT_EQ(r.image.at(0, 0, 0), (7 * 20) % 256);
  EXPECT_EQ(r.image.at(3, 4, 0), (7 * 39) % 256);
  const seqgan::Example e = train.get(2);
  EXPECT_EQ(e.label, 9);
  EXPECT_EQ(e.image.sizes(), (std::vector<int64_t>{1, 4, 5}));
  expect_error([&] { train.load(3); }, {"index 3", "[0, 3)"});

  const auto test_files = seqgan::IdxDataset::find_split(kData + "/idx", "test");  // raw files
  EXPECT_EQ(seqgan::IdxDataset(test_files.first, test_files.second).size(), 2);
  expect_error([&] { seqgan::IdxDataset(test_files.first, test_files.second, {"only", "two"}); }, {"label 7"});
  expect_error([&] { seqgan::IdxDataset(test_files.first, kData + "/idx/train-labels-idx1-ubyte.gz"); },
               {"2 images", "3 labels"});
  expect_error([&] { seqgan::IdxDataset::find_split(kData + "/images", "train"); },
               {"train-images-idx3-ubyte.gz", "dataset-fashion-mnist"});
  expect_error([&] { seqgan::IdxDataset::find_split(kData + "/idx", "val"); }, {"\"val\""});
}

TEST(Idx, FashionMnistRealFiles) {
  if (!fs::is_directory(seqgan::kFashionMnistRoot)) {
    GTEST_SKIP() << seqgan::kFashionMnistRoot << " is absent (apt install dataset-fashion-mnist)";
  }
  const seqgan::FashionMnist train(seqgan::kFashionMnistRoot, "train");
  const seqgan::FashionMnist test(seqgan::kFashionMnistRoot, "test");
  EXPECT_EQ(train.size(), 60000);
  EXPECT_EQ(test.size(), 10000);
  EXPECT_EQ(train.height(), 28);
  EXPECT_EQ(train.width(), 28);
  EXPECT_EQ(train.num_classes(), 10);
  EXPECT_EQ(train.class_names()[0], "T-shirt/top");
  EXPECT_EQ(train.class_names()[9], "Ankle boot");
  std::vector<int> per_class(10, 0);
  for (int64_t i = 0; i < test.size(); ++i) ++per_class[static_cast<size_t>(test.load(i).label)];
  for (const int c : per_class) EXPECT_EQ(c, 1000);  // the test split is balanced
  const seqgan::Example e = train.get(0);
  EXPECT_EQ(e.image.sizes(), (std::vector<int64_t>{1, 28, 28}));
  EXPECT_GE(e.image.min().item<float>(), -1.0f);
  EXPECT_LE(e.image.max().item<float>(), 1.0f);
  EXPECT_GT(e.image.max().item<float>(), 0.0f);  // not a blank image
  EXPECT_EQ(train.load(0).label, 9);             // the first training image is an ankle boot
}

// --------------------------------------------------------------------------------- ImageFolder

TEST(ImageFolder, ClassesSortedAndStable) {
  TempDir dir;
  write_png_file(dir / "zebra/z1.png", 10);
  write_png_file(dir / "apple/deep/nested/a2.PNG", 20);
  write_png_file(dir / "apple/a1.png", 30);
  write_png_file(dir / "Mango/m1.png", 40);
  std::filesystem::copy_file(kData + "/images/rgb.jpg", dir / "Mango/m0.JPEG");
  write_bytes(dir / "apple/readme.txt", {'h', 'i'});
  write_png_file(dir / ".cache/hidden.png", 50);
  write_png_file(dir / "apple/.hidden.png", 50);
  fs::create_directories(dir / "notes");  // no images: not a class

  const seqgan::ImageFolder a(dir.path.string());
  EXPECT_EQ(a.class_names(), (std::vector<std::string>{"Mango", "apple", "zebra"}));  // byte-wise
  ASSERT_EQ(a.size(), 5);
  EXPECT_EQ(fs::path(a.path(0)).filename(), "m0.JPEG");
  EXPECT_EQ(fs::path(a.path(1)).filename(), "m1.png");
  EXPECT_EQ(fs::path(a.path(2)).filename(), "a1.png");
  EXPECT_EQ(fs::path(a.path(3)).filename(), "a2.PNG");
  EXPECT_EQ(a.label(0), 0);
  EXPECT_EQ(a.label(3), 1);
  EXPECT_EQ(a.label(4), 2);
  EXPECT_EQ(a.load(4).image.at(0, 0, 0), 10);
  EXPECT_EQ(a.load(0).image.width, 32);
  EXPECT_EQ(a.get(2).label, 1);

  const seqgan::ImageFolder b(dir.path.string(), {1, false});
  EXPECT_EQ(b.class_names(), a.class_names());
  for (int64_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(b.path(i), a.path(i));
    EXPECT_EQ(b.label(i), a.label(i));
  }
  EXPECT_EQ(b.load(1).image.channels, 1);

  a.write_class_list(dir / "run");
  const nlohmann::json j = nlohmann::json::parse(std::ifstream(dir / "run/classes.json"));
  EXPECT_EQ(j.at("classes").get<std::vector<std::string>>(), a.class_names());
}

TEST(ImageFolder, LooseImagesAreUnlabeled) {
  TempDir dir;
  write_png_file(dir / "b.png", 1);
  write_png_file(dir / "a.jpg.png", 2);
  fs::create_directories(dir / "empty");
  const seqgan::ImageFolder f(dir.path.string());
  EXPECT_EQ(f.size(), 2);
  EXPECT_EQ(f.num_classes(), 0);
  EXPECT_EQ(f.label(0), -1);
  EXPECT_EQ(f.load(0).image.at(0, 0, 0), 2);

  write_png_file(dir / "cls/c.png", 3);
  expect_error([&] { seqgan::ImageFolder g(dir.path.string()); }, {"mixes class folders", "HINT"});
  TempDir none;
  expect_error([&] { seqgan::ImageFolder g(none.path.string()); }, {"no images"});
  expect_error([&] { seqgan::ImageFolder g(none / "missing"); }, {"not a folder"});
}

TEST(ImageFolder, BadFileIsAnErrorNamingIt) {
  TempDir dir;
  write_png_file(dir / "a/0.png", 1);
  write_bytes(dir / "a/1.png", {0x89, 'P', 'N', 'G', 1, 2, 3});
  const seqgan::ImageFolder f(dir.path.string());
  EXPECT_EQ(f.load(0).image.at(0, 0, 0), 1);
  expect_error([&] { f.load(1); }, {dir / "a/1.png"});
}

TEST(ImageFolder, SkipBadSubstitutesDeterministicallyAndCounts) {
  TempDir dir;
  write_png_file(dir / "a/0.png", 10);
  write_bytes(dir / "a/1.png", {'n', 'o', 't'});
  const std::vector<uint8_t> jpg = read_bytes(kData + "/images/rgb.jpg");
  write_bytes(dir / "b/2.jpg", std::vector<uint8_t>(jpg.begin(), jpg.begin() + 300));  // cut short
  write_png_file(dir / "b/3.png", 30);
  const seqgan::ImageFolder f(dir.path.string(), {3, true});
  EXPECT_EQ(f.bad_count(), 0);
  const seqgan::RawExample r = f.load(1);  // 1 and 2 are bad -> 3
  EXPECT_EQ(r.image.at(0, 0, 0), 30);
  EXPECT_EQ(r.label, 1);
  EXPECT_EQ(f.bad_count(), 2);
  EXPECT_EQ(f.load(2).image.at(0, 0, 0), 30);
  EXPECT_EQ(f.load(1).image.at(0, 0, 0), 30);
  EXPECT_EQ(f.bad_count(), 2);  // counted once each
  EXPECT_EQ(f.bad_files().size(), 2u);

  auto shared = std::make_shared<seqgan::ImageFolder>(dir.path.string(), seqgan::ImageFolderOptions{3, true});
  seqgan::Loader loader(shared, {2, 2, 1, false, true, 0, 0, 1});
  const std::vector<seqgan::Batch> batches = drain(loader);
  ASSERT_EQ(batches.size(), 2u);
  EXPECT_EQ(batches[0].images[1][0][0][0].item<float>(), 30 / 127.5f - 1.0f);
  EXPECT_EQ(shared->bad_count(), 2);
}

// ---------------------------------------------------------------------------------- Transforms

TEST(Transform, PadsFashionMnist28To32) {
  seqgan::TransformOptions opt;
  opt.pad = 2;
  opt.resolution = 32;
  const seqgan::Transform t(opt);
  const Image out = t.apply(Image(28, 28, 1, 255), 1, 0, 0);
  ASSERT_EQ(out.width, 32);
  ASSERT_EQ(out.height, 32);
  EXPECT_EQ(out.at(0, 0, 0), 0);
  EXPECT_EQ(out.at(1, 31, 0), 0);
  EXPECT_EQ(out.at(2, 2, 0), 255);
  EXPECT_EQ(out.at(29, 29, 0), 255);
  EXPECT_EQ(out.at(30, 29, 0), 0);
  const at::Tensor x = seqgan::image_to_tensor(out);
  EXPECT_EQ(x[0][0][0].item<float>(), -1.0f);  // black border is -1
}

TEST(Transform, ResizeShortSideThenCenterCrop) {
  Image img(30, 20, 1);
  for (int y = 0; y < 20; ++y)
    for (int x = 0; x < 30; ++x) img.at(y, x, 0) = static_cast<uint8_t>(x);
  seqgan::TransformOptions opt;
  opt.resolution = 20;  // short side already 20: crop only
  const Image c = seqgan::Transform(opt).apply(img, 0, 0, 0);
  ASSERT_EQ(c.width, 20);
  ASSERT_EQ(c.height, 20);
  EXPECT_EQ(c.at(0, 0, 0), 5);
  EXPECT_EQ(c.at(7, 19, 0), 24);
  opt.resolution = 10;  // 30x20 -> 15x10 -> 10x10
  const Image d = seqgan::Transform(opt).apply(Image(30, 20, 3, 99), 0, 0, 0);
  EXPECT_EQ(d.width, 10);
  EXPECT_EQ(d.height, 10);
  EXPECT_EQ(d.channels, 3);
  EXPECT_EQ(d.pixels, std::vector<uint8_t>(300, 99));
  opt.center_crop = false;
  const Image e = seqgan::Transform(opt).apply(Image(30, 20, 1, 5), 0, 0, 0);
  EXPECT_EQ(e.width, 15);
  opt.channels = 3;
  EXPECT_EQ(seqgan::Transform(opt).apply(Image(30, 20, 1, 5), 0, 0, 0).channels, 3);
  expect_error([] { seqgan::TransformOptions o; o.random_crop = true; seqgan::Transform t(o); }, {"resolution"});
}

TEST(Transform, RandomnessIsPerSampleAndDeterministic) {
  Image img(40, 32, 1);
  for (int y = 0; y < 32; ++y)
    for (int x = 0; x < 40; ++x) img.at(y, x, 0) = static_cast<uint8_t>(x + 40 * (y % 4));
  seqgan::TransformOptions opt;
  opt.resolution = 32;
  opt.random_crop = true;
  opt.hflip = true;
  const seqgan::Transform t(opt);
  int flips = 0;
  std::set<int> offsets;
  for (int64_t i = 0; i < 400; ++i) {
    const Image a = t.apply(img, 7, 3, i);
    EXPECT_EQ(a.pixels, t.apply(img, 7, 3, i).pixels);
    ASSERT_EQ(a.width, 32);
    const int left = a.at(0, 0, 0), right = a.at(0, 31, 0);
    const bool flipped = left > right;
    flips += flipped;
    offsets.insert(flipped ? right : left);
    EXPECT_EQ(std::abs(right - left), 31);  // a contiguous crop of the ramp
  }
  EXPECT_GT(flips, 150);
  EXPECT_LT(flips, 250);
  EXPECT_EQ(offsets.size(), 9u);  // every x offset 0..8 occurs
  EXPECT_EQ(*offsets.rbegin(), 8);
  int differ_epoch = 0, differ_seed = 0;
  for (int64_t i = 0; i < 50; ++i) {
    differ_epoch += t.apply(img, 7, 3, i).pixels != t.apply(img, 7, 4, i).pixels;
    differ_seed += t.apply(img, 7, 3, i).pixels != t.apply(img, 8, 3, i).pixels;
  }
  EXPECT_GT(differ_epoch, 30);
  EXPECT_GT(differ_seed, 30);
  EXPECT_NE(seqgan::Transform::sample_seed(1, 2, 3), seqgan::Transform::sample_seed(1, 3, 2));
}

// -------------------------------------------------------------------------------------- Loader

TEST(Loader, DeterministicAcrossWorkerCounts) {
  auto data = std::make_shared<Synthetic>(103);
  seqgan::TransformOptions t;
  t.resolution = 10;
  t.random_crop = true;
  t.hflip = true;
  std::vector<std::vector<seqgan::Batch>> runs;
  for (const int workers : {0, 1, 3}) {
    seqgan::Loader loader(data, {8, workers, 2, true, true, 42, 0, 1}, t);
    EXPECT_EQ(loader.batches_per_epoch(), 12);
    loader.set_epoch(5);
    runs.push_back(drain(loader));
  }
  ASSERT_EQ(runs[0].size(), 12u);
  for (size_t r = 1; r < runs.size(); ++r) {
    ASSERT_EQ(runs[r].size(), runs[0].size());
    for (size_t k = 0; k < runs[0].size(); ++k) {
      EXPECT_EQ(runs[r][k].indices, runs[0][k].indices);
      EXPECT_EQ(runs[r][k].batch, static_cast<int64_t>(k));
      EXPECT_TRUE(at::equal(runs[r][k].images, runs[0][k].images)) << "run " << r << " batch " << k;
      EXPECT_TRUE(at::equal(runs[r][k].labels, runs[0][k].labels));
    }
  }
  const seqgan::Batch& b = runs[0][3];
  EXPECT_EQ(b.images.sizes(), (std::vector<int64_t>{8, 1, 10, 10}));
  EXPECT_EQ(b.labels.scalar_type(), at::kLong);
  EXPECT_EQ(b.labels[2].item<int64_t>(), b.indices[2] % 5);
  EXPECT_EQ(b.epoch, 5);
}

TEST(Loader, EpochOrderIsSeededShuffle) {
  auto data = std::make_shared<Synthetic>(50);
  seqgan::Loader loader(data, {10, 2, 2, true, true, 1, 0, 1});
  const std::vector<int64_t> e0 = loader.epoch_indices(0), e1 = loader.epoch_indices(1);
  EXPECT_NE(e0, e1);
  EXPECT_EQ(std::set<int64_t>(e0.begin(), e0.end()).size(), 50u);
  std::vector<int64_t> sorted = e0;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_NE(sorted, e0);  // really shuffled
  seqgan::Loader other(data, {10, 0, 1, true, true, 1, 0, 1});
  EXPECT_EQ(other.epoch_indices(1), e1);
  seqgan::Loader reseeded(data, {10, 0, 1, true, true, 2, 0, 1});
  EXPECT_NE(reseeded.epoch_indices(1), e1);
  seqgan::Loader plain(data, {10, 0, 1, false, true, 1, 0, 1});
  EXPECT_EQ(plain.epoch_indices(3), sorted);

  // next() starts epoch 0 by itself; the indices of the batches follow epoch_indices.
  const std::vector<seqgan::Batch> batches = drain(loader);
  ASSERT_EQ(batches.size(), 5u);
  std::vector<int64_t> seen;
  for (const auto& b : batches) seen.insert(seen.end(), b.indices.begin(), b.indices.end());
  EXPECT_EQ(seen, e0);
  seqgan::Batch extra;
  EXPECT_FALSE(loader.next(extra));  // stays at the end until the next epoch
}

TEST(Loader, ShardsAreDisjointAndCovering) {
  auto data = std::make_shared<Synthetic>(96);
  std::set<int64_t> all;
  for (int rank = 0; rank < 4; ++rank) {
    seqgan::Loader loader(data, {4, 1, 2, true, true, 9, rank, 4});
    EXPECT_EQ(loader.batches_per_epoch(), 6);
    loader.set_epoch(2);
    for (const auto& b : drain(loader)) {
      for (const int64_t i : b.indices) EXPECT_TRUE(all.insert(i).second) << "sample " << i << " twice";
    }
  }
  EXPECT_EQ(all.size(), 96u);

  // Without drop_last the order wraps around: every sample covered, all ranks equally long.
  auto odd = std::make_shared<Synthetic>(97);
  std::set<int64_t> covered;
  for (int rank = 0; rank < 4; ++rank) {
    seqgan::Loader loader(odd, {4, 2, 2, true, false, 9, rank, 4});
    EXPECT_EQ(loader.samples_per_rank(), 25);
    EXPECT_EQ(loader.batches_per_epoch(), 7);
    const auto batches = drain(loader);
    ASSERT_EQ(batches.size(), 7u);
    EXPECT_EQ(batches.back().images.size(0), 1);  // 25 = 6 * 4 + 1
    for (const auto& b : batches) covered.insert(b.indices.begin(), b.indices.end());
  }
  EXPECT_EQ(covered.size(), 97u);
  // With drop_last the ranks stay disjoint and drop the remainder.
  std::set<int64_t> dropped;
  for (int rank = 0; rank < 4; ++rank) {
    seqgan::Loader loader(odd, {4, 0, 1, true, true, 9, rank, 4});
    EXPECT_EQ(loader.samples_per_rank(), 24);
    for (const int64_t i : loader.epoch_indices(0)) EXPECT_TRUE(dropped.insert(i).second);
  }
  EXPECT_EQ(dropped.size(), 96u);
  expect_error([&] { seqgan::Loader l(odd, {4, 0, 1, true, true, 9, 4, 4}); }, {"rank"});
  expect_error([&] { seqgan::Loader l(odd, {200, 0, 1, true, true, 9, 0, 1}); }, {"at least one batch", "HINT"});
}

TEST(Loader, ResumesMidEpoch) {
  auto data = std::make_shared<Synthetic>(64);
  seqgan::TransformOptions t;
  t.resolution = 8;
  t.random_crop = true;
  seqgan::Loader full(data, {4, 2, 2, true, true, 3, 0, 1}, t);
  full.set_epoch(1);
  const auto all = drain(full);
  ASSERT_EQ(all.size(), 16u);

  seqgan::Loader resumed(data, {4, 3, 1, true, true, 3, 0, 1}, t);
  resumed.set_epoch(0);
  seqgan::Batch b;
  ASSERT_TRUE(resumed.next(b));  // switching epochs drops what was prepared
  resumed.start_epoch(1, 11);
  EXPECT_EQ(resumed.position(), 11);
  const auto rest = drain(resumed);
  ASSERT_EQ(rest.size(), 5u);
  for (size_t k = 0; k < rest.size(); ++k) {
    EXPECT_EQ(rest[k].batch, static_cast<int64_t>(11 + k));
    EXPECT_EQ(rest[k].indices, all[11 + k].indices);
    EXPECT_TRUE(at::equal(rest[k].images, all[11 + k].images));
  }
  EXPECT_EQ(resumed.position(), 16);
  EXPECT_EQ(resumed.epoch(), 1);
  expect_error([&] { resumed.start_epoch(1, 17); }, {"skip_batches"});
}

TEST(Loader, EarlyDestructionDoesNotHang) {
  auto data = std::make_shared<Synthetic>(1000);
  data->sleep_ms = 2;
  const auto start = std::chrono::steady_clock::now();
  {
    seqgan::Loader loader(data, {16, 4, 4, true, true, 0, 0, 1});
    seqgan::Batch b;
    ASSERT_TRUE(loader.next(b));
  }
  {
    seqgan::Loader never_used(data, {16, 4, 4, true, true, 0, 0, 1});
    never_used.set_epoch(3);
  }
  { seqgan::Loader not_started(data, {16, 2, 2, true, true, 0, 0, 1}); }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(seconds, 10.0);
  // The window is bounded: far fewer than 1000 samples were loaded.
  EXPECT_LT(data->loads.load(), 2 * 16 * 4 * 4 + 64);
}

TEST(Loader, WorkerExceptionReachesTheConsumer) {
  for (const int workers : {0, 3}) {
    auto data = std::make_shared<Synthetic>(40);
    data->throw_at = 37;
    seqgan::Loader loader(data, {4, workers, 2, false, true, 0, 0, 1});
    seqgan::Batch b;
    for (int k = 0; k < 9; ++k) ASSERT_TRUE(loader.next(b)) << k;  // batches 0..8 hold 0..35
    expect_error([&] { loader.next(b); }, {"synthetic failure at 37"});
    expect_error([&] { loader.next(b); }, {"synthetic failure at 37"});  // until the next epoch
    loader.start_epoch(1, 0);
    EXPECT_TRUE(loader.next(b));
  }
}

TEST(Loader, MismatchedSampleSizesNeedATransform) {
  auto data = std::make_shared<Synthetic>(8);
  data->odd_size_at = 5;
  seqgan::Loader loader(data, {8, 1, 1, false, true, 0, 0, 1});
  seqgan::Batch b;
  expect_error([&] { loader.next(b); }, {"sample 5", "13x13x1", "resolution"});
  seqgan::TransformOptions t;
  t.resolution = 12;
  seqgan::Loader fixed(data, {8, 1, 1, false, true, 0, 0, 1}, t);
  EXPECT_TRUE(fixed.next(b));
  EXPECT_EQ(b.images.sizes(), (std::vector<int64_t>{8, 1, 12, 12}));
  EXPECT_FLOAT_EQ(b.images[3][0][1][2].item<float>(), ((3 * 7 + 2 * 3 + 1 * 11) % 256) / 127.5f - 1.0f);
}
