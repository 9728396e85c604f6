// libFuzzer entry point for the tar index reader of the shard data sets. Any input must either
// index or throw seqgan::Error; crashes, hangs, other exceptions and oversized allocations are
// findings, and so is an index that breaks its promises (members inside the input, in order).
// Build: see fuzz/CMakeLists.txt; seeds in fuzz/corpus/tar.
//
// There is no fuzzer for LMDB files: liblmdb trusts its file (a corrupt page can crash it), and
// seqgan only guards what it can check cheaply (a data file shorter than its header says). The
// images an LMDB holds are decoded by decode_image, which the image fuzzing covers.
#include <cstddef>
#include <cstdint>

#include "data/tar.h"
#include "seqgan/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const std::vector<seqgan::TarEntry> entries = seqgan::index_tar(data, size, "<fuzz>");
    uint64_t end = 0;
    for (const seqgan::TarEntry& e : entries) {
      // Each member's data lies inside the input, after the previous member's and its header.
      if (e.offset < end + 512 || e.offset > size || e.size > size - e.offset) __builtin_trap();
      end = e.offset + e.size;
    }
  } catch (const seqgan::Error&) {
  }
  return 0;
}
