// libFuzzer entry point for the IDX parser (raw and gzip). Any input must either parse or throw
// seqgan::Error; crashes, hangs, other exceptions and oversized allocations are findings.
// Build: clang++ -fsanitize=fuzzer,address with the library; seeds in fuzz/corpus/idx.
#include <cstddef>
#include <cstdint>

#include "seqgan/data.h"
#include "seqgan/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // 64 MiB keeps gzip bombs and huge declared dimensions below libFuzzer's memory limit.
  constexpr size_t kMaxBytes = size_t{64} << 20;
  try {
    const seqgan::IdxArray array = seqgan::parse_idx(data, size, "<fuzz>", kMaxBytes);
    size_t count = 1;
    for (const int64_t d : array.dims) count *= static_cast<size_t>(d);
    if (count != array.data.size()) __builtin_trap();  // parse_idx promised an exact size
  } catch (const seqgan::Error&) {
  }
  return 0;
}
