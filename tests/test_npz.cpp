// The .npz reader and writer against numpy (tools/npz_fixtures.py: np.savez, np.savez_compressed,
// np.lib.format, and zipfile for damaged files).
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

#include <ATen/ATen.h>

#include "io/npz.h"
#include "python_fixtures.h"
#include "seqgan/error.h"
#include "seqgan/safetensors.h"
#include "tiny.h"

using namespace seqgan;

namespace {

std::string fixtures() { return test::python_fixture_dir("npz", {"npz_fixtures.py", "weights_io.py"}); }

std::string error_of(const std::string& path) {
  try {
    npz::load(path);
  } catch (const Error& e) {
    return e.what() + std::string(" | ") + e.hint();
  }
  return "";
}

void expect_same(const at::Tensor& got, const at::Tensor& want, const std::string& name) {
  EXPECT_EQ(got.scalar_type(), want.scalar_type()) << name;
  EXPECT_EQ(got.sizes(), want.sizes()) << name;
  if (got.scalar_type() == want.scalar_type() && got.sizes() == want.sizes()) {
    EXPECT_TRUE(at::equal(got, want)) << name << "\n" << got << "\n" << want;
  }
}

}  // namespace

TEST(Npz, ReadsWhatNumpySavesStoredAndDeflated) {
  const std::string dir = fixtures();
  ASSERT_FALSE(dir.empty());
  const auto expected = safetensors::load(dir + "/expected.safetensors").tensors;
  for (const char* file : {"savez.npz", "savez_compressed.npz"}) {
    SCOPED_TRACE(file);
    const auto arrays = npz::load(dir + "/" + file);
    ASSERT_EQ(arrays.size(), 6u);
    for (const char* name : {"arr_0", "mu", "sigma", "labels", "f32", "flags"}) expect_same(arrays.at(name), expected.at(name), name);
    EXPECT_EQ(arrays.at("arr_0").sizes(), (std::vector<int64_t>{4, 8, 8, 3}));
  }
}

TEST(Npz, ReadsByteOrdersFortranOrderAndEveryDtype) {
  const std::string dir = fixtures();
  ASSERT_FALSE(dir.empty());
  const auto expected = safetensors::load(dir + "/expected.safetensors").tensors;
  const auto k = npz::load(dir + "/kinds.npz");
  for (const char* name : {"big_f4", "big_i8", "fortran", "empty"})
    expect_same(k.at(name), expected.at(std::string("kinds.") + name), name);
  expect_same(k.at("f16"), at::tensor({0.5, -2.0, 65504.0}).to(at::kHalf), "f16");
  expect_same(k.at("i8"), at::tensor({-128, 0, 127}, at::kChar), "i8");
  expect_same(k.at("i16"), at::tensor({-32768, 5, 32767}, at::kShort), "i16");
  expect_same(k.at("i32"), at::tensor({-7, 9}, at::kInt).view({1, 2}), "i32");
  expect_same(k.at("scalar"), at::scalar_tensor(42.5, at::kDouble), "scalar");
  const auto v = npz::load(dir + "/version2.npz");
  expect_same(v.at("v2"), expected.at("sigma"), "version 2 header");
  expect_same(v.at("v3"), expected.at("mu"), "version 3 header");
}

TEST(Npz, WritesWhatNumpyLoads) {
  const std::string dir = fixtures();
  ASSERT_FALSE(dir.empty());
  const auto expected = safetensors::load(dir + "/expected.safetensors").tensors;
  std::map<std::string, at::Tensor> arrays;
  for (const char* name : {"arr_0", "mu", "sigma", "labels", "f32", "flags"}) arrays[name] = expected.at(name);
  const std::string out = test::temp_dir("npz-write");
  for (const bool compressed : {false, true}) {
    const std::string path = out + (compressed ? "/compressed.npz" : "/stored.npz");
    npz::save(path, arrays, compressed);
    const std::string cmd = "/usr/bin/python3 '" + std::string(SEQGAN_SOURCE_DIR) + "/tools/npz_fixtures.py' check '" + path +
                            "' " + (compressed ? "deflated" : "stored") + " > /dev/null";
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
    const auto back = npz::load(path);
    for (const auto& [name, t] : arrays) expect_same(back.at(name), t, name);
  }
  EXPECT_FALSE(std::filesystem::exists(out + "/stored.npz.tmp." + std::to_string(::getpid())));
}

TEST(Npz, DamagedAndForeignFilesAreRefusedByName) {
  const std::string dir = fixtures();
  ASSERT_FALSE(dir.empty());
  const std::vector<std::pair<std::string, std::string>> cases{
      {"object", "object array"},
      {"structured", "structured (record) type"},
      {"lying_shape", "make 396 bytes of data, the member holds 40"},
      {"overflow", "element count overflows"},
      {"truncated", "as an .npz (zip) archive"},
      {"not_npy", "member 'readme.txt' is not an .npy array"},
      {"not_zip", "as an .npz (zip) archive"},
      {"flipped", "bad_flipped.npz"},
  };
  for (const auto& [name, phrase] : cases) {
    const std::string msg = error_of(dir + "/bad_" + name + ".npz");
    EXPECT_NE(msg.find(phrase), std::string::npos) << name << ": " << msg;
    EXPECT_NE(msg.find("bad_" + name + ".npz"), std::string::npos) << name << ": " << msg;
  }
  // The in-memory parser says the same of a lying .npy.
  const std::string good = npz::npy_bytes(at::arange(10, at::kFloat));
  std::string lie = good;
  lie.replace(lie.find("(10,)"), 5, "(99,)");
  try {
    npz::parse_npy(reinterpret_cast<const uint8_t*>(lie.data()), lie.size(), "x.npy");
    FAIL() << "a lying header was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("make 396 bytes of data, the array holds 40"), std::string::npos) << e.what();
  }
  const auto back = npz::parse_npy(reinterpret_cast<const uint8_t*>(good.data()), good.size(), "x.npy");
  EXPECT_TRUE(at::equal(back, at::arange(10, at::kFloat)));
}
