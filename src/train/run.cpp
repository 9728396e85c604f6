#include "train/run.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "io/files.h"
#include "seqgan/checkpoint.h"
#include "seqgan/error.h"

namespace seqgan {

namespace {

// The command line of this process, for lock files ("seqgan train-tokenizer --out ...").
std::string own_command_line() {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  std::string raw((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (char& c : raw)
    if (c == '\0') c = ' ';
  while (!raw.empty() && raw.back() == ' ') raw.pop_back();
  return raw.empty() ? "?" : raw;
}

// "NAME.tmp.PID" or "NAME.tmp.PID.N": the PID, or -1 for other names.
long temporary_owner(const std::string& name) {
  const size_t at = name.rfind(".tmp.");
  if (at == std::string::npos) return -1;
  const std::string rest = name.substr(at + 5);
  size_t digits = 0;
  while (digits < rest.size() && std::isdigit(static_cast<unsigned char>(rest[digits]))) ++digits;
  if (digits == 0 || digits > 9) return -1;
  if (digits < rest.size()) {
    if (rest[digits] != '.' || digits + 1 == rest.size()) return -1;
    for (size_t i = digits + 1; i < rest.size(); ++i)
      if (!std::isdigit(static_cast<unsigned char>(rest[i]))) return -1;
  }
  return std::stol(rest.substr(0, digits));
}

// The files of a run that a fresh run would mix with its own.
const char* const kRunFiles[] = {"config.json", "metrics.jsonl", "checkpoint.safetensors"};

}  // namespace

PathLock::PathLock(std::string lock_path, const std::string& what, bool remove)
    : path_(std::move(lock_path)), remove_(remove) {
  for (int attempt = 0;; ++attempt) {
    fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    SEQGAN_CHECK_HINT(fd_ >= 0, "check that the folder exists and is writable", "cannot open the lock file '", path_,
                      "': ", std::strerror(errno));
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      const int err = errno;
      std::string holder(512, '\0');
      const ssize_t n = ::pread(fd_, holder.data(), holder.size(), 0);
      holder.resize(n > 0 ? static_cast<size_t>(n) : 0);
      while (!holder.empty() && (holder.back() == '\n' || holder.back() == '\0')) holder.pop_back();
      ::close(fd_);
      fd_ = -1;
      SEQGAN_CHECK(err == EWOULDBLOCK, "cannot lock '", path_, "': ", std::strerror(err));
      throw Error(str(what, " is in use by another seqgan process (", holder.empty() ? "unknown" : holder, ")"),
                  "wait for it to finish or stop it, or choose another output");
    }
    // A holder that removes its lock file on release may have done so after we opened it: then we
    // hold a lock on a file nobody else will see. Try again on the file now at the path.
    struct stat ours {}, now {};
    if (::fstat(fd_, &ours) == 0 && ::stat(path_.c_str(), &now) == 0 && ours.st_ino == now.st_ino &&
        ours.st_dev == now.st_dev)
      break;
    ::close(fd_);
    fd_ = -1;
    SEQGAN_CHECK(attempt < 100, "cannot lock '", path_, "': it keeps being replaced");
  }
  const std::string holder = str("pid ", ::getpid(), ": ", own_command_line(), "\n");
  if (::ftruncate(fd_, 0) == 0) {
    const ssize_t n = ::pwrite(fd_, holder.data(), holder.size(), 0);
    (void)n;  // the record is informative; the lock is the flock
  }
}

PathLock::~PathLock() {
  if (fd_ < 0) return;
  if (remove_) ::unlink(path_.c_str());  // while still holding it, so no one locks the old file
  ::close(fd_);
}

int64_t remove_stale_temporaries(const std::string& dir, const std::string& prefix) {
  namespace fs = std::filesystem;
  int64_t bytes = 0;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(prefix, 0) != 0) continue;
    const long owner = temporary_owner(name);
    if (owner < 0 || owner == ::getpid()) continue;
    std::error_code e2;
    if (entry.is_directory(e2)) {
      const auto n = fs::remove_all(entry.path(), e2);
      if (!e2 && n > 0) bytes += 1;
    } else if (entry.is_regular_file(e2)) {
      const auto size = entry.file_size(e2);
      if (fs::remove(entry.path(), e2)) bytes += static_cast<int64_t>(size);
    }
  }
  return bytes;
}

namespace {
std::string parent_of(const std::string& path) {
  const std::string p = std::filesystem::path(path).parent_path().string();
  return p.empty() ? "." : p;
}
std::string name_of(const std::string& path) {
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return std::filesystem::path(p).filename().string();
}
}  // namespace

