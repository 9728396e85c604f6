// Recursive removal for test folders without std::filesystem::remove_all: the libtorch.so of
// PyTorch 2.11 wheels exports its own copy of that function, which calls a null pointer when
// it has a non-empty folder to remove, and binaries linked against it get that copy.
#pragma once

#include <ftw.h>
#include <stdlib.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <stdexcept>
#include <system_error>

namespace seqgan::test {

inline int remove_one(const char* path, const struct stat*, int, struct FTW*) { return std::remove(path); }

// Removes `path` and everything below it; a missing path is not an error.
inline void remove_tree(const std::filesystem::path& path) {
  ::nftw(path.c_str(), remove_one, 16, FTW_DEPTH | FTW_PHYS);
}
inline void remove_tree(const std::filesystem::path& path, std::error_code&) { remove_tree(path); }

// A fresh, uniquely named folder under the system temp dir (mkdtemp), removed with everything
// in it when the object goes out of scope.
struct TempDir {
  std::filesystem::path path;
  explicit TempDir(const std::string& prefix = "seqgan") {
    std::string templ = (std::filesystem::temp_directory_path() / (prefix + "_XXXXXX")).string();
    if (::mkdtemp(templ.data()) == nullptr) throw std::runtime_error("mkdtemp failed for " + templ);
    path = templ;
  }
  ~TempDir() { remove_tree(path); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return (path / name).string(); }
  std::string operator/(const std::string& name) const { return file(name); }
};

}  // namespace seqgan::test
