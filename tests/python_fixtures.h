// Reference outputs written by a Python script from tools/ (Debian's python3-torch,
// python3-torchvision, python3-scipy) at test time, cached per version of the scripts.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iomanip>
#include <sstream>
#include <string>
#include <vector>

#include "remove_tree.h"
#include <ATen/ATen.h>

namespace seqgan::test {

inline std::string read_file_text(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream os;
  os << in.rdbuf();
  return os.str();
}

// Runs `/usr/bin/python3 tools/<scripts[0]> DIR` once per content of the scripts (the first
// is run; all of them, e.g. the modules it imports, key the cache) and returns DIR:
// /tmp/seqgan-fixtures-<uid>/<name>-<hash>. The script writes into a private folder renamed at
// the end, so concurrent test processes never see a half-written reference; copies for older
// script versions are deleted (some are hundreds of MB). On failure the test fails with the
// script's output and "" is returned.
inline std::string python_fixture_dir(const std::string& name, const std::vector<std::string>& scripts) {
  namespace fs = std::filesystem;
  const fs::path tools = fs::path(SEQGAN_SOURCE_DIR) / "tools";
  std::string text;
  for (const auto& s : scripts) text += read_file_text(tools / s);
  const fs::path root = fs::temp_directory_path() / ("seqgan-fixtures-" + std::to_string(::getuid()));
  const fs::path target = root / (name + "-" + std::to_string(std::hash<std::string>{}(text)));
  if (fs::exists(target / "expected.safetensors")) return target.string();

  const fs::path tmp = root / ("tmp-" + name + "-" + std::to_string(::getpid()));
  fs::create_directories(tmp);
  const std::string log = (tmp / "log.txt").string();
  const std::string cmd =
      "/usr/bin/python3 '" + (tools / scripts.front()).string() + "' '" + tmp.string() + "' > '" + log + "' 2>&1";
  const int rc = std::system(cmd.c_str());
  if (rc != 0) {
    const std::string output = read_file_text(log);
    remove_tree(tmp);
    ADD_FAILURE() << "generating the " << name << " reference failed (exit status " << rc << "): " << cmd << "\n"
                  << output.substr(output.size() > 3000 ? output.size() - 3000 : 0)
                  << "\n---> HINT: the parity tests need /usr/bin/python3 with torch, torchvision and scipy "
                     "(Debian: apt-get install python3-torch python3-torchvision python3-scipy)";
    return {};
  }
  fs::remove(log);
  std::error_code ec;
  fs::rename(tmp, target, ec);
  if (ec) remove_tree(tmp);  // another process got there first; its copy is the same
  for (const auto& entry : fs::directory_iterator(root))
    if (entry.path() != target && entry.path().filename().string().rfind(name + "-", 0) == 0) remove_tree(entry.path(), ec);
  return target.string();
}

// Whether /usr/bin/python3 can import torch (the PyTorch parity tests skip without it).
inline bool python_with_torch() { return std::system("/usr/bin/python3 -c 'import torch' > /dev/null 2>&1") == 0; }

// |a - b| <= atol * max|b| + rtol * |b|, with the worst element in the message.
inline void expect_close(const at::Tensor& a, const at::Tensor& b, const std::string& what, double rtol = 1e-4,
                  double atol = 1e-4) {
  ASSERT_EQ(a.sizes(), b.sizes()) << what;
  const at::Tensor scale = b.abs().max();
  const at::Tensor excess = (a - b).abs() - (atol * scale + rtol * b.abs());
  const double worst = excess.max().item<double>();
  // The largest error as a fraction of the scale, in the XML report (--gtest_output=xml).
  std::ostringstream error;
  error << std::scientific << std::setprecision(2) << ((a - b).abs().max() / scale).item<double>();
  ::testing::Test::RecordProperty(what, error.str());
  EXPECT_LE(worst, 0.0) << what << ": max |a - b| = " << (a - b).abs().max().item<double>()
                        << ", max |b| = " << scale.item<double>();
}

}  // namespace seqgan::test
