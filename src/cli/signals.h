// SIGINT / SIGTERM during training: the first one asks the loop to write a checkpoint and stop.
#pragma once

#include "train/run.h"

namespace seqgan::cli {

// Installs the handlers (once) and returns the flag training loops poll.
StopFlag install_stop_handlers();

}  // namespace seqgan::cli
