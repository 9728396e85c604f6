// What every training command shares: the run directory and the writer that alone touches disk
// (rank 0 in data-parallel runs).
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "data/open.h"
#include "seqgan/config.h"
#include "seqgan/data.h"
#include "seqgan/log.h"

namespace seqgan {

// A run directory: creates it, writes config.json, and appends metrics.jsonl. With `writer` false
// (ranks other than 0) nothing is written.
class RunDir {
 public:
  RunDir(std::string path, const Config& config, bool writer = true);
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }
  bool writer() const { return writer_; }
  MetricsWriter& metrics() { return *metrics_; }

 private:
  std::string path_;
  bool writer_;
  std::unique_ptr<MetricsWriter> metrics_;
};

// Writes text to a file atomically (temporary file, fsync, rename).
void write_text_atomic(const std::string& path, const std::string& text);
std::string read_text(const std::string& path);
bool file_exists(const std::string& path);

// Set by the programs' SIGINT/SIGTERM handler; training loops poll it, write a checkpoint and stop.
using StopFlag = std::function<bool()>;

torch::Device to_device(const std::string& resolved_device);

}  // namespace seqgan
