// LMDB environments (LSUN's layout) and tar shards (webdataset's layout): pixels against Pillow's
// decoding of the same bytes, keys and labels, the tar reader and writer, pack_shards, and the
// loader's whole-shard order across ranks. The fixtures come from tools/lmdb_shard_fixtures.py.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include <unistd.h>

#include "data/tar.h"
#include "python_fixtures.h"
#include "file_bytes.h"
#include "remove_tree.h"
#include "seqgan/data.h"
#include "seqgan/error.h"
#include "seqgan/safetensors.h"

namespace fs = std::filesystem;
using seqgan::Image;
using seqgan::test::TempDir;

namespace {

struct Fixture {
  std::string dir;
  seqgan::safetensors::File file;
};

// The fixture folder and its expected.safetensors, made once per test binary (cached on disk per
// version of the script). Null when the script failed (the test has failed already then).
const Fixture* fixture() {
  static const Fixture* f = [] () -> const Fixture* {
    const std::string dir =
        seqgan::test::python_fixture_dir("lmdb_shards", {"lmdb_shard_fixtures.py", "weights_io.py"});
    if (dir.empty()) return nullptr;
    return new Fixture{dir, seqgan::safetensors::load(dir + "/expected.safetensors")};
  }();
  return f;
}

#define NEED_FIXTURE()                                  \
  const Fixture* fx = fixture();                        \
  if (fx == nullptr) GTEST_SKIP() << "no fixtures";     \
  const std::string& dir = fx->dir

at::Tensor expected(const Fixture& fx, const std::string& name) {
  const auto it = fx.file.tensors.find(name);
  if (it == fx.file.tensors.end()) throw std::runtime_error("no expected tensor " + name);
  return it->second;
}

std::vector<std::string> json_list(const Fixture& fx, const std::string& key) {
  return nlohmann::json::parse(fx.file.header.metadata.at(key)).get<std::vector<std::string>>();
}

// img equals Pillow's U8 pixels [H, W] or [H, W, C] exactly.
void expect_pixels(const Image& img, const at::Tensor& ref, const std::string& what) {
  const int64_t c = ref.dim() == 3 ? ref.size(2) : 1;
  ASSERT_EQ(img.height, ref.size(0)) << what;
  ASSERT_EQ(img.width, ref.size(1)) << what;
  ASSERT_EQ(img.channels, c) << what;
  const at::Tensor r = ref.contiguous();
  int64_t differ = 0;
  for (size_t i = 0; i < img.pixels.size(); ++i) differ += img.pixels[i] != r.data_ptr<uint8_t>()[i];
  EXPECT_EQ(differ, 0) << what << ": " << differ << " of " << img.pixels.size() << " bytes differ from Pillow's";
}

template <class F>
void expect_error(F f, std::vector<std::string> parts) {
  try {
    f();
    ADD_FAILURE() << "expected a seqgan::Error containing '" << (parts.empty() ? "" : parts[0]) << "'";
  } catch (const seqgan::Error& e) {
    for (const std::string& p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
  }
}

using seqgan::test::read_bytes;
using seqgan::test::write_bytes;

// Runs python3 code with arguments; true when it exits with status 0.
bool python_ok(const std::string& code, const std::vector<std::string>& args) {
  std::string cmd = "/usr/bin/python3 -c '" + code + "'";
  for (const std::string& a : args) cmd += " '" + a + "'";
  return std::system(cmd.c_str()) == 0;
}

std::vector<seqgan::Batch> drain(seqgan::Loader& loader) {
  std::vector<seqgan::Batch> out;
  seqgan::Batch b;
  while (loader.next(b)) out.push_back(b);
  return out;
}

std::vector<int64_t> flat_indices(const std::vector<seqgan::Batch>& batches) {
  std::vector<int64_t> out;
  for (const auto& b : batches) out.insert(out.end(), b.indices.begin(), b.indices.end());
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------------------- LMDB

TEST(Lmdb, LsunLayoutInKeyOrderWithPillowsPixels) {
  NEED_FIXTURE();
  const std::vector<std::string> keys = json_list(*fx, "lmdb_keys");
  const std::string path = dir + "/lmdb";
  seqgan::LmdbDataset data(path);
  ASSERT_EQ(data.size(), static_cast<int64_t>(keys.size()));
  EXPECT_EQ(data.num_classes(), 0);
  EXPECT_TRUE(data.class_names().empty());
  EXPECT_EQ(data.channels(), 3);
  EXPECT_EQ(data.description(), path);
  EXPECT_TRUE(data.shard_offsets().empty());
  for (int64_t i = 0; i < data.size(); ++i) {
    EXPECT_EQ(data.key(i), keys[static_cast<size_t>(i)]);
    EXPECT_EQ(data.item_name(i), path + "[" + keys[static_cast<size_t>(i)] + "]");
    const seqgan::RawExample ex = data.load(i);
    EXPECT_EQ(ex.label, -1);
    expect_pixels(ex.image, expected(*fx, "lmdb." + std::to_string(i)), data.item_name(i));
  }
  seqgan::ImageSourceOptions grey;
  grey.channels = 1;
  seqgan::LmdbDataset grey_data(path, grey);
  for (int64_t i = 0; i < grey_data.size(); ++i) {
    expect_pixels(grey_data.load(i).image, expected(*fx, "lmdb.grey." + std::to_string(i)), grey_data.item_name(i));
  }
  expect_error([&] { data.load(data.size()); }, {"index 12", path});
}

TEST(Lmdb, OpensTheDataFileAloneWithoutALockFile) {
  NEED_FIXTURE();
  TempDir tmp;
  fs::copy_file(dir + "/lmdb/data.mdb", tmp / "data.mdb");
  seqgan::LmdbDataset by_folder(tmp.path.string());
  seqgan::LmdbDataset by_file(tmp / "data.mdb");
  seqgan::LmdbDataset original(dir + "/lmdb");
  ASSERT_EQ(by_folder.size(), original.size());
  ASSERT_EQ(by_file.size(), original.size());
  for (int64_t i = 0; i < original.size(); ++i) {
    EXPECT_EQ(by_folder.read_bytes(i), original.read_bytes(i));
    EXPECT_EQ(by_file.read_bytes(i), original.read_bytes(i));
    EXPECT_EQ(by_file.key(i), original.key(i));
  }
  EXPECT_FALSE(fs::exists(tmp / "lock.mdb"));  // read-only, no lock file
  EXPECT_FALSE(fs::exists(tmp / "data.mdb-lock"));
}

TEST(Lmdb, ClassNameMakesEveryImageClassZero) {
  NEED_FIXTURE();
  seqgan::LmdbDataset data(dir + "/lmdb", {}, "bedroom");
  EXPECT_EQ(data.num_classes(), 1);
  EXPECT_EQ(data.class_names(), std::vector<std::string>{"bedroom"});
  for (int64_t i = 0; i < data.size(); ++i) {
    EXPECT_EQ(data.item_label(i), 0);
    EXPECT_EQ(data.load(i).label, 0);
  }
  EXPECT_EQ(data.get(3).label, 0);
}

TEST(Lmdb, FourThreadsReadTheSameBytes) {
  NEED_FIXTURE();
  const seqgan::LmdbDataset data(dir + "/lmdb");
  std::vector<std::vector<uint8_t>> serial;
  for (int64_t i = 0; i < data.size(); ++i) serial.push_back(data.read_bytes(i));
  std::vector<int> mismatches(4, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 25; ++round) {
        for (int64_t k = 0; k < data.size(); ++k) {
          const int64_t i = (k * 5 + t + round) % data.size();  // each thread its own order
          if (data.read_bytes(i) != serial[static_cast<size_t>(i)]) ++mismatches[static_cast<size_t>(t)];
        }
        if (data.load(round % data.size()).image.width != 40) ++mismatches[static_cast<size_t>(t)];
      }
    });
  }
  for (std::thread& th : threads) th.join();
  EXPECT_EQ(mismatches, std::vector<int>(4, 0));
}

