// Data-parallel training over PyTorch's distributed engine (c10d): Gloo between CPU processes,
// NCCL between GPUs. The group is described by torchrun's environment variables (RANK,
// WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT); rank 0 hosts the TCPStore
// the others rendezvous through. scripts/launch.sh starts the ranks of one machine.
//
// What the trainers do with it: parameters are broadcast from rank 0 at the start; every rank
// takes its share of each global batch (batch sizes in configs are global); after backward the
// gradients are averaged in buckets, so every rank applies the same update; the quantiser's
// entropy regulariser sums its usage over all ranks (the regulariser sees the global batch); logs
// are averaged over ranks; rank 0 alone writes.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include "seqgan/error.h"

namespace seqgan {

struct DistributedEnv {
  int rank = 0, world_size = 1, local_rank = 0, local_world_size = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  // Reads the variables; absent WORLD_SIZE means one process. Throws seqgan::Error naming a
  // malformed or inconsistent variable.
  static DistributedEnv from_environment();
};

class ProcessGroup {
 public:
  // Joins the group (blocks until every rank has arrived, or `timeout`): Gloo when `device` is a
  // CPU, NCCL for CUDA devices (builds against a libtorch with NCCL). The same timeout bounds
  // every collective: a rank that stops answering makes the others fail with an error naming it
  // instead of waiting forever.
  ProcessGroup(const DistributedEnv& env, const c10::Device& device, std::chrono::milliseconds timeout);
  ~ProcessGroup();
  ProcessGroup(const ProcessGroup&) = delete;
  ProcessGroup& operator=(const ProcessGroup&) = delete;

  // The group of the environment, or nullptr for a single process. The timeout is
  // SEQGAN_DIST_TIMEOUT seconds (default 300).
  static std::shared_ptr<ProcessGroup> from_environment(const c10::Device& device);

  // Whether this build has the backend: "gloo" (c10d built with it and Gloo's headers present)
  // or "nccl" (a CUDA libtorch).
  static bool available(const std::string& backend);

  int rank() const;
  int world_size() const;
  const std::string& backend() const;  // "gloo" or "nccl"

  // In place, from rank 0.
  void broadcast(const std::vector<at::Tensor>& tensors);
  // In place sum over ranks.
  void all_reduce_sum_(at::Tensor& tensor);
  // The sum over ranks, differentiable: the gradient that reaches `tensor` is the incoming one
  // times world_size. That is exact when every rank back-propagates the same function of the sum
  // (the quantiser's usage entropy), and makes the later gradient averaging sum the ranks'
  // contributions, as one process with the global batch would.
  at::Tensor all_reduce_sum(const at::Tensor& tensor);
  // Averages the gradients of `params` over ranks, flattened into buckets of about
  // `bucket_bytes`; parameters without a gradient take part as zeros only if some rank has one.
  void average_gradients(const std::vector<at::Tensor>& params, int64_t bucket_bytes = 25 << 20);
  // The mean of each value over ranks (for logs; every rank must pass the same keys).
  std::map<std::string, double> average(const std::map<std::string, double>& values);
  void barrier();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Decisions every rank must take together, or the ranks would part ways at the next collective:
// whether any rank was asked to stop, and the step's loss: the mean over the ranks (what one
// process with the whole batch would log), NaN when it is not finite on some rank, so that all
// skip the step. Without a group they return their argument.
bool any_rank(ProcessGroup* group, bool flag);

// A collective failed: a rank died, the network failed or the timeout passed.
struct ProcessGroupFailed : Error {
  using Error::Error;
};
double global_loss(ProcessGroup* group, double loss);

}  // namespace seqgan
