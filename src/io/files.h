// Whole files in and out. Reading: the bytes of a file, with an error that names it and the
// reason. Writing: atomically, the one way seqgan writes every file that must never be seen
// half-written (checkpoints, configs, token files, images, archives, reports):
//
//   1. the bytes go to a temporary file beside the target, NAME.tmp.PID;
//   2. it is flushed to the disk (fsync) and closed, every error checked;
//   3. it is renamed over the target (atomic on POSIX file systems);
//   4. the directory is synced, so that the rename survives a power cut.
//
// On any failure the temporary file is removed and the previous file, if any, is left as it was;
// the error names the file, the system's reason and the likely fix (disk full, read-only folder).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace seqgan {

// The whole file; a file that cannot be opened or read is an Error naming it, the system's reason
// and `hint`.
std::string read_file_text(const std::string& path, const std::string& hint = "check that the path exists and is readable");
std::vector<uint8_t> read_file_bytes(const std::string& path,
                                     const std::string& hint = "check that the path exists and is readable");

void write_file_atomic(const std::string& path, const void* data, size_t size);
inline void write_file_atomic(const std::string& path, const std::string& bytes) {
  write_file_atomic(path, bytes.data(), bytes.size());
}

// For writers that produce a file in pieces through their own library (zlib's gzFile, libzip, a
// stdio stream): write to temp_path(), close it, then commit() syncs, renames and syncs the
// directory. Destroyed without commit(), it removes the temporary file.
class AtomicFile {
 public:
  explicit AtomicFile(std::string path);
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  ~AtomicFile();

  const std::string& temp_path() const { return temp_; }
  const std::string& path() const { return path_; }
  // Steps 2-4 above on the closed temporary file.
  void commit();

 private:
  std::string path_, temp_;
  bool committed_ = false;
};

// Syncs the directory holding `path` (ignored where the file system cannot sync directories).
void sync_parent_directory(const std::string& path);

}  // namespace seqgan