TEST(Lmdb, OtherLayoutsAndOtherFilesAreClearErrors) {
  NEED_FIXTURE();
  const std::string hint = "for a folder of images use image-folder";
  {
    const std::string path = dir + "/lmdb_not_images";
    seqgan::LmdbDataset data(path);  // opens: the values are only decoded on load
    ASSERT_EQ(data.size(), 3);
    expect_error([&] { data.load(1); }, {path + "[" + data.key(1) + "]"});
  }
  expect_error([&] { seqgan::LmdbDataset d(dir + "/lmdb_subdb"); },
               {dir + "/lmdb_subdb", "another layout", "sub-database 'images'", hint});
  expect_error([&] { seqgan::LmdbDataset d(dir + "/lmdb_empty"); }, {dir + "/lmdb_empty", "empty", hint});
  expect_error([&] { seqgan::LmdbDataset d(dir + "/no-such-env"); }, {dir + "/no-such-env", "does not exist"});

  TempDir tmp;
  seqgan::write_png(tmp / "images/a.png", Image(4, 4, 3, 100));  // a folder of images
  expect_error([&] { seqgan::LmdbDataset d(tmp / "images"); }, {tmp / "images", "data.mdb", hint});
  std::vector<uint8_t> noise(20000);
  for (size_t i = 0; i < noise.size(); ++i) noise[i] = static_cast<uint8_t>((i * 2654435761u) >> 13);
  write_bytes(tmp / "noise.bin", noise);
  expect_error([&] { seqgan::LmdbDataset d(tmp / "noise.bin"); }, {tmp / "noise.bin", "MDB_INVALID", hint});
  write_bytes(tmp / "empty.mdb", {});
  expect_error([&] { seqgan::LmdbDataset d(tmp / "empty.mdb"); }, {tmp / "empty.mdb", "empty", hint});
  // A copy cut short: the header says more pages are in use than the file holds.
  std::vector<uint8_t> whole = read_bytes(dir + "/lmdb/data.mdb");
  ASSERT_GT(whole.size(), 3 * 4096u);
  whole.resize(whole.size() - 4096);
  fs::create_directories(tmp / "cut");
  write_bytes(tmp / "cut/data.mdb", whole);
  expect_error([&] { seqgan::LmdbDataset d(tmp / "cut"); }, {tmp / "cut/data.mdb", "truncated"});
}

