#include "io/files.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "seqgan/error.h"

namespace seqgan {
namespace {

constexpr const char* kHint = "check the free disk space and that the folder is writable; the previous file, if any, is unchanged";

// Beside the target, named by the process: two processes writing one file never share a
// temporary (within a process, one file is written by one thread at a time).
std::string temp_name(const std::string& path) { return path + ".tmp." + std::to_string(::getpid()); }

[[noreturn]] void fail(const std::string& path, const std::string& temp, const char* what, int err) {
  ::unlink(temp.c_str());
  throw Error(str("cannot write '", path, "': ", what, ": ", std::strerror(err)), kHint);
}

// Steps 3 and 4: the flushed temporary file takes the target's name, and the directory is synced.
void rename_into_place(const std::string& path, const std::string& temp) {
  if (::rename(temp.c_str(), path.c_str()) != 0) fail(path, temp, "renaming the temporary file", errno);
  sync_parent_directory(path);
}

// The whole file as a std::string or a byte vector.
template <typename Buffer>
Buffer read_whole(const std::string& path, const std::string& hint) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error(str("cannot open '", path, "': ", std::strerror(errno)), hint);
  Buffer out;
  char buf[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int e = errno;
      ::close(fd);
      throw Error(str("cannot read '", path, "': ", std::strerror(e)), hint);
    }
    if (n == 0) break;
    out.insert(out.end(), buf, buf + n);
  }
  ::close(fd);
  return out;
}

}  // namespace

std::string read_file_text(const std::string& path, const std::string& hint) { return read_whole<std::string>(path, hint); }

std::vector<uint8_t> read_file_bytes(const std::string& path, const std::string& hint) {
  return read_whole<std::vector<uint8_t>>(path, hint);
}

void sync_parent_directory(const std::string& path) {
  std::string dir = std::filesystem::path(path).parent_path().string();
  if (dir.empty()) dir = ".";
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  SEQGAN_CHECK(fd >= 0, "cannot open directory '", dir, "' to sync it: ", std::strerror(errno));
  // Some file systems cannot sync directories; the rename has happened either way.
  const bool ok = ::fsync(fd) == 0 || errno == EINVAL || errno == EROFS;
  const int e = errno;
  ::close(fd);
  SEQGAN_CHECK(ok, "cannot sync directory '", dir, "': ", std::strerror(e));
}

void write_file_atomic(const std::string& path, const void* data, size_t size) {
  const std::string temp = temp_name(path);
  const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw Error(str("cannot create '", temp, "': ", std::strerror(errno)), kHint);
  const char* p = static_cast<const char*>(data);
  size_t done = 0;
  int err = 0;
  while (done < size && err == 0) {
    const ssize_t n = ::write(fd, p + done, size - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) err = n < 0 ? errno : ENOSPC;
    else done += static_cast<size_t>(n);
  }
  if (err == 0 && ::fsync(fd) != 0) err = errno;
  if (::close(fd) != 0 && err == 0) err = errno;
  if (err != 0) fail(path, temp, "writing", err);
  rename_into_place(path, temp);
}

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)), temp_(temp_name(path_)) {}

AtomicFile::~AtomicFile() {
  if (!committed_) ::unlink(temp_.c_str());
}

void AtomicFile::commit() {
  // Step 2 for a file its writer has closed: fsync through a new descriptor.
  const int fd = ::open(temp_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(path_, temp_, "reopening the temporary file", errno);
  if (::fsync(fd) != 0) {
    const int e = errno;
    ::close(fd);
    fail(path_, temp_, "flushing to disk", e);
  }
  ::close(fd);
  rename_into_place(path_, temp_);
  committed_ = true;
}

}  // namespace seqgan
