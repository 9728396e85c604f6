// Logging, progress and metrics. Training code reports through these so that, once training runs
// across ranks, only rank 0 has to print and write.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>

namespace seqgan {

enum class LogLevel { Debug = 0, Info = 1, Warn = 2, Error = 3, Quiet = 4 };

void set_log_level(LogLevel level);
LogLevel log_level();
void log(LogLevel level, const std::string& message);
inline void log_info(const std::string& m) { log(LogLevel::Info, m); }
inline void log_warn(const std::string& m) { log(LogLevel::Warn, m); }

// Progress of a long loop: a redrawn bar on a terminal, plain periodic lines otherwise (logs,
// CI). A callback, when set, receives every update instead (for embedders).
class Progress {
 public:
  using Callback = std::function<void(int64_t done, int64_t total, const std::string& status)>;
  Progress(std::string label, int64_t total, double min_interval_s = 0.0);
  ~Progress();
  void update(int64_t done, const std::string& status = {});
  void finish(const std::string& status = {});
  static void set_callback(Callback cb);

 private:
  std::string label_;
  int64_t total_;
  double min_interval_s_;
  bool tty_;
  bool finished_ = false;
  int64_t last_done_ = -1;
  std::chrono::steady_clock::time_point start_, last_;
  // Where the rate is counted from: the start at zero, or a resumed count's first update.
  int64_t base_done_ = 0;
  std::chrono::steady_clock::time_point base_;
};

// Appends one JSON object per line to a metrics file (`metrics.jsonl` in a run directory).
class MetricsWriter {
 public:
  MetricsWriter() = default;
  explicit MetricsWriter(const std::string& path, bool append = true);
  bool enabled() const { return !path_.empty(); }
  void write(const std::string& kind, int64_t step, const std::map<std::string, double>& values);

 private:
  std::string path_;
  std::mutex mutex_;
};

// The rows of metrics.jsonl text to keep when a run resumes from the checkpoint of `step`: the
// whole lines that parse as a JSON object with an integer "step" of at most `step`, in order.
// `dropped` counts the other lines, a last line without its newline (a row a killed writer did
// not finish) included.
std::string metrics_rows_up_to(const std::string& text, int64_t step, int64_t& dropped);

}  // namespace seqgan