TEST(Lmdb, SkipBadCountsAndNamesACorruptValue) {
  NEED_FIXTURE();
  const std::string path = dir + "/lmdb_one_bad";
  const std::string bad_key = fx->file.header.metadata.at("lmdb_one_bad_key");
  {
    seqgan::LmdbDataset strict(path);
    ASSERT_EQ(strict.key(2), bad_key);
    expect_error([&] { strict.load(2); }, {path + "[" + bad_key + "]"});
  }
  seqgan::ImageSourceOptions options;
  options.skip_bad = true;
  seqgan::LmdbDataset data(path, options);
  EXPECT_EQ(data.bad_count(), 0);
  const seqgan::RawExample substitute = data.load(2);
  EXPECT_EQ(substitute.image.pixels, data.load(3).image.pixels);  // the next decodable item
  EXPECT_EQ(data.bad_count(), 1);
  EXPECT_EQ(data.bad_items(), std::vector<std::string>{path + "[" + bad_key + "]"});
  data.load(2);
  EXPECT_EQ(data.bad_count(), 1);  // counted once
}

// -------------------------------------------------------------------------------------- shards

TEST(Shards, WebdatasetLayoutWithLabelsAndPillowsPixels) {
  NEED_FIXTURE();
  const std::string root = dir + "/shards";
  seqgan::ShardDataset data(root);
  const std::vector<std::string> members = json_list(*fx, "shard_members");
  const at::Tensor labels = expected(*fx, "shards.labels");
  const at::Tensor offsets = expected(*fx, "shards.offsets");
  ASSERT_EQ(data.size(), static_cast<int64_t>(members.size()));
  ASSERT_EQ(data.shards().size(), 3u);
  EXPECT_EQ(data.shards()[0], root + "/shard-000000.tar");
  EXPECT_EQ(data.shards()[2], root + "/shard-000002.tar");
  EXPECT_EQ(data.shard_offsets(), std::vector<int64_t>(offsets.data_ptr<int64_t>(),
                                                       offsets.data_ptr<int64_t>() + offsets.numel()));
  EXPECT_EQ(data.num_classes(), 4);
  EXPECT_EQ(data.class_names(), (std::vector<std::string>{"cat", "dog", "bird", "fish"}));
  EXPECT_EQ(data.description(), root);
  const std::vector<int64_t> offs = data.shard_offsets();
  for (int64_t i = 0; i < data.size(); ++i) {
    const size_t shard = static_cast<size_t>(std::upper_bound(offs.begin(), offs.end(), i) - offs.begin() - 1);
    EXPECT_EQ(data.item_name(i), data.shards()[shard] + "[" + members[static_cast<size_t>(i)] + "]");
    const seqgan::RawExample ex = data.load(i);
    EXPECT_EQ(ex.label, labels[i].item<int64_t>()) << data.item_name(i);
    EXPECT_EQ(data.item_label(i), ex.label);
    expect_pixels(ex.image, expected(*fx, "shards." + std::to_string(i)), data.item_name(i));
  }
  // The key whose .json came first keeps that place; the pax long name and the upper-case
  // extension are read.
  EXPECT_EQ(members[0], "k-first.png");
  EXPECT_GT(members[5].size(), 100u);

  // One shard file alone: classes.json beside it still names the classes.
  seqgan::ShardDataset one(root + "/shard-000001.tar");
  EXPECT_EQ(one.size(), offs[2] - offs[1]);
  EXPECT_EQ(one.shard_offsets(), (std::vector<int64_t>{0, offs[2] - offs[1]}));
  EXPECT_EQ(one.num_classes(), 4);
  EXPECT_EQ(one.read_bytes(0), data.read_bytes(offs[1]));
}

TEST(Shards, BadShardsAreErrorsNamingTheShard) {
  NEED_FIXTURE();
  const std::string bad = dir + "/bad/";
  auto open = [](const std::string& path) { return [path] { seqgan::ShardDataset d(path); }; };
  expect_error(open(bad + "empty.tar"), {bad + "empty.tar", "an empty shard", "0 bytes"});
  expect_error(open(bad + "zeros.tar"), {bad + "zeros.tar", "an empty shard"});
  expect_error(open(bad + "cut.tar"), {bad + "cut.tar", "b.jpg", "truncated", "header at byte"});
  expect_error(open(bad + "txt_only.tar"), {bad + "txt_only.tar", "no image member", "HINT"});
  expect_error(open(bad + "checksum.tar"), {bad + "checksum.tar", "checksum", "byte 0"});
  expect_error(open(bad + "two_images.tar"), {bad + "two_images.tar", "dup.jpg", "dup.png"});
  expect_error(open(bad + "mixed.tar"), {bad + "mixed.tar[a.jpg]", bad + "mixed.tar[b.jpg]", "HINT"});
  expect_error(open(bad + "bad_cls.tar"), {bad + "bad_cls.tar", "a.cls", "3x"});
  expect_error(open(dir + "/bad_classes"), {dir + "/bad_classes/classes.json", "2 classes", "class id 3"});
  expect_error(open(dir + "/lmdb"), {dir + "/lmdb", "no .tar files", "image-folder"});
  expect_error(open(dir + "/no-such-shards"), {dir + "/no-such-shards", "does not exist"});
}

