// bf16 autocast on CUDA for a scope; a no-op on CPU (SPEC: autocast on CUDA, off on CPU).
#pragma once

namespace seqgan {

class AutocastGuard {
 public:
  explicit AutocastGuard(bool enable);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  bool enabled_ = false;
  bool previous_ = false;
};

}  // namespace seqgan