OutputFolder::OutputFolder(std::string path) : final_(std::move(path)) {
  namespace fs = std::filesystem;
  while (final_.size() > 1 && final_.back() == '/') final_.pop_back();
  const std::string parent = parent_of(final_);
  std::error_code ec;
  fs::create_directories(parent, ec);
  SEQGAN_CHECK_HINT(!ec, "choose another output folder", "cannot create '", parent, "': ", ec.message());
  lock_ = std::make_unique<PathLock>(final_ + ".lock", str("output folder '", final_, "'"), true);
  remove_stale_temporaries(parent, name_of(final_) + ".tmp.");
  temp_ = str(final_, ".tmp.", ::getpid());
  fs::create_directories(temp_, ec);
  SEQGAN_CHECK_HINT(!ec, "check that the folder is writable", "cannot create '", temp_, "': ", ec.message());
}

OutputFolder::~OutputFolder() {
  if (committed_) return;
  std::error_code ec;
  std::filesystem::remove_all(temp_, ec);
}

void OutputFolder::commit() {
  namespace fs = std::filesystem;
  SEQGAN_CHECK(!committed_, "the output '", final_, "' is committed already");
  std::error_code ec;
  if (fs::exists(final_, ec)) {
    // Swap the old and the new output in one step; the old one is then at the temporary path.
    if (::renameat2(AT_FDCWD, temp_.c_str(), AT_FDCWD, final_.c_str(), RENAME_EXCHANGE) == 0) {
      committed_ = true;
      fs::remove_all(temp_, ec);
      return;
    }
    // Without exchange: move the old output aside, the new one in, then delete the old.
    const std::string aside = str(final_, ".tmp.", ::getpid(), ".1");
    SEQGAN_CHECK(::rename(final_.c_str(), aside.c_str()) == 0, "cannot move the previous '", final_, "' aside: ",
                 std::strerror(errno));
    if (::rename(temp_.c_str(), final_.c_str()) != 0) {
      const int err = errno;
      ::rename(aside.c_str(), final_.c_str());
      throw Error(str("cannot move '", temp_, "' to '", final_, "': ", std::strerror(err)));
    }
    committed_ = true;
    fs::remove_all(aside, ec);
    return;
  }
  SEQGAN_CHECK(::rename(temp_.c_str(), final_.c_str()) == 0, "cannot move '", temp_, "' to '", final_, "': ",
               std::strerror(errno));
  committed_ = true;
}

std::unique_ptr<PathLock> lock_output_file(const std::string& path) {
  const std::string parent = parent_of(path);
  std::error_code ec;
  std::filesystem::create_directories(parent, ec);
  SEQGAN_CHECK_HINT(!ec, "choose another output file", "cannot create '", parent, "': ", ec.message());
  auto lock = std::make_unique<PathLock>(path + ".lock", str("output file '", path, "'"), true);
  remove_stale_temporaries(parent, name_of(path) + ".tmp.");
  return lock;
}

RunDir::RunDir(std::string path, bool writer, RunStart start) : path_(std::move(path)), writer_(writer), start_(start) {
  if (!writer_) return;
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(path_, ec);
  SEQGAN_CHECK_HINT(!ec, "choose another --out directory", "cannot create run directory '", path_, "': ", ec.message());
  lock_ = std::make_unique<PathLock>(file(".lock"), str("run directory '", path_, "'"));
  std::vector<std::string> found;
  for (const char* name : kRunFiles)
    if (fs::exists(file(name))) found.push_back(name);
  if (start_ == RunStart::kFresh && !found.empty()) {
    std::string list;
    for (const auto& f : found) list += (list.empty() ? "" : ", ") + f;
    throw Error(str("run directory '", path_, "' already holds a run (", list, ")"),
                "continue it with --resume, start over in it with --overwrite (deletes that run), or choose another --out");
  }
  if (start_ == RunStart::kOverwrite) {
    // The previous run's own files: its state, models, logs and images; nothing else.
    for (const auto& entry : fs::directory_iterator(path_)) {
      const std::string name = entry.path().filename().string();
      if (name == ".lock") continue;
      const bool ours = entry.is_regular_file() && (name == "config.json" || name == "metrics.jsonl" ||
                                                    name == "classes.json" || name == "skipped_files.txt" ||
                                                    entry.path().extension() == ".safetensors");
      if (ours) fs::remove(entry.path());
      else if (name == "samples" && entry.is_directory()) fs::remove_all(entry.path());
    }
  }
  int64_t removed = remove_stale_temporaries(path_);
  if (fs::is_directory(file("samples"))) removed += remove_stale_temporaries(file("samples"));
  if (removed > 0)
    log_info(str("removed temporary files of an interrupted run from '", path_, "' (", removed / (1 << 20), " MiB)"));
}