TEST(Shards, ASkippedBadImageIsNamedByShardAndMember) {
  TempDir tmp;
  seqgan::TarWriter w(tmp / "s.tar");
  const std::vector<uint8_t> good = seqgan::encode_png(Image(5, 4, 3, 90));
  w.add("a.png", good.data(), good.size());
  w.add("b.png", "not a png at all");
  w.add("c.png", good.data(), good.size());
  w.finish();
  seqgan::ImageSourceOptions options;
  options.skip_bad = true;
  seqgan::ShardDataset data(tmp / "s.tar", options);
  ASSERT_EQ(data.size(), 3);
  EXPECT_EQ(data.load(1).image.width, 5);
  EXPECT_EQ(data.bad_items(), std::vector<std::string>{(tmp / "s.tar") + "[b.png]"});
  seqgan::ShardDataset strict(tmp / "s.tar");
  expect_error([&] { strict.load(1); }, {(tmp / "s.tar") + "[b.png]"});
}

// ----------------------------------------------------------------------------------------- tar

TEST(Tar, WriterRoundTripsLongNamesAndPythonReadsIt) {
  TempDir tmp;
  const std::string path = tmp / "t.tar";
  const std::string long_name = std::string(60, 'd') + "/" + std::string(70, 'e') + ".webp";
  std::vector<uint8_t> big(1300);
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<uint8_t>(i * 7);
  {
    seqgan::TarWriter w(path);
    w.add("a.cls", "7");
    w.add(long_name, big.data(), big.size());
    w.add("empty.txt", "");
    EXPECT_TRUE(fs::exists(path + ".tmp." + std::to_string(::getpid())));
    EXPECT_FALSE(fs::exists(path));  // only complete archives appear under their name
    w.finish();
  }
  EXPECT_EQ(fs::file_size(path) % 10240, 0u);
  const seqgan::TarFile file(path);
  const std::vector<seqgan::TarEntry> entries = file.index();
  ASSERT_EQ(entries.size(), 3u);
  EXPECT_EQ(entries[0].name, "a.cls");
  EXPECT_EQ(entries[1].name, long_name);
  EXPECT_EQ(entries[2].name, "empty.txt");
  EXPECT_EQ(entries[2].size, 0u);
  EXPECT_EQ(file.read(entries[1].offset, entries[1].size, "test"), big);
  const std::vector<uint8_t> cls = file.read(entries[0].offset, entries[0].size, "test");
  EXPECT_EQ(std::string(cls.begin(), cls.end()), "7");
  EXPECT_TRUE(python_ok("import sys, tarfile\n"
                        "t = tarfile.open(sys.argv[1])\n"
                        "names = t.getnames()\n"
                        "ok = names == [\"a.cls\", sys.argv[2], \"empty.txt\"] and t.extractfile(sys.argv[2]).read() == bytes(i * 7 % 256 for i in range(1300))\n"
                        "sys.exit(0 if ok else 1)",
                        {path, long_name}))
      << "Python's tarfile does not read " << path << " back";

  {
    seqgan::TarWriter abandoned(tmp / "gone.tar");
    abandoned.add("x.cls", "1");
  }  // never finished: nothing left behind
  for (const auto& e : fs::directory_iterator(tmp.path)) EXPECT_EQ(e.path().filename(), "t.tar");
}

