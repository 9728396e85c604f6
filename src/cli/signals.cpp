#include "cli/signals.h"

#include "seqgan/runtime.h"

namespace seqgan::cli {

StopFlag install_stop_handlers() {
  seqgan::install_stop_handlers();
  return [] { return stop_requested(); };
}

int interrupted_exit_code() { return stop_signal() != 0 ? 128 + stop_signal() : 0; }

}  // namespace seqgan::cli
