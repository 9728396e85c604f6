// safetensors: exact values against files Python wrote, Python checking files we wrote, and
// bad input that must end in a seqgan::Error.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <nlohmann/json.hpp>

#include "remove_tree.h"
#include "seqgan/checkpoint.h"
#include "seqgan/error.h"
#include "seqgan/safetensors.h"

namespace st = seqgan::safetensors;
namespace fs = std::filesystem;

namespace {

const std::string kFixtures = std::string(SEQGAN_TEST_DATA_DIR) + "/safetensors";

// A fresh directory per test, removed afterwards.
using seqgan::test::TempDir;

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

// An image with the given header text; `length` overrides the header length field.
std::vector<uint8_t> image(const std::string& header, std::size_t data_bytes = 0, int64_t length = -1) {
  const uint64_t n = length < 0 ? header.size() : static_cast<uint64_t>(length);
  std::vector<uint8_t> out;
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(n >> (8 * i)));
  out.insert(out.end(), header.begin(), header.end());
  out.resize(out.size() + data_bytes, 0);
  return out;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const seqgan::Error& e) {
    return e.what();
  }
  return "<no seqgan::Error thrown>";
}

// Bad bytes must fail the same way in memory and on disk, naming the file and each `part`.
void expect_rejected(const std::vector<uint8_t>& bytes, const std::vector<std::string>& parts) {
  TempDir dir;
  const std::string path = dir.file("bad.safetensors");
  write_bytes(path, bytes);
  const std::string in_memory = error_of([&] { st::parse(bytes.data(), bytes.size(), "bad-memory"); });
  const std::string on_disk = error_of([&] { st::load(path); });
  const std::string header_only = error_of([&] { st::read_header(path); });
  EXPECT_NE(in_memory.find("bad-memory"), std::string::npos) << in_memory;
  EXPECT_NE(on_disk.find(path), std::string::npos) << on_disk;
  EXPECT_NE(on_disk.find("HINT"), std::string::npos) << on_disk;
  for (const auto& part : parts) {
    EXPECT_NE(in_memory.find(part), std::string::npos) << "expected '" << part << "' in: " << in_memory;
    EXPECT_NE(on_disk.find(part), std::string::npos) << "expected '" << part << "' in: " << on_disk;
  }
  (void)header_only;
}

// The tensors tools/safetensors_fixtures.py calls EXPECTED, built here independently.
st::TensorMap expected_tensors() {
  auto f = [](std::vector<double> v, at::IntArrayRef shape, at::ScalarType type) {
    return torch::tensor(v, torch::kDouble).reshape(shape).to(type);
  };
  auto i = [](std::vector<int64_t> v, at::IntArrayRef shape, at::ScalarType type) {
    return torch::tensor(v, torch::kLong).reshape(shape).to(type);
  };
  st::TensorMap m;
  m["f64"] = f({0.1, -2.5, 1e300}, {3}, torch::kDouble);
  m["f32"] = torch::tensor({0.0f, -1.5f, 2.25f, 1024.0f, -0.125f, 0.1f}).reshape({2, 3});
  m["f16"] = f({0.5, -2.0, 65504.0, std::ldexp(1.0, -14)}, {4}, torch::kHalf);
  m["bf16"] = f({1.0, -0.5, 256.0, std::ldexp(1.0, -7)}, {2, 2}, torch::kBFloat16);
  m["i64"] = i({INT64_MIN, INT64_MAX, 42}, {3}, torch::kLong);
  m["i32"] = i({INT32_MIN, INT32_MAX, 7, -7}, {2, 2}, torch::kInt);
  m["u8"] = i({0, 1, 127, 128, 255}, {5}, torch::kByte);
  m["bool"] = torch::tensor({true, false, false, true});
  m["scalar"] = torch::tensor(42.0f);
  m["empty"] = torch::empty({0, 3});
  return m;
}

void expect_same_tensors(const st::TensorMap& got, const st::TensorMap& want) {
  ASSERT_EQ(got.size(), want.size());
  for (const auto& [name, w] : want) {
    ASSERT_TRUE(got.count(name)) << "missing " << name;
    const at::Tensor& g = got.at(name);
    EXPECT_EQ(g.scalar_type(), w.scalar_type()) << name;
    EXPECT_EQ(g.sizes(), w.sizes()) << name;
    EXPECT_TRUE(torch::equal(g, w)) << name << ": got " << g << " want " << w;
  }
}