TEST(Tar, MalformedArchivesInMemoryAreErrorsWithTheOffset) {
  TempDir tmp;
  {
    seqgan::TarWriter w(tmp / "t.tar");
    w.add("a.jpg", std::string(700, 'x'));
    w.add("b.cls", "2");
    w.finish();
  }
  const std::vector<uint8_t> good = read_bytes(tmp / "t.tar");
  auto index = [](std::vector<uint8_t> bytes) {
    return [bytes] { seqgan::index_tar(bytes.data(), bytes.size(), "mem.tar"); };
  };
  ASSERT_EQ(seqgan::index_tar(good.data(), good.size(), "mem.tar").size(), 2u);
  EXPECT_EQ(seqgan::index_tar(good.data(), good.size(), "mem.tar")[1].offset, 512u + 1024u + 512u);

  // Rewrites the checksum of the header at `at` after a change to another field.
  auto rechecksum = [](std::vector<uint8_t>& bytes, size_t at) {
    std::memset(&bytes[at + 148], ' ', 8);
    unsigned sum = 0;
    for (size_t i = 0; i < 512; ++i) sum += bytes[at + i];
    std::snprintf(reinterpret_cast<char*>(&bytes[at + 148]), 8, "%06o", sum);
  };
  std::vector<uint8_t> b = good;
  std::memcpy(&b[1536 + 124], "0000000009x", 11);  // b.cls's size field: not octal
  rechecksum(b, 1536);
  expect_error(index(b), {"mem.tar", "size field", "0000000009x", "byte 1536"});
  b = good;
  b[1536 + 5] ^= 1;  // b.cls's name changed: the checksum no longer matches
  expect_error(index(b), {"mem.tar", "checksum", "byte 1536"});
  b.assign(good.begin(), good.begin() + 1536 + 300);  // cut inside the second header
  expect_error(index(b), {"mem.tar", "ends inside a header", "byte 1536"});
  b.assign(good.begin(), good.begin() + 900);  // cut inside a.jpg's data
  expect_error(index(b), {"mem.tar", "a.jpg", "700 bytes", "truncated", "byte 0"});
  expect_error(index({}), {"mem.tar", "an empty shard"});
  expect_error(index(std::vector<uint8_t>(10240, 0)), {"mem.tar", "an empty shard"});

  // A pax header without a member after it, and a malformed pax record.
  auto header = [](const std::string& name, uint64_t size, char type) {
    std::vector<uint8_t> h(512, 0);
    std::memcpy(h.data(), name.data(), name.size());
    std::snprintf(reinterpret_cast<char*>(&h[124]), 12, "%011llo", static_cast<unsigned long long>(size));
    h[156] = static_cast<uint8_t>(type);
    std::memcpy(&h[257], "ustar\0" "00", 8);
    std::memset(&h[148], ' ', 8);
    unsigned sum = 0;
    for (const uint8_t c : h) sum += c;
    std::snprintf(reinterpret_cast<char*>(&h[148]), 8, "%06o", sum);
    return h;
  };
  auto block = [](const std::string& text) {
    std::vector<uint8_t> d(text.begin(), text.end());
    d.resize((d.size() + 511) / 512 * 512, 0);
    return d;
  };
  const std::string record = "30 path=some/long/name.jpg\n";  // 27 bytes, not 30
  std::vector<uint8_t> pax = header("pax", record.size(), 'x');
  const std::vector<uint8_t> rec = block(record);
  pax.insert(pax.end(), rec.begin(), rec.end());
  expect_error(index(pax), {"mem.tar", "malformed pax record", "byte 0"});
  const std::string ok_record = "27 path=some/long/name.jpg\n";
  std::vector<uint8_t> dangling = header("pax", ok_record.size(), 'x');
  const std::vector<uint8_t> ok_rec = block(ok_record);
  dangling.insert(dangling.end(), ok_rec.begin(), ok_rec.end());
  expect_error(index(dangling), {"mem.tar", "not followed by a member"});
  std::vector<uint8_t> fine = dangling;
  const std::vector<uint8_t> member = header("short.jpg", 3, '0'), data = block("abc");
  fine.insert(fine.end(), member.begin(), member.end());
  fine.insert(fine.end(), data.begin(), data.end());
  const auto entries = seqgan::index_tar(fine.data(), fine.size(), "mem.tar");
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].name, "some/long/name.jpg");
  EXPECT_EQ(entries[0].size, 3u);
  // Sizes past the end of the data, and pax headers too large to hold, are refused before
  // anything is read into memory.
  std::vector<uint8_t> huge = header("pax", uint64_t{1} << 32, 'x');
  huge.resize(huge.size() + 4096, 0);
  expect_error(index(huge), {"mem.tar", "truncated"});
  huge = header("pax", size_t{2} << 20, 'x');
  huge.resize(huge.size() + (size_t{2} << 20), 0);
  expect_error(index(huge), {"mem.tar", "pax extended header", "most accepted"});
}

// ---------------------------------------------------------------------------------- pack_shards

namespace {

// A labeled ImageFolder of `n` PNGs of varying size and colour in class folders cat/ and dog/.
void write_folder(const fs::path& root, int n) {
  for (int i = 0; i < n; ++i) {
    Image img(6 + i % 3, 5 + i % 2, 3);
    for (size_t p = 0; p < img.pixels.size(); ++p) img.pixels[p] = static_cast<uint8_t>(i * 31 + p * 7);
    seqgan::write_png((root / (i % 2 ? "dog" : "cat") / ("img" + std::to_string(i) + ".png")).string(), img);
  }
}

// The data-set index a packed member's key names ("00000012.png" -> 12).
int64_t key_index(const std::string& item_name) {
  const size_t open = item_name.rfind('[');
  return std::stoll(item_name.substr(open + 1, item_name.find('.', open) - open - 1));
}

}  // namespace

