#include "cli/signals.h"

#include <atomic>
#include <csignal>

namespace seqgan::cli {

namespace {
std::atomic<bool> g_stop{false};
extern "C" void on_signal(int sig) {
  if (g_stop.exchange(true)) {
    // A second signal: the user insists; restore the default action and re-raise.
    std::signal(sig, SIG_DFL);
    std::raise(sig);
  }
}
}  // namespace

StopFlag install_stop_handlers() {
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  return [] { return g_stop.load(); };
}

}  // namespace seqgan::cli