bool python_with_numpy() { return std::system("/usr/bin/python3 -c 'import numpy' >/dev/null 2>&1") == 0; }

int python_check(const std::string& path) {
  const std::string cmd = "/usr/bin/python3 '" + std::string(SEQGAN_SOURCE_DIR) +
                          "/tools/safetensors_fixtures.py' check '" + path + "'";
  return std::system(cmd.c_str());
}

const char* const kEntryU8x4 = R"("a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]})";

}  // namespace

TEST(Safetensors, ReadsPythonFixtureExactly) {
  const st::File file = st::load(kFixtures + "/all_dtypes.safetensors");
  expect_same_tensors(file.tensors, expected_tensors());
  EXPECT_EQ(file.header.metadata.at("writer"), "python");
  EXPECT_EQ(file.header.metadata.at("config"), R"({"dim":8,"name":"fixture"})");
  EXPECT_EQ(file.header.tensors.size(), 10u);
  // NaN-free bit-level check of the values the format cares most about.
  EXPECT_EQ(file.tensors.at("i64")[0].item<int64_t>(), INT64_MIN);
  EXPECT_EQ(file.tensors.at("f16")[2].item<float>(), 65504.0f);
  EXPECT_EQ(file.tensors.at("bf16")[1][1].item<float>(), 0.0078125f);
}

TEST(Safetensors, SerializesByteForByteLikeTheFixture) {
  // The fixture's checksums were computed by Python's zlib.crc32 (tools/safetensors_fixtures.py).
  const st::File file = st::load(kFixtures + "/all_dtypes.safetensors");
  EXPECT_EQ(st::serialize(expected_tensors(), file.header.metadata), read_bytes(kFixtures + "/all_dtypes_crc32.safetensors"));
}

TEST(Safetensors, ChecksumsCatchADamagedTensorAndNameIt) {
  TempDir dir;
  const std::string path = dir.file("ours.safetensors");
  st::save(path, expected_tensors(), {{"k", "v"}});
  const st::Header header = st::read_header(path);
  EXPECT_EQ(header.checksums.size(), header.tensors.size());
  EXPECT_EQ(header.metadata, (st::Metadata{{"k", "v"}})) << "the checksums are not user metadata";
  const st::TensorInfo* f64 = header.find("f64");
  ASSERT_NE(f64, nullptr);
  // One flipped byte inside tensor f64.
  auto bytes = read_bytes(path);
  bytes[header.data_start() + f64->begin + 3] ^= 0x10;
  write_bytes(path, bytes);
  try {
    st::load(path);
    FAIL() << "a damaged tensor loaded";
  } catch (const seqgan::Error& e) {
    EXPECT_NE(std::string(e.what()).find("tensor 'f64' is damaged"), std::string::npos) << e.what();
  }
  EXPECT_THROW(st::parse(bytes.data(), bytes.size()), seqgan::Error);
  // Files from other tools carry no checksums and load as before.
  const st::File plain = st::load(kFixtures + "/plain.safetensors");
  EXPECT_TRUE(plain.header.checksums.empty());
  EXPECT_EQ(plain.tensors.size(), 4u);
}

TEST(Safetensors, MalformedChecksumsAreRefused) {
  auto refused = [](const std::string& value) {
    st::TensorMap t{{"a", torch::ones({2})}};
    auto bytes = st::serialize(t);
    // Rewrite the header with the given checksum entry, keeping the data.
    const st::Header h = st::parse_header(bytes.data(), bytes.size());
    nlohmann::json doc = nlohmann::json::parse(std::string(bytes.begin() + 8, bytes.begin() + 8 + h.header_size));
    doc["__metadata__"][st::kChecksumKey] = value;
    std::string text = doc.dump();
    text.append((8 - text.size() % 8) % 8, ' ');
    std::vector<uint8_t> out(8);
    for (int i = 0; i < 8; ++i) out[i] = static_cast<uint8_t>(uint64_t(text.size()) >> (8 * i));
    out.insert(out.end(), text.begin(), text.end());
    out.insert(out.end(), bytes.begin() + 8 + h.header_size, bytes.end());
    try {
      st::parse(out.data(), out.size());
      return false;
    } catch (const seqgan::Error&) {
      return true;
    }
  };
  EXPECT_TRUE(refused("{not json"));
  EXPECT_TRUE(refused(R"({"b":"00000000"})"));
  EXPECT_TRUE(refused(R"({"a":"0000000G"})"));
  EXPECT_TRUE(refused(R"({"a":"00000000"})"));  // well formed, wrong
  EXPECT_FALSE(refused(R"({})"));
}