TEST(PackShards, RoundTripFromAnImageFolderInTheSeedsOrder) {
  TempDir tmp;
  write_folder(tmp.path / "folder", 7);
  const seqgan::ImageFolder folder((tmp.path / "folder").string());
  seqgan::PackShardsOptions options;
  options.per_shard = 3;
  options.seed = 5;
  const std::vector<std::string> paths = seqgan::pack_shards(folder, tmp / "out", options);
  ASSERT_EQ(paths, (std::vector<std::string>{tmp / "out/shard-000000.tar", tmp / "out/shard-000001.tar",
                                             tmp / "out/shard-000002.tar"}));
  EXPECT_TRUE(fs::exists(tmp / "out/classes.json"));

  const seqgan::ShardDataset shards(tmp / "out");
  ASSERT_EQ(shards.size(), 7);
  EXPECT_EQ(shards.shard_offsets(), (std::vector<int64_t>{0, 3, 6, 7}));
  EXPECT_EQ(shards.class_names(), (std::vector<std::string>{"cat", "dog"}));
  std::vector<int64_t> order;
  for (int64_t j = 0; j < shards.size(); ++j) {
    const int64_t i = key_index(shards.item_name(j));
    order.push_back(i);
    EXPECT_NE(shards.item_name(j).find(seqgan::str("[0000000", i, ".png]")), std::string::npos) << shards.item_name(j);
    const seqgan::RawExample a = shards.load(j), b = folder.load(i);
    EXPECT_EQ(a.image.pixels, b.image.pixels) << shards.item_name(j);
    EXPECT_EQ(a.label, b.label) << shards.item_name(j);
    EXPECT_EQ(shards.read_bytes(j), folder.read_bytes(i));  // the stored bytes, not re-encoded
  }
  std::vector<int64_t> sorted = order;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(sorted, (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6}));
  EXPECT_NE(order, sorted);  // shuffled

  // Python's tarfile lists what was written: KEY.png then KEY.cls per image.
  std::string expected_names;
  for (int j = 0; j < 3; ++j) {
    const std::string key = shards.item_name(j).substr(shards.item_name(j).rfind('[') + 1, 8);
    expected_names += (j ? "," : "") + key + ".png," + key + ".cls";
  }
  EXPECT_TRUE(python_ok("import sys, tarfile\n"
                        "names = tarfile.open(sys.argv[1]).getnames()\n"
                        "sys.exit(0 if names == sys.argv[2].split(\",\") else 1)",
                        {paths[0], expected_names}))
      << "Python's tarfile does not list " << expected_names << " in " << paths[0];

  // The same seed gives the same bytes; another seed another order; no shuffle the folder's.
  seqgan::pack_shards(folder, tmp / "again", options);
  for (int s = 0; s < 3; ++s) {
    const std::string name = "/shard-00000" + std::to_string(s) + ".tar";
    EXPECT_EQ(read_bytes((tmp / "out") + name), read_bytes((tmp / "again") + name));
  }
  options.seed = 6;
  seqgan::pack_shards(folder, tmp / "other", options);
  const seqgan::ShardDataset other(tmp / "other");
  std::vector<int64_t> other_order;
  for (int64_t j = 0; j < other.size(); ++j) other_order.push_back(key_index(other.item_name(j)));
  EXPECT_NE(other_order, order);
  options.shuffle = false;
  options.per_shard = 100;
  options.prefix = "plain";
  EXPECT_EQ(seqgan::pack_shards(folder, tmp / "plain", options), std::vector<std::string>{tmp / "plain/plain-000000.tar"});
  const seqgan::ShardDataset plain(tmp / "plain");
  for (int64_t j = 0; j < plain.size(); ++j) EXPECT_EQ(key_index(plain.item_name(j)), j);

  // A folder that already holds shards would mix two packs into one data set.
  expect_error([&] { seqgan::pack_shards(folder, tmp / "out", options); }, {tmp / "out", "already holds", ".tar'", "HINT"});
}

TEST(PackShards, KeepsLmdbBytesAndEncodesOtherDataSetsAsPng) {
  NEED_FIXTURE();
  TempDir tmp;
  const seqgan::LmdbDataset lmdb(dir + "/lmdb");
  seqgan::PackShardsOptions options;
  options.per_shard = 5;
  ASSERT_EQ(seqgan::pack_shards(lmdb, tmp / "lsun", options).size(), 3u);
  EXPECT_FALSE(fs::exists(tmp / "lsun/classes.json"));  // unlabeled: no classes, no .cls
  const seqgan::ShardDataset shards(tmp / "lsun");
  ASSERT_EQ(shards.size(), lmdb.size());
  EXPECT_EQ(shards.num_classes(), 0);
  std::set<std::string> extensions;
  for (int64_t j = 0; j < shards.size(); ++j) {
    const int64_t i = key_index(shards.item_name(j));
    EXPECT_EQ(shards.read_bytes(j), lmdb.read_bytes(i));
    EXPECT_EQ(shards.item_label(j), -1);
    const std::string name = shards.item_name(j);
    extensions.insert(name.substr(name.rfind('.') + 1));
  }
  EXPECT_EQ(extensions, (std::set<std::string>{"jpg]", "png]", "webp]"}));

  // IDX data (no stored bytes): PNGs of the decoded images, labels kept.
  const std::string idx = std::string(SEQGAN_TEST_DATA_DIR) + "/idx";
  const auto files = seqgan::IdxDataset::find_split(idx, "train");
  const seqgan::IdxDataset mnist(files.first, files.second);
  options.per_shard = 2;
  seqgan::pack_shards(mnist, tmp / "idx", options);
  const seqgan::ShardDataset packed(tmp / "idx");
  ASSERT_EQ(packed.size(), mnist.size());
  EXPECT_EQ(packed.class_names(), mnist.class_names());
  seqgan::ImageSourceOptions grey;
  grey.channels = 1;
  const seqgan::ShardDataset packed_grey(tmp / "idx", grey);
  for (int64_t j = 0; j < packed.size(); ++j) {
    const int64_t i = key_index(packed.item_name(j));
    EXPECT_NE(packed.item_name(j).find(".png]"), std::string::npos);
    EXPECT_EQ(packed_grey.load(j).image.pixels, mnist.load(i).image.pixels);
    EXPECT_EQ(packed.load(j).label, mnist.load(i).label);
  }
}