void RunDir::begin(const Config& config, int64_t resume_step) {
  if (!writer_) {
    metrics_ = std::make_unique<MetricsWriter>();
    return;
  }
  write_text_atomic(file("config.json"), config_to_json(config) + "\n");
  if (start_ == RunStart::kResume) {
    const int64_t dropped = truncate_metrics(file("metrics.jsonl"), resume_step);
    if (dropped > 0)
      log_info(str("metrics.jsonl: dropped ", dropped, " row(s) logged after the checkpoint of step ", resume_step));
  }
  metrics_ = std::make_unique<MetricsWriter>(file("metrics.jsonl"));
}

int64_t truncate_metrics(const std::string& path, int64_t step) {
  if (!file_exists(path)) return 0;
  int64_t dropped = 0;
  const std::string kept = metrics_rows_up_to(read_text(path), step, dropped);
  if (dropped > 0) write_text_atomic(path, kept);
  return dropped;
}

void check_finite_state(const std::map<std::string, at::Tensor>& tensors, int64_t step,
                        const std::string& checkpoint_path, const std::string& lr_key) {
  std::vector<std::string> bad;
  for (const auto& [name, t] : tensors) {
    if (!t.is_floating_point() || t.numel() == 0) continue;
    if (!at::isfinite(t).all().item<bool>()) bad.push_back(name);
  }
  if (bad.empty()) return;
  std::string list;
  for (size_t i = 0; i < bad.size() && i < 5; ++i) list += (i ? ", " : "") + bad[i];
  if (bad.size() > 5) list += ", ...";
  std::string kept = "no checkpoint was written before";
  if (file_exists(checkpoint_path)) {
    try {
      kept = str("the last good checkpoint (step ", read_checkpoint_meta(checkpoint_path).step, ") is kept");
    } catch (const Error&) {
      kept = "the checkpoint file there is left as it was";
    }
  }
  const std::string dir = std::filesystem::path(checkpoint_path).parent_path().string();
  throw Error(str("step ", step, ": training diverged: ", bad.size(), " of ", tensors.size(),
                  " tensors of the training state hold NaN or infinity (", list, "); not saved, ", kept),
              str("resume with a lower learning rate: --out ", dir.empty() ? "." : dir, " --resume --set ", lr_key,
                  "=SMALLER"));
}


void write_text_atomic(const std::string& path, const std::string& text) { write_file_atomic(path, text); }

std::string read_text(const std::string& path) { return read_file_text(path); }

bool file_exists(const std::string& path) { return std::filesystem::exists(path); }

void SkippedFiles::report() {
  const auto* encoded = dynamic_cast<const EncodedImageDataset*>(data_.get());
  if (encoded == nullptr) return;
  const int64_t n = encoded->bad_count();
  if (n <= reported_) return;
  reported_ = n;
  const auto names = encoded->bad_items();
  std::string first;
  for (size_t i = 0; i < names.size() && i < 3; ++i) first += "\n  " + names[i];
  std::string all;
  for (const auto& name : names) all += name + "\n";
  if (!list_path_.empty()) write_text_atomic(list_path_, all);
  log_warn(str("skipped ", n, " unreadable image(s) of ", data_->description(), " (data.skip_bad_files); each was "
               "replaced by the next readable one", list_path_.empty() ? "" : "; all are listed in " + list_path_, ":",
               first, names.size() > 3 ? "\n  ..." : ""));
}

std::string restart_hint(const std::string& checkpoint_path) {
  const std::string dir = std::filesystem::path(checkpoint_path).parent_path().string();
  if (file_exists(checkpoint_path)) {
    try {
      return str("see the other ranks' output for the first error; restart every rank with --resume: the run continues "
                 "from step ", read_checkpoint_meta(checkpoint_path).step, ", its last checkpoint (any number of ranks "
                 "can continue it)");
    } catch (const Error&) {
    }
  }
  return str("see the other ranks' output for the first error; no checkpoint was written yet (", checkpoint_path,
             "), so nothing can be resumed: start every rank again with --overwrite");
}

torch::Device to_device(const std::string& resolved_device) {
  return resolved_device == "cuda" ? torch::Device(torch::kCUDA, 0) : torch::Device(torch::kCPU);
}

}  // namespace seqgan
