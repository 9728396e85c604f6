#include "train/run.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "seqgan/error.h"

namespace seqgan {

void write_text_atomic(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp." + std::to_string(getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  SEQGAN_CHECK_HINT(fd >= 0, "check that the directory exists and is writable", "cannot create '", tmp, "'");
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n <= 0) {
      ::close(fd);
      ::unlink(tmp.c_str());
      throw Error(str("write to '", tmp, "' failed"), "check free disk space");
    }
    done += static_cast<size_t>(n);
  }
  ::fsync(fd);
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    ::unlink(tmp.c_str());
    throw Error(str("cannot rename '", tmp, "' to '", path, "'"));
  }
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  SEQGAN_CHECK(in.good(), "cannot open '", path, "'");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool file_exists(const std::string& path) { return std::filesystem::exists(path); }

RunDir::RunDir(std::string path, const Config& config, bool writer) : path_(std::move(path)), writer_(writer) {
  if (!writer_) {
    metrics_ = std::make_unique<MetricsWriter>();
    return;
  }
  std::error_code ec;
  std::filesystem::create_directories(path_, ec);
  SEQGAN_CHECK_HINT(!ec, "choose another --out directory", "cannot create run directory '", path_, "': ", ec.message());
  write_text_atomic(file("config.json"), config_to_json(config) + "\n");
  metrics_ = std::make_unique<MetricsWriter>(file("metrics.jsonl"));
}

torch::Device to_device(const std::string& resolved_device) {
  return resolved_device == "cuda" ? torch::Device(torch::kCUDA, 0) : torch::Device(torch::kCPU);
}

}  // namespace seqgan
