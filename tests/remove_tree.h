// Recursive removal for test folders without std::filesystem::remove_all: the libtorch.so of
// PyTorch 2.11 wheels exports its own copy of that function, which calls a null pointer when
// it has a non-empty folder to remove, and binaries linked against it get that copy.
#pragma once

#include <ftw.h>

#include <cstdio>
#include <filesystem>
#include <system_error>

namespace seqgan::test {

inline int remove_one(const char* path, const struct stat*, int, struct FTW*) { return std::remove(path); }

// Removes `path` and everything below it; a missing path is not an error.
inline void remove_tree(const std::filesystem::path& path) {
  ::nftw(path.c_str(), remove_one, 16, FTW_DEPTH | FTW_PHYS);
}
inline void remove_tree(const std::filesystem::path& path, std::error_code&) { remove_tree(path); }

}  // namespace seqgan::test
