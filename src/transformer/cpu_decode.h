// AR decoding on CPUs, one position at a time, without libtorch's per-operator dispatch.
//
// A decoding step at small batch is a handful of matrix-vector products per layer plus layer
// norms, GELU and attention over the cached keys. Through libtorch each of these is a dispatched
// operator (about 60 per 4-layer step, ~10 us each), and its matrix products run single-threaded
// (seqgan gives OpenBLAS one thread; see set_blas_threads). This decoder walks the weights of a
// TransformerImpl directly: the products go to BLAS (sgemv/sgemm) in row blocks spread over
// libtorch's own OpenMP threads, so both cores stream weights without a second thread pool, and
// the rest is plain loops. It computes what TransformerImpl::start/step compute (eval mode), to
// float rounding.
#pragma once

#include <memory>
#include <vector>

#include <ATen/core/Tensor.h>

namespace seqgan {

class TransformerImpl;

class CpuArDecoder {
 public:
  // Whether `model` can be decoded here: causal, on the CPU, float32 weights.
  static bool supports(const TransformerImpl& model);

  // A decoder for `batch` sequences; `model` must outlive it and not change while it decodes.
  CpuArDecoder(const TransformerImpl& model, int64_t batch);
  ~CpuArDecoder();
  CpuArDecoder(const CpuArDecoder&) = delete;
  CpuArDecoder& operator=(const CpuArDecoder&) = delete;

  // Feeds token ids [B] (int64) at the next position (the first call: the class or start tokens,
  // as TransformerImpl::condition_tokens gives them) and returns the logits there, [B, K] float32.
  at::Tensor step(const at::Tensor& ids);
  int64_t position() const { return pos_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int64_t pos_ = 0;
};

}  // namespace seqgan
