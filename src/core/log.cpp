#include "seqgan/log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string_view>

#include "seqgan/error.h"

namespace seqgan {
namespace {
std::atomic<int> g_level{static_cast<int>(LogLevel::Info)};
std::mutex g_out_mutex;
Progress::Callback& progress_callback() {
  static Progress::Callback cb;
  return cb;
}
std::string format_duration(double s) {
  std::ostringstream os;
  if (s < 60) os << std::fixed << std::setprecision(0) << s << "s";
  else if (s < 3600) os << static_cast<int>(s / 60) << "m" << std::setw(2) << std::setfill('0') << static_cast<int>(s) % 60 << "s";
  else os << static_cast<int>(s / 3600) << "h" << std::setw(2) << std::setfill('0') << static_cast<int>(s / 60) % 60 << "m";
  return os.str();
}
}  // namespace

void set_log_level(LogLevel level) { g_level = static_cast<int>(level); }
LogLevel log_level() { return static_cast<LogLevel>(g_level.load()); }

void log(LogLevel level, const std::string& message) {
  if (static_cast<int>(level) < g_level.load()) return;
  std::lock_guard<std::mutex> lock(g_out_mutex);
  const char* prefix = level == LogLevel::Warn ? "warning: " : level == LogLevel::Error ? "error: " : "";
  std::cerr << prefix << message << std::endl;
}

Progress::Progress(std::string label, int64_t total, double min_interval_s)
    : label_(std::move(label)),
      total_(total),
      min_interval_s_(min_interval_s),
      tty_(isatty(STDERR_FILENO) != 0),
      start_(std::chrono::steady_clock::now()),
      last_(start_ - std::chrono::hours(1)),
      base_(start_) {
  if (min_interval_s_ <= 0) min_interval_s_ = tty_ ? 0.2 : 10.0;
}

Progress::~Progress() {
  if (!finished_ && tty_ && !progress_callback()) std::cerr << std::endl;
}

void Progress::set_callback(Callback cb) { progress_callback() = std::move(cb); }

void Progress::update(int64_t done, const std::string& status) {
  if (progress_callback()) {
    progress_callback()(done, total_, status);
    return;
  }
  if (static_cast<int>(LogLevel::Info) < g_level.load()) return;
  const auto now = std::chrono::steady_clock::now();
  if (last_done_ < 0 && done > 0) {  // the first update, of a count resumed part-way
    base_done_ = done;
    base_ = now;
  }
  const double since_last = std::chrono::duration<double>(now - last_).count();
  if (since_last < min_interval_s_ && done < total_) return;
  last_ = now;
  last_done_ = done;
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  const double frac = total_ > 0 ? std::min(1.0, static_cast<double>(done) / static_cast<double>(total_)) : 0.0;
  // The time left at the rate of this process, counted from base_.
  const double base_s = std::chrono::duration<double>(now - base_).count();
  const std::string eta = done >= total_ ? format_duration(0)
                          : done > base_done_ && base_s > 0
                              ? format_duration(base_s * static_cast<double>(total_ - done) / static_cast<double>(done - base_done_))
                              : std::string("?");
  std::ostringstream line;
  if (tty_) {
    const int width = 24;
    const int filled = static_cast<int>(std::round(frac * width));
    line << "\r" << label_ << " [" << std::string(filled, '#') << std::string(width - filled, '.') << "] " << done << "/"
         << total_ << " " << format_duration(elapsed) << "<" << eta << " " << status << "\033[K";
  } else {
    line << label_ << " " << done << "/" << total_ << " (" << std::fixed << std::setprecision(0) << frac * 100 << "%, "
         << format_duration(elapsed) << " elapsed, " << eta << " left) " << status << "\n";
  }
  std::lock_guard<std::mutex> lock(g_out_mutex);
  std::cerr << line.str() << std::flush;
}

void Progress::finish(const std::string& status) {
  if (finished_) return;
  if (last_done_ < total_ || !status.empty()) {
    last_ = std::chrono::steady_clock::time_point{};
    update(total_, status);
  }
  finished_ = true;
  if (tty_ && !progress_callback()) std::cerr << std::endl;
}

MetricsWriter::MetricsWriter(const std::string& path, bool append) : path_(path) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | (append ? O_APPEND : O_TRUNC), 0644);
  SEQGAN_CHECK_HINT(fd >= 0, "check that the run directory is writable", "cannot open metrics file '", path, "': ",
                    std::strerror(errno));
  ::close(fd);
}

void MetricsWriter::write(const std::string& kind, int64_t step, const std::map<std::string, double>& values) {
  if (path_.empty()) return;
  std::ostringstream os;
  os << std::setprecision(9) << "{\"kind\":\"" << kind << "\",\"step\":" << step;
  for (const auto& [k, v] : values) {
    os << ",\"" << k << "\":";
    if (std::isfinite(v)) os << v;
    else os << "null";
  }
  os << "}\n";
  const std::string line = os.str();
  std::lock_guard<std::mutex> lock(mutex_);
  const int fd = ::open(path_.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  SEQGAN_CHECK_HINT(fd >= 0, "was the run directory removed?", "cannot open metrics file '", path_, "': ",
                    std::strerror(errno));
  const off_t before = ::lseek(fd, 0, SEEK_END);
  size_t done = 0;
  int err = 0;
  while (done < line.size()) {
    const ssize_t n = ::write(fd, line.data() + done, line.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      err = n < 0 ? errno : ENOSPC;
      break;
    }
    done += static_cast<size_t>(n);
  }
  if (err != 0 && before >= 0) {
    // No half-written row: the file ends at the last whole line.
    const int ignored = ::ftruncate(fd, before);
    (void)ignored;
  }
  const int close_err = ::close(fd) == 0 ? 0 : errno;
  if (err == 0) err = close_err;
  SEQGAN_CHECK_HINT(err == 0, "free disk space, then continue the run with --resume", "cannot write step ", step,
                    " to '", path_, "': ", std::strerror(err));
}

std::string metrics_rows_up_to(const std::string& text, int64_t step, int64_t& dropped) {
  std::string kept;
  dropped = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t end = text.find('\n', pos);
    if (end == std::string::npos) {
      ++dropped;
      break;
    }
    const std::string_view line(text.data() + pos, end - pos);
    pos = end + 1;
    bool keep = false;
    try {
      const auto j = nlohmann::json::parse(line);
      keep = j.is_object() && j.contains("step") && j["step"].is_number_integer() && j["step"].get<int64_t>() <= step;
    } catch (const nlohmann::json::exception&) {
    }
    if (keep) kept.append(line).append("\n");
    else ++dropped;
  }
  return kept;
}

}  // namespace seqgan
