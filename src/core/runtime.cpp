#include "seqgan/runtime.h"

#include <dlfcn.h>
#include <malloc.h>
#include <sched.h>
#include <sys/utsname.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include <atomic>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <thread>

#include "seqgan/error.h"

namespace seqgan {

int available_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  return std::max(1u, std::thread::hardware_concurrency());
}

int set_blas_threads(int n) {
  using SetFn = void (*)(int);
  using GetFn = int (*)();
  // Looked up at run time: libtorch may be linked against another BLAS, or none.
  static const auto set_fn = reinterpret_cast<SetFn>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  static const auto get_fn = reinterpret_cast<GetFn>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
  if (!set_fn || !get_fn || std::getenv("OPENBLAS_NUM_THREADS")) return 0;
  const int previous = get_fn();
  if (n != previous) set_fn(std::max(1, n));
  return previous;
}

void tune_memory_allocator() {
  const char* tunables = std::getenv("GLIBC_TUNABLES");
  if (tunables && std::string(tunables).find("glibc.malloc") != std::string::npos) return;
  mallopt(M_MMAP_THRESHOLD, static_cast<int>(kHeapBlockBytes));  // glibc's largest allowed threshold on 64-bit
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
}

int set_threads(int n) {
  SEQGAN_CHECK_HINT(n >= 0, "pass --threads 0 for all cores", "thread count must be >= 0, got ", n);
  int count = n;
  if (count == 0) {
    // Ranks started together on one machine (scripts/launch.sh) share its cores.
    count = available_cores();
    if (const char* local = std::getenv("LOCAL_WORLD_SIZE"); local && std::atoi(local) > 1)
      count = std::max(1, count / std::atoi(local));
  }
  at::set_num_threads(count);
#ifdef _OPENMP
  // The OpenMP runtime seqgan's own parallel loops run on: libtorch's on Debian, a second copy
  // beside the one a pip-installed PyTorch bundles; give both the same count.
  omp_set_num_threads(count);
#endif
  set_blas_threads(1);
  return at::get_num_threads();
}

std::string resolve_device(const std::string& requested) {
  if (requested == "cpu") return "cpu";
  const bool has_cuda = torch::cuda::is_available();
  if (requested == "cuda") {
    SEQGAN_CHECK_HINT(has_cuda, "build against a CUDA libtorch (CMAKE_PREFIX_PATH) on a machine with a GPU, or use --set device=cpu",
                      "device 'cuda' requested but CUDA is not available");
    return "cuda";
  }
  SEQGAN_CHECK_HINT(requested == "auto", "use auto, cpu or cuda", "unknown device '", requested, "'");
  return has_cuda ? "cuda" : "cpu";
}

std::string machine_summary() {
  std::string cpu = "unknown CPU";
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("model name", 0) == 0) {
      cpu = line.substr(line.find(':') + 2);
      break;
    }
  }
  utsname u{};
  uname(&u);
  std::string s = str(cpu, ", ", available_cores(), " cores, ", u.sysname, " ", u.release, ", libtorch ",
                      TORCH_VERSION_MAJOR, ".", TORCH_VERSION_MINOR, ".", TORCH_VERSION_PATCH, ", ",
                      at::get_num_threads(), at::get_num_threads() == 1 ? " thread" : " threads");
  if (torch::cuda::is_available()) s += str(", CUDA devices: ", static_cast<int>(torch::cuda::device_count()));
  return s;
}

namespace {
std::atomic<int> g_stop_signal{0};
extern "C" void on_stop_signal(int sig) {
  int expected = 0;
  if (!g_stop_signal.compare_exchange_strong(expected, sig)) {
    // A second signal: the user insists; restore the default action and re-raise.
    std::signal(sig, SIG_DFL);
    std::raise(sig);
  }
}
}  // namespace

void install_stop_handlers() {
  std::signal(SIGINT, on_stop_signal);
  std::signal(SIGTERM, on_stop_signal);
}

bool stop_requested() { return g_stop_signal.load() != 0; }

int stop_signal() { return g_stop_signal.load(); }

void throw_if_stopped(const std::string& what) {
  const int sig = g_stop_signal.load();
  if (sig != 0) throw Interrupted(sig, str(what, " interrupted by ", sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "a signal"));
}

}  // namespace seqgan
