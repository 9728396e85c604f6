#include "core/autocast.h"

#include <ATen/autocast_mode.h>

namespace seqgan {

// libtorch 2.4 replaced the CUDA-only autocast calls by device-generic ones.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
#define SEQGAN_AUTOCAST_GENERIC 1
#endif

AutocastGuard::AutocastGuard(bool enable) : enabled_(enable) {
  if (!enabled_) return;
#ifdef SEQGAN_AUTOCAST_GENERIC
  previous_ = at::autocast::is_autocast_enabled(at::kCUDA);
  at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
  at::autocast::set_autocast_enabled(at::kCUDA, true);
#else
  previous_ = at::autocast::is_enabled();
  at::autocast::set_autocast_gpu_dtype(at::kBFloat16);
  at::autocast::set_enabled(true);
#endif
}

AutocastGuard::~AutocastGuard() {
  if (!enabled_) return;
#ifdef SEQGAN_AUTOCAST_GENERIC
  at::autocast::set_autocast_enabled(at::kCUDA, previous_);
#else
  at::autocast::set_enabled(previous_);
#endif
  if (!previous_) at::autocast::clear_cache();
}

}  // namespace seqgan
