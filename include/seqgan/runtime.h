// Process-wide runtime settings: threads and devices.
#pragma once

#include <cstdint>
#include <string>

namespace seqgan {

// Number of cores this process may use (respects the CPU affinity mask).
int available_cores();

// Sets libtorch's intra-op threads; 0 means all available cores, divided among the ranks on this
// machine when LOCAL_WORLD_SIZE is set (data-parallel training). Returns the count in effect.
// With more than one thread it also gives OpenBLAS a single thread (see set_blas_threads), unless
// OPENBLAS_NUM_THREADS is set.
int set_threads(int n);

// OpenBLAS keeps its own pool of threads beside libtorch's OpenMP pool. Convolutions (oneDNN) and
// element-wise work run on the OpenMP threads and call BLAS from inside them, so two pools compete
// for the same cores: with one BLAS thread a tokenizer training step runs about 1.2-1.3x faster on
// two cores, while a single large matrix product runs at half speed. seqgan therefore gives BLAS
// one thread by default and all cores where large products dominate (transformer training; see
// docs/performance.md). Returns the previous count; 0 (and does nothing) when the BLAS library
// offers no such control or OPENBLAS_NUM_THREADS is set.
int set_blas_threads(int n);

// Sets the BLAS thread count for its lifetime (see set_blas_threads).
class BlasThreads {
 public:
  explicit BlasThreads(int n) : previous_(set_blas_threads(n)) {}
  ~BlasThreads() {
    if (previous_ > 0) set_blas_threads(previous_);
  }
  BlasThreads(const BlasThreads&) = delete;
  BlasThreads& operator=(const BlasThreads&) = delete;

 private:
  int previous_;
};

// Makes glibc's allocator keep freed memory for reuse: blocks up to 32 MiB come from the heap
// rather than fresh mmaps, and the heap is not trimmed. Every training step allocates and frees
// the same activation buffers; by default the large ones go back to the kernel and come back as
// page faults (11% of a tokenizer step's time on a 2-core CPU), and with this a step runs
// 1.3x faster. The resident set stays at its peak instead of shrinking between steps. Does
// nothing when GLIBC_TUNABLES sets malloc tunables. The seqgan command calls it at start.
void tune_memory_allocator();

// The largest block tune_memory_allocator keeps in the heap: larger ones are fresh mappings,
// page-faulted in on every use.
inline constexpr int64_t kHeapBlockBytes = int64_t{32} << 20;

// "auto" picks CUDA when this build and machine have it, else CPU. Returns "cpu" or "cuda".
std::string resolve_device(const std::string& requested);

// SIGINT and SIGTERM as a request to stop. After install_stop_handlers() the first signal only
// sets a flag that long loops poll (training writes a checkpoint and returns; other commands
// throw Interrupted from throw_if_stopped and clean up as the exception unwinds); a second one
// ends the process at once with the default action. Installing twice is harmless.
void install_stop_handlers();
bool stop_requested();
// The signal that asked to stop (SIGINT or SIGTERM), 0 when none did.
int stop_signal();
// Throws Interrupted, naming `what` was interrupted, once a stop was requested.
void throw_if_stopped(const std::string& what);

// One line describing the machine and the build (for logs and reports).
std::string machine_summary();

}  // namespace seqgan