TEST(Safetensors, PythonChecksFileWeWrote) {
  if (!python_with_numpy()) GTEST_SKIP() << "/usr/bin/python3 with numpy is not installed";
  TempDir dir;
  seqgan::CheckpointMeta meta;
  meta.kind = "test";
  meta.config_json = R"({"dim":8,"name":"fixture"})";
  meta.step = 1234;
  meta.extra["writer"] = "seqgan-c++";
  const std::string path = dir.file("ours.safetensors");
  st::save(path, expected_tensors(), meta.to_metadata());
  EXPECT_EQ(python_check(path), 0);

  // The checker must be able to say no: change one byte of the last tensor.
  auto bytes = read_bytes(path);
  bytes.back() ^= 1;
  write_bytes(path, bytes);
  EXPECT_NE(python_check(path), 0);
}

TEST(Safetensors, RoundTripsEveryDtypeAndAligns) {
  const st::TensorMap tensors = expected_tensors();
  const auto bytes = st::serialize(tensors, {{"k", "v"}});
  const st::File file = st::parse(bytes.data(), bytes.size());
  expect_same_tensors(file.tensors, tensors);
  EXPECT_EQ(file.header.metadata, (st::Metadata{{"k", "v"}}));
  EXPECT_EQ(file.header.header_size % 8, 0u);
  for (std::size_t i = 8 + file.header.header_size - 1; bytes[i] != '}'; --i) EXPECT_EQ(bytes[i], ' ');
  for (const auto& t : file.header.tensors) EXPECT_EQ(t.begin % st::dtype_size(t.dtype), 0u) << t.name;
}

TEST(Safetensors, SavesNonContiguousTensors) {
  TempDir dir;
  const at::Tensor base = torch::arange(12, torch::kFloat).reshape({3, 4});
  st::save(dir.file("t.safetensors"), {{"t", base.t()}, {"s", base.slice(1, 1, 3)}});
  const st::File file = st::load(dir.file("t.safetensors"));
  EXPECT_TRUE(torch::equal(file.tensors.at("t"), base.t()));
  EXPECT_TRUE(torch::equal(file.tensors.at("s"), base.slice(1, 1, 3)));
}

TEST(Safetensors, DtypeTableRoundTrips) {
  for (st::DType d : {st::DType::F64, st::DType::F32, st::DType::F16, st::DType::BF16, st::DType::I64, st::DType::I32,
                      st::DType::U8, st::DType::BOOL}) {
    EXPECT_EQ(st::dtype_from_name(st::dtype_name(d)), d);
    EXPECT_EQ(st::from_scalar_type(st::to_scalar_type(d)), d);
    EXPECT_EQ(st::dtype_size(d), c10::elementSize(st::to_scalar_type(d)));
  }
  EXPECT_FALSE(st::dtype_from_name("F8_E5M2").has_value());
  EXPECT_THROW(st::from_scalar_type(torch::kComplexFloat, "c"), seqgan::Error);
}

TEST(Safetensors, DescribeListsMetadataAndTensors) {
  const st::Header header = st::read_header(kFixtures + "/all_dtypes.safetensors");
  const std::string text = st::describe(header);
  EXPECT_NE(text.find("kind = test"), std::string::npos) << text;
  EXPECT_NE(text.find("step = 1234"), std::string::npos) << text;
  EXPECT_NE(text.find("tensors (10, "), std::string::npos) << text;
  EXPECT_NE(text.find("bf16    BF16  [2, 2]"), std::string::npos) << text;
  EXPECT_NE(text.find("scalar  F32   []"), std::string::npos) << text;
  EXPECT_NE(text.find("empty   F32   [0, 3]"), std::string::npos) << text;
}