// -------------------------------------------------------------------------------------- loader

namespace {

// Grey 2x2 samples whose pixels encode the index, in shards of the given sizes.
class ShardedSynthetic : public seqgan::Dataset {
 public:
  explicit ShardedSynthetic(std::vector<int64_t> sizes) {
    offsets_.push_back(0);
    for (const int64_t s : sizes) offsets_.push_back(offsets_.back() + s);
  }
  int64_t size() const override { return offsets_.back(); }
  seqgan::RawExample load(int64_t i) const override {
    check_index(i);
    return {Image(2, 2, 1, static_cast<uint8_t>(i)), i % 3};
  }
  int num_classes() const override { return 3; }
  std::vector<std::string> class_names() const override { return {"a", "b", "c"}; }
  int channels() const override { return 1; }
  std::string description() const override { return "sharded synthetic"; }
  std::vector<int64_t> shard_offsets() const override { return offsets_; }
  int64_t shard_of(int64_t i) const {
    return std::upper_bound(offsets_.begin(), offsets_.end(), i) - offsets_.begin() - 1;
  }

 private:
  std::vector<int64_t> offsets_;
};

}  // namespace

TEST(ShardLoader, RanksOwnWholeShardsInAShuffledOrder) {
  // 36 samples in 7 shards: rank 0 owns shards 0, 2, 4, 6 (17 samples), rank 1 shards 1, 3, 5 (19).
  auto data = std::make_shared<ShardedSynthetic>(std::vector<int64_t>{5, 6, 4, 7, 5, 6, 3});
  std::vector<std::set<int64_t>> seen(2);
  std::vector<std::vector<int64_t>> epoch3(2);
  for (int rank = 0; rank < 2; ++rank) {
    seqgan::Loader loader(data, {4, 2, 2, true, true, 11, rank, 2});
    EXPECT_EQ(loader.samples_per_rank(), 17);  // the smallest rank's total
    EXPECT_EQ(loader.batches_per_epoch(), 4);
    for (int64_t epoch = 0; epoch < 4; ++epoch) {
      const std::vector<int64_t> order = loader.epoch_indices(epoch);
      ASSERT_EQ(order.size(), 17u);
      // Whole shards one after another: the shard changes only between runs.
      std::set<int64_t> finished;
      for (size_t k = 0; k < order.size(); ++k) {
        const int64_t s = data->shard_of(order[k]);
        EXPECT_EQ(s % 2, rank) << "rank " << rank << " got sample " << order[k] << " of shard " << s;
        if (k > 0 && data->shard_of(order[k - 1]) != s) {
          EXPECT_TRUE(finished.insert(data->shard_of(order[k - 1])).second);
        }
        EXPECT_EQ(finished.count(s), 0u) << "shard " << s << " visited twice in epoch " << epoch;
        seen[static_cast<size_t>(rank)].insert(order[k]);
      }
      EXPECT_EQ(std::set<int64_t>(order.begin(), order.end()).size(), order.size());
    }
    loader.set_epoch(3);
    epoch3[static_cast<size_t>(rank)] = flat_indices(drain(loader));
    // The batches are the order's first batches_per_epoch * batch_size samples (drop_last).
    const std::vector<int64_t> order3 = loader.epoch_indices(3);
    EXPECT_EQ(epoch3[static_cast<size_t>(rank)], std::vector<int64_t>(order3.begin(), order3.begin() + 16));
    EXPECT_NE(loader.epoch_indices(3), loader.epoch_indices(4));
  }
  for (const int64_t i : seen[0]) EXPECT_EQ(seen[1].count(i), 0u) << "sample " << i << " on both ranks";
  EXPECT_EQ(seen[0].size(), 17u);
  // Rank 1 takes 17 of its 19 samples per epoch, but which ones changes with the epoch's order.
  seqgan::Loader rank1(data, {4, 0, 1, true, true, 11, 1, 2});
  for (int64_t epoch = 4; epoch < 30; ++epoch) {
    for (const int64_t i : rank1.epoch_indices(epoch)) seen[1].insert(i);
  }
  EXPECT_EQ(seen[1].size(), 19u);

  // Deterministic for a seed, whatever the number of workers; another seed, another order.
  seqgan::Loader serial(data, {4, 0, 1, true, true, 11, 1, 2});
  serial.set_epoch(3);
  EXPECT_EQ(flat_indices(drain(serial)), epoch3[1]);
  seqgan::Loader reseeded(data, {4, 0, 1, true, true, 12, 1, 2});
  EXPECT_NE(reseeded.epoch_indices(3), epoch3[1]);
}

