// SIGINT / SIGTERM during training: the first one asks the loop to write a checkpoint and stop.
#pragma once

#include "train/run.h"

namespace seqgan::cli {

// Installs the handlers (once) and returns the flag training loops poll.
StopFlag install_stop_handlers();

// What a command that stopped early on a signal returns: 128 + the signal (130 for SIGINT, 143 for
// SIGTERM), 0 when no signal came (e.g. --max-steps).
int interrupted_exit_code();

}  // namespace seqgan::cli