TEST(Safetensors, FailedWriteLeavesPreviousFileIntact) {
  TempDir dir;
  const std::string path = dir.file("model.safetensors");
  const at::Tensor good = torch::arange(6, torch::kFloat);
  st::save(path, {{"w", good}}, {{"step", "1"}});
  const auto before = read_bytes(path);

  // A meta tensor has a shape but no data: the header is planned and written, the earlier
  // tensors' bytes too, then fetching this one fails midway.
  const st::TensorMap broken{{"a", torch::ones({1000})}, {"z", torch::empty({4}, torch::kMeta)}};
  const std::string err = error_of([&] { st::save(path, broken); });
  EXPECT_NE(err.find("tensor 'z'"), std::string::npos) << err;
  EXPECT_NE(err.find(path), std::string::npos) << err;

  EXPECT_EQ(read_bytes(path), before);
  EXPECT_TRUE(torch::equal(st::load(path).tensors.at("w"), good));
  for (const auto& entry : fs::directory_iterator(dir.path))
    EXPECT_EQ(entry.path().filename(), "model.safetensors") << "leftover " << entry.path();
}

TEST(Safetensors, SaveRejectsBadInputBeforeTouchingDisk) {
  TempDir dir;
  const std::string path = dir.file("x.safetensors");
  EXPECT_NE(error_of([&] { st::save(path, {{"c", torch::zeros({2}, torch::kComplexFloat)}}); }).find("tensor 'c'"),
            std::string::npos);
  EXPECT_NE(error_of([&] { st::save(path, {{"u", at::Tensor()}}); }).find("undefined"), std::string::npos);
  EXPECT_NE(error_of([&] { st::save(path, {{"__metadata__", torch::zeros({1})}}); }).find("__metadata__"),
            std::string::npos);
  EXPECT_FALSE(fs::exists(path));
  EXPECT_TRUE(fs::is_empty(dir.path));
  const std::string err = error_of([&] { st::save(dir.file("no/such/dir/x.safetensors"), {}); });
  EXPECT_NE(err.find("no/such/dir"), std::string::npos) << err;
}

TEST(Safetensors, ReadsEmptyHeaderAndMissingFile) {
  const auto bytes = image("{}      ");
  const st::File file = st::parse(bytes.data(), bytes.size());
  EXPECT_TRUE(file.tensors.empty());
  EXPECT_TRUE(file.header.metadata.empty());
  EXPECT_NE(error_of([] { st::load("/nonexistent/x.safetensors"); }).find("cannot open"), std::string::npos);
}

// ----- bad input -------------------------------------------------------------------------------

TEST(Safetensors, RejectsEmptyFile) { expect_rejected({}, {"empty"}); }

TEST(Safetensors, RejectsFileShorterThanLengthField) { expect_rejected({8, 0, 0}, {"at least 8 bytes"}); }

TEST(Safetensors, RejectsTruncatedFile) {
  auto bytes = read_bytes(kFixtures + "/all_dtypes.safetensors");
  auto cut_data = bytes;
  cut_data.resize(bytes.size() - 3);
  expect_rejected(cut_data, {"reach past the end of the data buffer"});
  auto cut_header = bytes;
  cut_header.resize(100);
  expect_rejected(cut_header, {"the header length field says", "only 92 bytes follow"});
}

TEST(Safetensors, RejectsHugeHeaderLengthWithoutAllocating) {
  expect_rejected(image("{}", 0, 1'000'000'000'000'000), {"1000000000000000", "at most"});
  expect_rejected(image("{}", 0, 1000), {"says 1000 bytes", "only 2 bytes follow"});
}

TEST(Safetensors, RejectsInvalidJson) {
  expect_rejected(image(R"({"a": {"dtype": "F32",)"), {"not valid JSON"});
  expect_rejected(image("[1, 2]"), {"expected the header to be a JSON object"});
}

TEST(Safetensors, RejectsOverlappingOffsets) {
  expect_rejected(image(std::string("{") + kEntryU8x4 + R"(,"b":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}})", 4),
                  {"tensor 'b'", "overlap tensor 'a'"});
}

TEST(Safetensors, RejectsOffsetsOutOfBounds) {
  expect_rejected(image(std::string("{") + kEntryU8x4 + "}", 2), {"tensor 'a'", "reach past the end", "(2 bytes)"});
}

TEST(Safetensors, RejectsGapsAndUncoveredBytes) {
  expect_rejected(image(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}})", 4), {"tensor 'a'", "gap"});
  expect_rejected(image(std::string("{") + kEntryU8x4 + "}", 6), {"cover only 4"});
}

TEST(Safetensors, RejectsSizeInconsistentWithShape) {
  expect_rejected(image(R"({"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,12]}})", 12),
                  {"tensor 'a'", "expected 24 bytes", "hold 12"});
  // 2^62 * 2^2 elements of 4 bytes: the product overflows 64 bits.
  expect_rejected(image(R"({"a":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,0]}})"),
                  {"tensor 'a'", "too large"});
}

