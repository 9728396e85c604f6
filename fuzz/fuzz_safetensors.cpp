// libFuzzer entry point for the safetensors reader: header parsing, describe and tensor decode.
// A seqgan::Error is the expected answer to bad bytes; anything else (another exception, a
// crash, a sanitizer report, a huge allocation) is a bug. Seeds: fuzz/corpus/safetensors/,
// written by `tools/safetensors_fixtures.py corpus`.
#include <ATen/core/Tensor.h>

#include <cstddef>
#include <cstdint>

#include "seqgan/error.h"
#include "seqgan/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace st = seqgan::safetensors;
  try {
    const st::Header header = st::parse_header(data, size, "<fuzz>");
    (void)st::describe(header);
    const st::TensorMap tensors = st::decode(header, data, size, "<fuzz>");
    // Every tensor the header promised, with exactly the promised bytes.
    if (tensors.size() != header.tensors.size()) __builtin_trap();
    for (const auto& info : header.tensors) {
      const at::Tensor& t = tensors.at(info.name);
      if (t.nbytes() != info.end - info.begin) __builtin_trap();
    }
  } catch (const seqgan::Error&) {
  }
  return 0;
}
