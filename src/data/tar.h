// Tar archives for the shard data sets: an index of an archive's regular members (name, offset of
// the data, size) built from the headers alone, and a writer of POSIX ustar archives (pax records
// for names longer than 100 bytes).
//
// seqgan reads tar itself instead of through libarchive because the shards need random access:
// any member, at any time, from any thread, read with pread at its offset. libarchive's reader
// streams an archive from its start and offers no such access. Indexing needs only the 512-byte
// headers, so the reader works over a byte-reading callback; the fuzzer drives it from memory.
//
// Needs no libtorch headers (the fuzz target compiles this file alone).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "io/files.h"

namespace seqgan {

struct TarEntry {
  std::string name;     // the member's path in the archive, pax path or GNU long name applied
  uint64_t offset = 0;  // of the member's data, from the start of the archive
  uint64_t size = 0;    // bytes of data
};

// Reads exactly `size` bytes at `offset` into `out`, or throws seqgan::Error. index_tar asks only
// for ranges inside [0, file_size).
using TarReadAt = std::function<void(uint64_t offset, void* out, size_t size)>;

// The largest pax extended header or GNU long name accepted (their data is held in memory).
constexpr uint64_t kTarMaxMetadataBytes = uint64_t{1} << 20;

// The regular files of an archive of `file_size` bytes, in archive order. Parses POSIX ustar
// headers (checksum verified, prefix field applied), GNU long names ('L'), pax extended headers
// ('x': path and size), GNU base-256 sizes and old v7 headers; directories, links, devices,
// global pax headers and other types are skipped. The archive ends at the first zero block or at
// the end of the data. Throws seqgan::Error naming `name` and the byte offset for a header cut
// short, member data past the end of the archive (a truncated file), a bad checksum, a non-octal
// number, a malformed pax record, metadata over kTarMaxMetadataBytes, metadata headers with no
// member after them, and an archive without any member ("an empty shard").
std::vector<TarEntry> index_tar(const TarReadAt& read_at, uint64_t file_size, const std::string& name);

// The same over an archive held in memory.
std::vector<TarEntry> index_tar(const uint8_t* data, size_t size, const std::string& name);

// An archive file open for reading, by offset with pread: any thread, any order. Errors name
// the file.
class TarFile {
 public:
  explicit TarFile(std::string path);
  ~TarFile();
  TarFile(const TarFile&) = delete;
  TarFile& operator=(const TarFile&) = delete;

  // index_tar over the file.
  std::vector<TarEntry> index() const;
  // Exactly `size` bytes at `offset` (retrying short reads); `what` names them in errors, e.g.
  // "shard-000000.tar[000012.jpg]". A file that ends before them is an error.
  std::vector<uint8_t> read(uint64_t offset, uint64_t size, const std::string& what) const;
  void read(uint64_t offset, void* out, size_t size, const std::string& what) const;

  const std::string& path() const { return path_; }
  uint64_t size() const { return size_; }

 private:
  std::string path_;
  int fd_ = -1;
  uint64_t size_ = 0;
};

// Writes a ustar archive: members are added in order, finish() writes the end blocks, pads to
// tar's 10240-byte record, fsyncs and renames the temporary file (<path>.tmp.<pid>) to `path`, so
// a reader never sees half an archive. Without finish() (an exception on the way) the temporary
// file is removed. Every header has mode 0644, owner 0 and time 0, so the same members always
// give the same bytes.
class TarWriter {
 public:
  explicit TarWriter(std::string path);
  ~TarWriter();
  TarWriter(const TarWriter&) = delete;
  TarWriter& operator=(const TarWriter&) = delete;

  // A regular file `name` (a pax path record precedes the header when name exceeds 100 bytes).
  void add(const std::string& name, const uint8_t* data, size_t size);
  void add(const std::string& name, const std::string& data) {
    add(name, reinterpret_cast<const uint8_t*>(data.data()), data.size());
  }
  void finish();

  const std::string& path() const { return path_; }
  int64_t members() const { return members_; }

 private:
  void write(const void* data, size_t size);
  void write_header(const std::string& name, uint64_t size, char type);
  void pad();

  std::string path_;
  std::unique_ptr<AtomicFile> file_out_;
  std::string temp_;
  std::FILE* file_ = nullptr;
  uint64_t written_ = 0;
  int64_t members_ = 0;
};

}  // namespace seqgan
