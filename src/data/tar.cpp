// The tar index reader and the ustar writer of the shard data sets (see tar.h).
#include "data/tar.h"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/files.h"
#include "seqgan/error.h"

namespace seqgan {
namespace {

constexpr uint64_t kBlock = 512;
constexpr uint64_t kRecord = 20 * kBlock;  // tar's default blocking factor, as GNU tar and Python pad

constexpr const char* kTarHint =
    "the shard is damaged or not a tar archive: re-create it, or move it out of the shard folder "
    "(`tar tvf` on it shows how far it reads)";

// Offsets of the ustar header fields.
constexpr size_t kNameAt = 0, kNameLen = 100;
constexpr size_t kModeAt = 100, kUidAt = 108, kGidAt = 116;
constexpr size_t kSizeAt = 124, kSizeLen = 12;
constexpr size_t kMtimeAt = 136;
constexpr size_t kChecksumAt = 148, kChecksumLen = 8;
constexpr size_t kTypeAt = 156;
constexpr size_t kMagicAt = 257;    // "ustar\0" "00" (POSIX) or "ustar  \0" (GNU)
constexpr size_t kVersionAt = 263;
constexpr size_t kDevMajorAt = 329, kDevMinorAt = 337;
constexpr size_t kPrefixAt = 345, kPrefixLen = 155;

uint64_t round_up(uint64_t n) { return (n + kBlock - 1) / kBlock * kBlock; }

bool all_zero(const unsigned char* p, size_t n) {
  return std::all_of(p, p + n, [](unsigned char c) { return c == 0; });
}

std::string field_string(const unsigned char* p, size_t n) {
  const char* c = reinterpret_cast<const char*>(p);
  return std::string(c, strnlen(c, n));
}

// A numeric header field: optional leading spaces, octal digits, then only spaces and NULs (an
// empty field is 0, as Python's tarfile reads it); or GNU's base-256 form, 0x80 then a big-endian
// number, used for sizes of 8 GiB and more. False for anything else, negative numbers and values
// of 2^63 or more.
bool parse_number(const unsigned char* p, size_t n, uint64_t& value) {
  value = 0;
  if (p[0] == 0x80) {
    for (size_t i = 1; i < n; ++i) {
      if (value >> 55) return false;
      value = (value << 8) | p[i];
    }
    return value < (uint64_t{1} << 63);
  }
  size_t i = 0;
  while (i < n && p[i] == ' ') ++i;
  for (; i < n && p[i] >= '0' && p[i] <= '7'; ++i) {
    if (value >> 60) return false;
    value = value * 8 + static_cast<uint64_t>(p[i] - '0');
  }
  for (; i < n; ++i) {
    if (p[i] != ' ' && p[i] != 0) return false;
  }
  return true;
}

// What pending extended headers ('x', 'L') say about the next member.
struct Pending {
  uint64_t at = 0;  // offset of the first of them, for errors
  bool any = false;
  bool has_path = false, has_long_name = false, has_size = false;
  std::string path, long_name;
  uint64_t size = 0;
};

[[noreturn]] void fail(const std::string& name, uint64_t at, const std::string& what) {
  throw Error(str("tar shard '", name, "': ", what, " (header at byte ", at, ")"), kTarHint);
}

// pax records "LEN KEY=VALUE\n", LEN counting the whole record in decimal. Only path and size
// matter here; NUL padding after the last record is tolerated.
void parse_pax(const std::string& data, const std::string& name, uint64_t at, Pending& pending) {
  size_t i = 0;
  while (i < data.size() && data[i] != '\0') {
    size_t j = i;
    uint64_t len = 0;
    while (j < data.size() && data[j] >= '0' && data[j] <= '9' && j - i < 19) {
      len = len * 10 + static_cast<uint64_t>(data[j] - '0');
      ++j;
    }
    if (j == i || j >= data.size() || data[j] != ' ' || len <= j - i + 1 || len > data.size() - i) {
      fail(name, at, str("malformed pax record at byte ", i, " of the extended header: expected "
                          "\"LENGTH KEY=VALUE\\n\" within its ", data.size(), " bytes"));
    }
    const std::string record = data.substr(j + 1, static_cast<size_t>(len) - (j + 1 - i));
    const size_t eq = record.find('=');
    if (record.back() != '\n' || eq == std::string::npos || eq == 0) {
      fail(name, at, str("malformed pax record at byte ", i, " of the extended header: expected "
                          "KEY=VALUE ending in a newline, found '",
                          printable(reinterpret_cast<const unsigned char*>(record.data()),
                                 std::min<size_t>(record.size(), 60)), "'"));
    }
    const std::string key = record.substr(0, eq);
    const std::string value = record.substr(eq + 1, record.size() - eq - 2);
    if (key == "path") {
      pending.path = value;
      pending.has_path = true;
    } else if (key == "size") {
      uint64_t size = 0;
      bool ok = !value.empty() && value.size() <= 18;
      for (const char c : value) {
        ok = ok && c >= '0' && c <= '9';
        if (ok) size = size * 10 + static_cast<uint64_t>(c - '0');
      }
      if (!ok) fail(name, at, str("pax size record '", value, "' is not a decimal number below 10^18"));
      pending.size = size;
      pending.has_size = true;
    }
    i += static_cast<size_t>(len);
  }
}

}  // namespace

std::vector<TarEntry> index_tar(const TarReadAt& read_at, uint64_t file_size, const std::string& name) {
  std::vector<TarEntry> out;
  Pending pending;
  bool any_member = false;
  unsigned char h[kBlock];
  uint64_t pos = 0;
  while (pos < file_size) {
    if (file_size - pos < kBlock) {
      // Bytes after the last member that do not fill a block: zeros are loose padding, anything
      // else is a header cut short.
      read_at(pos, h, static_cast<size_t>(file_size - pos));
      if (all_zero(h, static_cast<size_t>(file_size - pos))) break;
      fail(name, pos, str("the archive ends inside a header, ", file_size - pos,
                          " of its 512 bytes present (the file is truncated)"));
    }
    read_at(pos, h, kBlock);
    if (all_zero(h, kBlock)) break;  // the end-of-archive blocks

    // The checksum is the sum of the header's bytes with the checksum field read as spaces; old
    // writers summed signed chars, which is accepted too.
    uint64_t stored = 0;
    if (!parse_number(h + kChecksumAt, kChecksumLen, stored) || h[kChecksumAt] == 0x80) {
      fail(name, pos, str("the checksum field '", printable(h + kChecksumAt, kChecksumLen),
                          "' is not an octal number: this is not a tar header"));
    }
    uint64_t sum = 0;
    int64_t signed_sum = 0;
    for (size_t i = 0; i < kBlock; ++i) {
      const bool in_field = i >= kChecksumAt && i < kChecksumAt + kChecksumLen;
      const unsigned char c = in_field ? ' ' : h[i];
      sum += c;
      signed_sum += static_cast<signed char>(c);
    }
    if (stored != sum && static_cast<int64_t>(stored) != signed_sum) {
      fail(name, pos, str("header checksum mismatch: stored ", stored, ", computed ", sum,
                          ": the header is corrupt, or the data before it has the wrong length"));
    }
    any_member = true;

    const char type = static_cast<char>(h[kTypeAt]);
    uint64_t size = 0;
    if (!parse_number(h + kSizeAt, kSizeLen, size)) {
      fail(name, pos, str("the size field '", printable(h + kSizeAt, kSizeLen), "' is not an octal number"));
    }
    const bool extension = type == 'L' || type == 'x' || type == 'g' || type == 'K';
    if (pending.has_size && !extension) size = pending.size;
    std::string member = field_string(h + kNameAt, kNameLen);
    const bool posix = std::memcmp(h + kMagicAt, "ustar\0", 6) == 0;
    if (posix && h[kPrefixAt] != 0) member = field_string(h + kPrefixAt, kPrefixLen) + "/" + member;
    if (pending.has_long_name) member = pending.long_name;
    if (pending.has_path) member = pending.path;

    const uint64_t data = pos + kBlock;
    // Hard and symbolic links, devices, directories and FIFOs carry no data (as Python's tarfile
    // reads them, whatever their size field says); every other type is followed by `size` bytes.
    const bool has_data = !(type >= '1' && type <= '6');
    if (has_data && size > file_size - data) {
      fail(name, pos, str("member '", member, "' declares ", size, " bytes of data but the archive ends ",
                          file_size - data, " bytes after its header (the file is truncated)"));
    }
    const uint64_t next = has_data ? data + round_up(size) : data;

    if (type == 'L' || type == 'x') {
      if (size > kTarMaxMetadataBytes) {
        fail(name, pos, str(type == 'L' ? "a GNU long name" : "a pax extended header", " of ", size,
                            " bytes (the most accepted is ", kTarMaxMetadataBytes, ")"));
      }
      std::string meta(static_cast<size_t>(size), '\0');
      if (size > 0) read_at(data, meta.data(), meta.size());
      if (!pending.any) pending.at = pos;
      pending.any = true;
      if (type == 'L') {
        pending.long_name = meta.substr(0, meta.find('\0'));
        pending.has_long_name = true;
      } else {
        parse_pax(meta, name, pos, pending);
      }
    } else if (type == 'g' || type == 'K') {
      // A global pax header or a GNU long link name: nothing a member's name or data depends on.
    } else {
      const bool regular = type == '0' || type == '\0' || type == '7';
      // Old archives mark directories as regular files whose name ends in '/'.
      if (regular && !(member.size() > 0 && member.back() == '/')) out.push_back({member, data, size});
      pending = Pending{};
    }
    pos = next;
  }
  if (pending.any) {
    fail(name, pending.at, "an extended header (pax 'x' or GNU 'L') is not followed by a member: the "
                           "archive is truncated");
  }
  if (!any_member) {
    throw Error(str("tar shard '", name, "' is an empty shard: ",
                    file_size == 0 ? "the file has 0 bytes" : "it holds no member, only the end blocks"),
                "remove it from the shard folder, or re-create it");
  }
  return out;
}

std::vector<TarEntry> index_tar(const uint8_t* data, size_t size, const std::string& name) {
  return index_tar(
      [&](uint64_t offset, void* out, size_t n) { std::memcpy(out, data + offset, n); }, size, name);
}

TarFile::TarFile(std::string path) : path_(std::move(path)) {
  fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  SEQGAN_CHECK_HINT(fd_ >= 0, "check the path and its permissions", "cannot open tar shard '", path_, "': ",
                    std::strerror(errno));
  struct stat st {};
  const bool regular = ::fstat(fd_, &st) == 0 && S_ISREG(st.st_mode);
  if (!regular) {
    ::close(fd_);
    fd_ = -1;
  }
  SEQGAN_CHECK_HINT(regular, "a shard must be a regular .tar file", "'", path_, "' is not a regular file");
  size_ = static_cast<uint64_t>(st.st_size);
}

TarFile::~TarFile() {
  if (fd_ >= 0) ::close(fd_);
}

std::vector<TarEntry> TarFile::index() const {
  return index_tar([this](uint64_t offset, void* out, size_t n) { read(offset, out, n, "a tar header"); }, size_,
                   path_);
}

void TarFile::read(uint64_t offset, void* out, size_t size, const std::string& what) const {
  auto* p = static_cast<unsigned char*>(out);
  size_t done = 0;
  while (done < size) {
    const ssize_t n = ::pread(fd_, p + done, size - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    SEQGAN_CHECK_HINT(n >= 0, "check that the file is readable", "cannot read ", size, " bytes at byte ", offset,
                      " of '", path_, "' for ", what, ": ", std::strerror(errno));
    SEQGAN_CHECK_HINT(n > 0, "the file changed after it was opened; reopen the data set", "'", path_,
                      "' ends at byte ", offset + done, ", before the ", size, " bytes of ", what,
                      " starting at byte ", offset, " were read");
    done += static_cast<size_t>(n);
  }
}

std::vector<uint8_t> TarFile::read(uint64_t offset, uint64_t size, const std::string& what) const {
  SEQGAN_CHECK_HINT(size <= size_ && offset <= size_ - size, "the file changed after it was opened; reopen the data set",
                    "'", path_, "' has ", size_, " bytes, too few for the ", size, " bytes of ", what,
                    " at byte ", offset);
  std::vector<uint8_t> bytes(static_cast<size_t>(size));
  read(offset, bytes.data(), bytes.size(), what);
  return bytes;
}

// ---------------------------------------------------------------------------------------------

namespace {

// "LEN path=VALUE\n" with LEN the length of the whole record, its own digits included.
std::string pax_record(const std::string& key, const std::string& value) {
  const size_t body = 1 + key.size() + 1 + value.size() + 1;  // ' ' KEY '=' VALUE '\n'
  size_t len = body + 1;
  while (std::to_string(len).size() + body != len) len = std::to_string(len).size() + body;
  return std::to_string(len) + " " + key + "=" + value + "\n";
}

void put_octal(unsigned char* field, size_t width, uint64_t value) {
  // width - 1 digits and a NUL, as POSIX writes the numeric fields.
  for (size_t i = width - 1; i-- > 0; value >>= 3) field[i] = static_cast<unsigned char>('0' + (value & 7));
  field[width - 1] = 0;
}

}  // namespace

TarWriter::TarWriter(std::string path) : path_(std::move(path)), file_out_(std::make_unique<AtomicFile>(path_)) {
  temp_ = file_out_->temp_path();
  file_ = std::fopen(temp_.c_str(), "wb");
  SEQGAN_CHECK_HINT(file_ != nullptr, "check that the output folder exists and is writable",
                    "cannot create '", temp_, "': ", std::strerror(errno));
}

TarWriter::~TarWriter() {
  if (file_ != nullptr) std::fclose(file_);  // the AtomicFile removes the temporary file
}

void TarWriter::write(const void* data, size_t size) {
  SEQGAN_CHECK(file_ != nullptr, "'", path_, "' is already finished");
  SEQGAN_CHECK_HINT(size == 0 || std::fwrite(data, 1, size, file_) == size, "check the free disk space",
                    "cannot write '", temp_, "': ", std::strerror(errno));
  written_ += size;
}

void TarWriter::pad() {
  static const unsigned char kZeros[kBlock] = {};
  write(kZeros, static_cast<size_t>(round_up(written_) - written_));
}

void TarWriter::write_header(const std::string& name, uint64_t size, char type) {
  unsigned char h[kBlock] = {};
  std::memcpy(h + kNameAt, name.data(), std::min(name.size(), kNameLen));
  put_octal(h + kModeAt, 8, 0644);
  put_octal(h + kUidAt, 8, 0);
  put_octal(h + kGidAt, 8, 0);
  put_octal(h + kSizeAt, kSizeLen, size);
  put_octal(h + kMtimeAt, 12, 0);
  h[kTypeAt] = static_cast<unsigned char>(type);
  std::memcpy(h + kMagicAt, "ustar\0", 6);
  std::memcpy(h + kVersionAt, "00", 2);
  put_octal(h + kDevMajorAt, 8, 0);
  put_octal(h + kDevMinorAt, 8, 0);
  std::memset(h + kChecksumAt, ' ', kChecksumLen);
  uint64_t sum = 0;
  for (const unsigned char c : h) sum += c;
  put_octal(h + kChecksumAt, 7, sum);  // six digits, NUL, then the space already there
  write(h, kBlock);
}

void TarWriter::add(const std::string& name, const uint8_t* data, size_t size) {
  SEQGAN_CHECK(!name.empty() && name.find('\0') == std::string::npos, "'", path_,
               "': a member needs a non-empty name without NUL bytes");
  SEQGAN_CHECK(size < (uint64_t{1} << 33), "'", path_, "': member '", name, "' has ", size,
               " bytes; ustar holds at most 8 GiB - 1 per member");
  if (name.size() > kNameLen) {
    const std::string record = pax_record("path", name);
    write_header("././@PaxHeader", record.size(), 'x');
    write(record.data(), record.size());
    pad();
  }
  write_header(name, size, '0');
  write(data, size);
  pad();
  ++members_;
}

void TarWriter::finish() {
  static const unsigned char kZeros[2 * kBlock] = {};
  write(kZeros, sizeof(kZeros));
  static const unsigned char kRecordZeros[kRecord] = {};
  write(kRecordZeros, static_cast<size_t>((kRecord - written_ % kRecord) % kRecord));
  const bool flushed = std::fflush(file_) == 0;
  const int flush_errno = errno;
  const bool closed = std::fclose(file_) == 0;
  file_ = nullptr;
  SEQGAN_CHECK_HINT(flushed && closed, "check the free disk space", "cannot write '", temp_, "': ",
                    std::strerror(flushed ? errno : flush_errno));
  file_out_->commit();
}

}  // namespace seqgan