TEST(Safetensors, RejectsUnknownDtype) {
  expect_rejected(image(R"({"a":{"dtype":"F8_E4M3","shape":[1],"data_offsets":[0,1]}})", 1),
                  {"tensor 'a'", "unsupported dtype 'F8_E4M3'"});
}

TEST(Safetensors, RejectsDuplicateKey) {
  expect_rejected(image(std::string("{") + kEntryU8x4 + "," + kEntryU8x4 + "}", 4), {"names 'a' twice"});
}

TEST(Safetensors, RejectsNegativeAndNonIntegerDims) {
  expect_rejected(image(R"({"a":{"dtype":"U8","shape":[-1],"data_offsets":[0,0]}})"),
                  {"tensor 'a'", "non-negative integers"});
  expect_rejected(image(R"({"a":{"dtype":"U8","shape":[1.5],"data_offsets":[0,0]}})"),
                  {"tensor 'a'", "non-negative integers"});
}

TEST(Safetensors, RejectsMalformedEntriesAndMetadata) {
  expect_rejected(image(R"({"a":{"dtype":"U8","shape":[1]}})", 1), {"tensor 'a' has no 'data_offsets'"});
  expect_rejected(image(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":1}})", 1),
                  {"unknown field 'x'"});
  expect_rejected(image(R"({"a":{"dtype":"U8","shape":[0],"data_offsets":[1,0]}})", 1), {"end before they begin"});
  expect_rejected(image(R"({"__metadata__":{"step":3}})"), {"metadata 'step'", "string"});
  expect_rejected(image(R"({"":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}})"), {"empty name"});
}

TEST(Safetensors, RejectsBoolBytesOtherThanZeroOrOne) {
  auto bytes = image(R"({"a":{"dtype":"BOOL","shape":[2],"data_offsets":[0,2]}})", 2);
  bytes.back() = 2;
  expect_rejected(bytes, {"BOOL tensor 'a'", "holds byte 2"});
}

TEST(Safetensors, FuzzCorpusSeedsNeverCrash) {
  // Hand-written seeds named valid_* must parse and every other hand-written seed must raise
  // seqgan::Error; inputs the fuzzer found (named by their SHA-1) must parse or raise
  // seqgan::Error, nothing else.
  int seeds = 0;
  for (const auto& entry : fs::directory_iterator(std::string(SEQGAN_SOURCE_DIR) + "/fuzz/corpus/safetensors")) {
    const std::string name = entry.path().filename().string();
    const auto bytes = read_bytes(entry.path().string());
    const bool found = name.size() == 40 && name.find_first_not_of("0123456789abcdef") == std::string::npos;
    if (found) {
      try {
        st::parse(bytes.data(), bytes.size(), name);
      } catch (const seqgan::Error&) {
      }
      continue;
    }
    const bool valid = name.rfind("valid_", 0) == 0;
    const std::string err = error_of([&] { st::parse(bytes.data(), bytes.size(), name); });
    EXPECT_EQ(err == "<no seqgan::Error thrown>", valid) << name << ": " << err;
    ++seeds;
  }
  EXPECT_GE(seeds, 10);
}

TEST(Safetensors, PythonConvertersWriteChecksumsIntoNewFolders) {
  if (!python_with_numpy()) GTEST_SKIP() << "/usr/bin/python3 with numpy is not installed";
  TempDir dir;
  const std::string path = dir.file("weights/sub/x.safetensors");  // folders that do not exist yet
  const std::string cmd = "/usr/bin/python3 -c \"import sys, numpy as np; sys.path.insert(0, '" +
                          std::string(SEQGAN_SOURCE_DIR) + "/tools'); from weights_io import write_safetensors; " +
                          "write_safetensors('" + path + "', {'w': np.arange(6, dtype=np.float32).reshape(2, 3), " +
                          "'b': np.ones(3, dtype=np.int64)}, {'kind': 'test'})\"";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  const st::File file = st::load(path);  // checks Python's CRC-32 of every tensor
  EXPECT_EQ(file.header.checksums.size(), 2u);
  EXPECT_EQ(file.header.metadata, (st::Metadata{{"kind", "test"}}));
  EXPECT_EQ(file.tensors.at("w")[1][2].item<float>(), 5.0f);
}