TEST(ShardLoader, WithoutDropLastRanksWrapToTheLargestTotal) {
  auto data = std::make_shared<ShardedSynthetic>(std::vector<int64_t>{5, 6, 4, 7, 5, 6, 3});
  seqgan::Loader rank0(data, {4, 1, 2, true, false, 3, 0, 2});
  seqgan::Loader rank1(data, {4, 1, 2, true, false, 3, 1, 2});
  EXPECT_EQ(rank0.samples_per_rank(), 19);
  EXPECT_EQ(rank1.samples_per_rank(), 19);
  EXPECT_EQ(rank0.batches_per_epoch(), 5);
  EXPECT_EQ(rank1.batches_per_epoch(), 5);
  const std::vector<int64_t> order = rank0.epoch_indices(0);
  ASSERT_EQ(order.size(), 19u);
  // Rank 0's 17 samples, then its first two again.
  EXPECT_EQ(std::set<int64_t>(order.begin(), order.end()).size(), 17u);
  EXPECT_EQ(order[17], order[0]);
  EXPECT_EQ(order[18], order[1]);
  const auto batches = drain(rank0);
  ASSERT_EQ(batches.size(), 5u);
  EXPECT_EQ(batches.back().images.size(0), 3);  // 19 = 4 * 4 + 3

  // Without shuffle: the rank's shards in order, their samples in index order.
  seqgan::Loader plain(data, {4, 0, 1, false, true, 3, 1, 2});
  std::vector<int64_t> want;
  for (int64_t i = 5; i < 11; ++i) want.push_back(i);   // shard 1
  for (int64_t i = 15; i < 22; ++i) want.push_back(i);  // shard 3
  for (int64_t i = 27; i < 31; ++i) want.push_back(i);  // shard 5, cut to 17
  EXPECT_EQ(plain.epoch_indices(0), want);
}

TEST(ShardLoader, FewerShardsThanRanksIsAnError) {
  auto data = std::make_shared<ShardedSynthetic>(std::vector<int64_t>{5, 6, 4});
  expect_error([&] { seqgan::Loader l(data, {2, 0, 1, true, true, 0, 0, 4}); },
               {"sharded synthetic", "3 shard(s)", "4 ranks", "HINT"});
  expect_error([&] { seqgan::Loader l(data, {5, 0, 1, true, true, 0, 1, 3}); }, {"at least one batch"});
}

TEST(ShardLoader, ResumesMidEpochOverRealShards) {
  TempDir tmp;
  write_folder(tmp.path / "folder", 20);
  const seqgan::ImageFolder folder((tmp.path / "folder").string());
  seqgan::PackShardsOptions pack;
  pack.per_shard = 3;  // 7 shards: 3,3,3,3,3,3,2
  seqgan::pack_shards(folder, tmp / "shards", pack);
  auto data = std::make_shared<seqgan::ShardDataset>(tmp / "shards");
  ASSERT_EQ(data->shard_offsets().size(), 8u);
  seqgan::TransformOptions t;
  t.resolution = 4;
  t.random_crop = true;
  std::vector<std::set<int64_t>> ranks(2);
  for (int rank = 0; rank < 2; ++rank) {
    seqgan::Loader full(data, {2, 2, 2, true, true, 4, rank, 2}, t);
    EXPECT_EQ(full.samples_per_rank(), 9);  // rank 0: 3+3+3+2 = 11, rank 1: 9
    EXPECT_EQ(full.batches_per_epoch(), 4);
    full.set_epoch(2);
    const auto all = drain(full);
    ASSERT_EQ(all.size(), 4u);
    for (const auto& b : all) {
      for (const int64_t i : b.indices) {
        const std::string name = data->item_name(i);
        const int64_t shard = std::stoll(name.substr(name.find("shard-") + 6, 6));
        EXPECT_EQ(shard % 2, rank) << name;
        ranks[static_cast<size_t>(rank)].insert(i);
      }
    }
    seqgan::Loader resumed(data, {2, 3, 1, true, true, 4, rank, 2}, t);
    resumed.start_epoch(2, 1);
    const auto rest = drain(resumed);
    ASSERT_EQ(rest.size(), 3u);
    for (size_t k = 0; k < rest.size(); ++k) {
      EXPECT_EQ(rest[k].batch, static_cast<int64_t>(k + 1));
      EXPECT_EQ(rest[k].indices, all[k + 1].indices);
      EXPECT_TRUE(at::equal(rest[k].images, all[k + 1].images));
      EXPECT_TRUE(at::equal(rest[k].labels, all[k + 1].labels));
    }
  }
  for (const int64_t i : ranks[0]) EXPECT_EQ(ranks[1].count(i), 0u);
}
