#include "train/distributed.h"

#include <c10/core/impl/DeviceGuardImplInterface.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/cuda.h>

#include <cmath>
#include <cstdlib>

#include "seqgan/error.h"
#include "seqgan/log.h"

// c10d's Gloo header needs Gloo's own headers (Debian: libgloo-dev); NCCL needs a CUDA libtorch.
#if __has_include(<torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>) && __has_include(<gloo/algorithm.h>)
#define SEQGAN_HAVE_GLOO 1
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO  // the header's own guard; libtorch itself is built with it
#endif
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#if defined(SEQGAN_WITH_NCCL) && !__has_include(<nccl.h>)
#undef SEQGAN_WITH_NCCL  // CMake found the headers, this compiler does not: build without NCCL
#endif
#ifdef SEQGAN_WITH_NCCL
#ifndef USE_C10D_NCCL
#define USE_C10D_NCCL
#endif
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

namespace seqgan {

namespace {

int env_int(const char* name, int fallback, bool* present = nullptr) {
  const char* v = std::getenv(name);
  if (present) *present = v && *v;
  if (!v || !*v) return fallback;
  try {
    size_t used = 0;
    const int x = std::stoi(v, &used);
    if (used == std::string(v).size()) return x;
  } catch (const std::exception&) {
  }
  throw Error(str("environment variable ", name, "='", v, "' is not an integer\n---> HINT: start the ranks with "
                  "scripts/launch.sh, or set RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT as torchrun does"));
}

// The collectives seqgan uses, over either backend (their classes share no usable base across
// libtorch versions).
struct Collectives {
  virtual ~Collectives() = default;
  virtual void allreduce(std::vector<at::Tensor>& t) = 0;
  virtual void broadcast(std::vector<at::Tensor>& t) = 0;
  virtual void barrier() = 0;
};

template <class Group>
struct CollectivesOf : Collectives {
  explicit CollectivesOf(c10::intrusive_ptr<Group> g) : group(std::move(g)) {}
  void allreduce(std::vector<at::Tensor>& t) override { group->allreduce(t)->wait(); }
  void broadcast(std::vector<at::Tensor>& t) override { group->broadcast(t)->wait(); }
  void barrier() override { group->barrier()->wait(); }
  c10::intrusive_ptr<Group> group;
};

}  // namespace

DistributedEnv DistributedEnv::from_environment() {
  DistributedEnv e;
  bool has_world = false, has_rank = false;
  e.world_size = env_int("WORLD_SIZE", 1, &has_world);
  e.rank = env_int("RANK", 0, &has_rank);
  e.local_rank = env_int("LOCAL_RANK", e.rank);
  e.local_world_size = env_int("LOCAL_WORLD_SIZE", e.world_size);
  e.master_port = env_int("MASTER_PORT", 29500);
  if (const char* a = std::getenv("MASTER_ADDR"); a && *a) e.master_addr = a;
  const std::string hint = "\n---> HINT: start the ranks with scripts/launch.sh (or torchrun-style variables)";
  SEQGAN_CHECK(e.world_size >= 1, "WORLD_SIZE must be >= 1, got ", e.world_size, hint);
  SEQGAN_CHECK(!has_world || e.world_size == 1 || has_rank, "WORLD_SIZE=", e.world_size, " is set but RANK is not", hint);
  SEQGAN_CHECK(e.rank >= 0 && e.rank < e.world_size, "RANK=", e.rank, " is outside 0..WORLD_SIZE-1 (WORLD_SIZE=",
               e.world_size, ")", hint);
  SEQGAN_CHECK(e.local_world_size >= 1 && e.local_rank >= 0 && e.local_rank < e.local_world_size, "LOCAL_RANK=",
               e.local_rank, " is outside 0..LOCAL_WORLD_SIZE-1 (LOCAL_WORLD_SIZE=", e.local_world_size, ")", hint);
  SEQGAN_CHECK(e.master_port > 0 && e.master_port < 65536, "MASTER_PORT=", e.master_port, " is not a TCP port", hint);
  return e;
}

struct ProcessGroup::Impl {
  int rank = 0, world = 1;
  std::string backend;
  c10::Device device = c10::Device(c10::kCPU);
  c10::intrusive_ptr<c10d::Store> store;
  std::unique_ptr<Collectives> coll;

  // Runs a collective; a failure (a rank died, the network failed, the timeout passed) becomes
  // an error that says what happened and what to do.
  template <class F>
  void run(const char* what, F&& f) {
    try {
      f();
    } catch (const std::exception& e) {
      std::string msg = e.what();
      if (msg.size() > 600) msg = msg.substr(0, 600) + "...";
      throw ProcessGroupFailed(str("rank ", rank, " of ", world, ": the ", what, " over the ", backend,
                                   " process group failed; another rank has probably stopped: ", msg),
                               "see the other ranks' output for the first error; restart every rank with --resume "
                               "(any number of ranks can continue from the last checkpoint)");
    }
  }

