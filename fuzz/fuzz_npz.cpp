// libFuzzer entry point for the .npz reader (ADM reference and sample batches): the input is an
// archive's bytes. Every array that loads must round-trip through the writer's .npy bytes and
// the .npy parser unchanged. Seeds: fuzz/corpus/npz/ (tools/make_npz_fixtures.py).
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include <ATen/ATen.h>

#include "io/npz.h"
#include "seqgan/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > (1 << 20)) return 0;
  try {
    const auto arrays = seqgan::npz::parse(std::string(reinterpret_cast<const char*>(data), size), "fuzz.npz");
    for (const auto& [name, t] : arrays) {
      const std::string bytes = seqgan::npz::npy_bytes(t);
      const auto back = seqgan::npz::parse_npy(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), name);
      if (back.sizes() != t.sizes() || back.scalar_type() != t.scalar_type()) __builtin_trap();
      if (t.numel() && std::memcmp(back.data_ptr(), t.data_ptr(), t.nbytes()) != 0) __builtin_trap();
    }
  } catch (const seqgan::Error&) {
  }
  return 0;
}
