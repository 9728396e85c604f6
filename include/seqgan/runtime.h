// Process-wide runtime settings: threads and devices.
#pragma once

#include <string>

namespace seqgan {

// Number of cores this process may use (respects the CPU affinity mask).
int available_cores();

// Sets libtorch's intra-op threads; 0 means all available cores. Returns the count in effect.
int set_threads(int n);

// "auto" picks CUDA when this build and machine have it, else CPU. Returns "cpu" or "cuda".
std::string resolve_device(const std::string& requested);

// One line describing the machine and the build (for logs and reports).
std::string machine_summary();

}  // namespace seqgan