  // NCCL reduces tensors on the GPU; CPU tensors make a round trip.
  at::Tensor on_device(const at::Tensor& t) const { return backend == "nccl" ? t.to(device) : t; }
};

ProcessGroup::ProcessGroup(const DistributedEnv& env, const c10::Device& device, std::chrono::milliseconds timeout)
    : impl_(std::make_unique<Impl>()) {
  auto& m = *impl_;
  m.rank = env.rank;
  m.world = env.world_size;
  m.device = device;
  m.backend = device.is_cuda() ? "nccl" : "gloo";
  if (device.is_cuda()) {
    // One GPU per rank: LOCAL_RANK picks it, and becomes the current device, which every later
    // "cuda" tensor and NCCL use.
    const int count = static_cast<int>(torch::cuda::device_count());
    SEQGAN_CHECK_HINT(env.local_rank < count, "start at most one rank per GPU (launch.sh --nproc <= GPUs)", "rank ",
                      env.rank, ": LOCAL_RANK is ", env.local_rank, " but this machine has ", count, " GPU(s)");
    c10::impl::getDeviceGuardImpl(c10::DeviceType::CUDA)
        ->setDevice(c10::Device(c10::DeviceType::CUDA, static_cast<c10::DeviceIndex>(env.local_rank)));
    m.device = c10::Device(c10::DeviceType::CUDA, static_cast<c10::DeviceIndex>(env.local_rank));
  }
  try {
    c10d::TCPStoreOptions so;
    so.port = static_cast<std::uint16_t>(env.master_port);
    so.isServer = env.rank == 0;
    so.numWorkers = static_cast<std::size_t>(env.world_size);
    so.waitWorkers = true;
    so.timeout = timeout;
    m.store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, so);
  } catch (const std::exception& e) {
    throw Error(str("rank ", env.rank, " of ", env.world_size, ": no rendezvous at ", env.master_addr, ":",
                    env.master_port, " within ", timeout.count() / 1000, " s: ", e.what(),
                    "\n---> HINT: start every rank (scripts/launch.sh --nproc N), check MASTER_ADDR/MASTER_PORT are "
                    "reachable from all machines, or pick a free port with MASTER_PORT"));
  }
  if (m.backend == "gloo") {
#ifdef SEQGAN_HAVE_GLOO
    auto options = c10d::ProcessGroupGloo::Options::create(timeout);
    const char* iface = std::getenv("GLOO_SOCKET_IFNAME");
    options->devices.push_back(iface && *iface ? c10d::ProcessGroupGloo::createDeviceForInterface(iface)
                                               : c10d::ProcessGroupGloo::createDeviceForHostname(env.master_addr));
    m.coll = std::make_unique<CollectivesOf<c10d::ProcessGroupGloo>>(
        c10::make_intrusive<c10d::ProcessGroupGloo>(m.store, env.rank, env.world_size, options));
#else
    throw Error("this seqgan was built without Gloo (c10d's CPU backend)\n---> HINT: install libgloo-dev and rebuild");
#endif
  } else {
#ifdef SEQGAN_WITH_NCCL
    auto options = c10d::ProcessGroupNCCL::Options::create();
    options->timeout = timeout;
    m.coll = std::make_unique<CollectivesOf<c10d::ProcessGroupNCCL>>(
        c10::make_intrusive<c10d::ProcessGroupNCCL>(m.store, env.rank, env.world_size, options));
#else
    throw Error("this seqgan was built against a libtorch without NCCL: data-parallel training on GPUs needs one\n"
                "---> HINT: build against a CUDA libtorch (CMAKE_PREFIX_PATH), or train on CPUs with --device cpu (Gloo)");
#endif
  }
  barrier();
  log_info(str("rank ", env.rank, " of ", env.world_size, " joined the ", m.backend, " process group at ",
               env.master_addr, ":", env.master_port));
}

ProcessGroup::~ProcessGroup() = default;

std::shared_ptr<ProcessGroup> ProcessGroup::from_environment(const c10::Device& device) {
  const DistributedEnv env = DistributedEnv::from_environment();
  if (env.world_size == 1) return nullptr;
  const int seconds = env_int("SEQGAN_DIST_TIMEOUT", 300);
  SEQGAN_CHECK(seconds > 0, "SEQGAN_DIST_TIMEOUT must be a positive number of seconds, got ", seconds);
  return std::make_shared<ProcessGroup>(env, device, std::chrono::seconds(seconds));
}

bool ProcessGroup::available(const std::string& backend) {
#ifdef SEQGAN_HAVE_GLOO
  if (backend == "gloo") return true;
#endif
#ifdef SEQGAN_WITH_NCCL
  if (backend == "nccl") return true;
#endif
  return false;
}

int ProcessGroup::rank() const { return impl_->rank; }
int ProcessGroup::world_size() const { return impl_->world; }
const std::string& ProcessGroup::backend() const { return impl_->backend; }

void ProcessGroup::broadcast(const std::vector<at::Tensor>& tensors) {
  torch::NoGradGuard ng;
  for (const auto& t : tensors) {
    std::vector<at::Tensor> one{impl_->on_device(t.contiguous())};
    impl_->run("broadcast", [&] { impl_->coll->broadcast(one); });
    if (!one[0].is_same(t)) t.copy_(one[0]);
  }
}

void ProcessGroup::all_reduce_sum_(at::Tensor& tensor) {
  torch::NoGradGuard ng;
  std::vector<at::Tensor> one{impl_->on_device(tensor.contiguous())};
  impl_->run("all-reduce", [&] { impl_->coll->allreduce(one); });
  if (!one[0].is_same(tensor)) tensor.copy_(one[0]);
}

namespace {
struct AllReduceSum : torch::autograd::Function<AllReduceSum> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, ProcessGroup* group) {
    ctx->saved_data["world"] = static_cast<int64_t>(group->world_size());
    auto y = x.detach().clone();
    group->all_reduce_sum_(y);
    return y;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad) {
    return {grad[0] * static_cast<double>(ctx->saved_data["world"].toInt()), at::Tensor()};
  }
};
}  // namespace

at::Tensor ProcessGroup::all_reduce_sum(const at::Tensor& tensor) { return AllReduceSum::apply(tensor, this); }

void ProcessGroup::average_gradients(const std::vector<at::Tensor>& params, int64_t bucket_bytes) {
  torch::NoGradGuard ng;
  const double scale = 1.0 / impl_->world;
  std::vector<at::Tensor> bucket;
  int64_t bytes = 0;
  auto flush = [&] {
    if (bucket.empty()) return;
    std::vector<at::Tensor> flat_parts;
    flat_parts.reserve(bucket.size());
    for (const auto& g : bucket) flat_parts.push_back(g.reshape({-1}));
    std::vector<at::Tensor> flat{at::cat(flat_parts)};
    impl_->run("gradient all-reduce", [&] { impl_->coll->allreduce(flat); });
    flat[0].mul_(scale);
    int64_t offset = 0;
    for (auto& g : bucket) {
      g.copy_(flat[0].narrow(0, offset, g.numel()).view_as(g));
      offset += g.numel();
    }
    bucket.clear();
    bytes = 0;
  };
  for (const auto& p : params) {
    const auto& g = p.grad();
    if (!g.defined()) continue;
    // A bucket holds one dtype and device; a change closes it.
    if (!bucket.empty() && (bucket.front().scalar_type() != g.scalar_type() || bucket.front().device() != g.device()))
      flush();
    bucket.push_back(g);
    bytes += static_cast<int64_t>(g.nbytes());
    if (bytes >= bucket_bytes) flush();
  }
  flush();
}

std::map<std::string, double> ProcessGroup::average(const std::map<std::string, double>& values) {
  if (values.empty()) return values;
  std::vector<double> v;
  for (const auto& kv : values) v.push_back(kv.second);
  auto t = at::tensor(v, at::kDouble);
  all_reduce_sum_(t);
  std::map<std::string, double> out;
  int64_t i = 0;
  for (const auto& kv : values) out[kv.first] = t[i++].item<double>() / impl_->world;
  return out;
}

void ProcessGroup::barrier() {
  impl_->run("barrier", [&] { impl_->coll->barrier(); });
}

bool any_rank(ProcessGroup* group, bool flag) {
  if (!group) return flag;
  auto t = at::full({1}, flag ? 1.0 : 0.0, at::kDouble);
  group->all_reduce_sum_(t);
  return t.item<double>() > 0;
}

double global_loss(ProcessGroup* group, double loss) {
  if (!group) return loss;
  const bool finite = std::isfinite(loss);
  auto t = at::tensor({finite ? loss : 0.0, finite ? 0.0 : 1.0}, at::kDouble);
  group->all_reduce_sum_(t);
  return t[1].item<double>() > 0 ? std::nan("") : t[0].item<double>() / group->world_size();
}

}  // namespace seqgan
