// safetensors reading and writing. The format and the promises are in seqgan/safetensors.h.
#include "seqgan/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <tuple>
#include <utility>

#include "io/files.h"
#include "seqgan/error.h"

#include <zlib.h>

// Tensor bytes are copied as they lie in memory; safetensors stores them little-endian.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "seqgan assumes a little-endian host");

namespace seqgan::safetensors {
namespace {

using json = nlohmann::json;

struct DTypeRow {
  DType dtype;
  const char* name;
  std::size_t size;
  c10::ScalarType scalar;
};

constexpr DTypeRow kDTypes[] = {
    {DType::F64, "F64", 8, c10::ScalarType::Double},  {DType::F32, "F32", 4, c10::ScalarType::Float},
    {DType::F16, "F16", 2, c10::ScalarType::Half},    {DType::BF16, "BF16", 2, c10::ScalarType::BFloat16},
    {DType::I64, "I64", 8, c10::ScalarType::Long},    {DType::I32, "I32", 4, c10::ScalarType::Int},
    {DType::U8, "U8", 1, c10::ScalarType::Byte},      {DType::BOOL, "BOOL", 1, c10::ScalarType::Bool},
};

const DTypeRow& row(DType dtype) {
  for (const auto& r : kDTypes)
    if (r.dtype == dtype) return r;
  throw Error(str("safetensors: unknown DType value ", static_cast<int>(dtype)));
}

const char* const kKnownDTypes = "F64, F32, F16, BF16, I64, I32, U8, BOOL";
const char* const kDamagedHint =
    "the file is damaged, truncated, or not a safetensors file; write it again";

template <class Ints>
std::string shape_str(const Ints& shape) {
  std::ostringstream os;
  os << '[';
  for (std::size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
  os << ']';
  return os.str();
}

uint64_t read_le64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

void check_header_length(uint64_t header_size, uint64_t total_size, const std::string& source) {
  SEQGAN_CHECK_HINT(total_size > 0, kDamagedHint, source, ": the file is empty");
  SEQGAN_CHECK_HINT(total_size >= 8, kDamagedHint, source, ": expected at least 8 bytes (the header length), found ",
                    total_size);
  SEQGAN_CHECK_HINT(header_size <= kMaxHeaderSize, kDamagedHint, source, ": the header length field says ",
                    header_size, " bytes; at most ", kMaxHeaderSize, " are allowed");
  SEQGAN_CHECK_HINT(header_size <= total_size - 8, kDamagedHint, source, ": the header length field says ",
                    header_size, " bytes, but only ", total_size - 8, " bytes follow it");
}

// nlohmann keeps the last of two equal keys; the reference rejects them, and so do we.
json parse_json_rejecting_duplicates(std::string_view text, const std::string& source) {
  std::vector<std::set<std::string>> open_objects;
  std::string duplicate;
  auto callback = [&](int, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::object_start) {
      open_objects.emplace_back();
    } else if (event == json::parse_event_t::object_end) {
      if (!open_objects.empty()) open_objects.pop_back();
    } else if (event == json::parse_event_t::key && !open_objects.empty()) {
      const auto& key = parsed.get_ref<const std::string&>();
      if (!open_objects.back().insert(key).second && duplicate.empty()) duplicate = key;
    }
    return true;
  };
  json doc;
  try {
    doc = json::parse(text.begin(), text.end(), callback);
  } catch (const json::exception& e) {
    throw Error(str(source, ": the header is not valid JSON: ", e.what()), kDamagedHint);
  }
  SEQGAN_CHECK_HINT(duplicate.empty(), kDamagedHint, source, ": the header names '", duplicate,
                    "' twice; every tensor and metadata key must be unique");
  return doc;
}

Metadata parse_metadata(const json& value, const std::string& source) {
  Metadata metadata;
  if (value.is_null()) return metadata;
  SEQGAN_CHECK_HINT(value.is_object(), kDamagedHint, source,
                    ": expected __metadata__ to be an object of strings, found ", value.type_name());
  for (const auto& [key, v] : value.items()) {
    SEQGAN_CHECK_HINT(v.is_string(), kDamagedHint, source, ": expected metadata '", key,
                      "' to be a string, found ", v.type_name());
    metadata.emplace(key, v.get<std::string>());
  }
  return metadata;
}

uint64_t parse_offset(const json& v, const std::string& name, const std::string& source) {
  SEQGAN_CHECK_HINT(v.is_number_unsigned(), kDamagedHint, source, ": tensor '", name,
                    "' data_offsets must be non-negative integers, found ", v.dump());
  return v.get<uint64_t>();
}

TensorInfo parse_entry(const std::string& name, const json& entry, uint64_t data_size, const std::string& source) {
  SEQGAN_CHECK_HINT(!name.empty(), kDamagedHint, source, ": a tensor has an empty name");
  SEQGAN_CHECK_HINT(entry.is_object(), kDamagedHint, source, ": expected tensor '", name,
                    "' to be an object {dtype, shape, data_offsets}, found ", entry.type_name());
  for (const auto& [key, v] : entry.items()) {
    SEQGAN_CHECK_HINT(key == "dtype" || key == "shape" || key == "data_offsets", kDamagedHint, source,
                      ": tensor '", name, "' has unknown field '", key, "'; expected dtype, shape, data_offsets");
  }
  for (const char* key : {"dtype", "shape", "data_offsets"}) {
    SEQGAN_CHECK_HINT(entry.contains(key), kDamagedHint, source, ": tensor '", name, "' has no '", key, "'");
  }
  TensorInfo info;
  info.name = name;

  const json& dtype = entry["dtype"];
  SEQGAN_CHECK_HINT(dtype.is_string(), kDamagedHint, source, ": tensor '", name,
                    "' dtype must be a string, found ", dtype.dump());
  auto known = dtype_from_name(dtype.get_ref<const std::string&>());
  SEQGAN_CHECK_HINT(known.has_value(), str("seqgan reads ", kKnownDTypes, "; convert the tensor in Python first"),
                    source, ": tensor '", name, "' has unsupported dtype '", dtype.get<std::string>(), "'");
  info.dtype = *known;

  const json& shape = entry["shape"];
  SEQGAN_CHECK_HINT(shape.is_array(), kDamagedHint, source, ": tensor '", name,
                    "' shape must be an array, found ", shape.dump());
  // `span` bounds the strides torch will compute, so a zero-sized tensor cannot overflow them.
  uint64_t numel = 1, span = 1;
  for (const json& d : shape) {
    SEQGAN_CHECK_HINT(d.is_number_unsigned() && d.get<uint64_t>() <= uint64_t(INT64_MAX), kDamagedHint, source,
                      ": tensor '", name, "' shape ", shape.dump(), " must hold non-negative integers");
    const uint64_t dim = d.get<uint64_t>();
    const bool fits = !__builtin_mul_overflow(numel, dim, &numel) &&
                      !__builtin_mul_overflow(span, std::max<uint64_t>(dim, 1), &span) && span <= uint64_t(INT64_MAX);
    SEQGAN_CHECK_HINT(fits, kDamagedHint, source, ": tensor '", name, "' shape ", shape.dump(), " is too large");
    info.shape.push_back(static_cast<int64_t>(dim));
  }

  const json& offsets = entry["data_offsets"];
  SEQGAN_CHECK_HINT(offsets.is_array() && offsets.size() == 2, kDamagedHint, source, ": tensor '", name,
                    "' data_offsets must be [begin, end], found ", offsets.dump());
  info.begin = parse_offset(offsets[0], name, source);
  info.end = parse_offset(offsets[1], name, source);
  SEQGAN_CHECK_HINT(info.begin <= info.end, kDamagedHint, source, ": tensor '", name, "' data_offsets ",
                    offsets.dump(), " end before they begin");
  SEQGAN_CHECK_HINT(info.end <= data_size, kDamagedHint, source, ": tensor '", name, "' data_offsets ",
                    offsets.dump(), " reach past the end of the data buffer (", data_size, " bytes)");

  uint64_t bytes = 0;
  const bool overflow = __builtin_mul_overflow(numel, uint64_t(dtype_size(info.dtype)), &bytes);
  SEQGAN_CHECK_HINT(!overflow && bytes == info.end - info.begin, kDamagedHint, source, ": tensor '", name,
                    "' has dtype ", dtype_name(info.dtype), " and shape ", shape.dump(), ", so expected ",
                    overflow ? std::string("more than 2^64") : std::to_string(bytes), " bytes, but data_offsets ",
                    offsets.dump(), " hold ", info.end - info.begin);
  return info;
}

std::map<std::string, uint32_t> parse_checksums(const Header& header, const std::string& source) {
  std::map<std::string, uint32_t> out;
  const auto it = header.metadata.find(kChecksumKey);
  if (it == header.metadata.end()) return out;
  json doc;
  try {
    doc = json::parse(it->second);
  } catch (const json::exception&) {
    throw Error(str(source, ": metadata '", kChecksumKey, "' is not JSON"), kDamagedHint);
  }
  SEQGAN_CHECK_HINT(doc.is_object(), kDamagedHint, source, ": metadata '", kChecksumKey, "' is not a JSON object");
  for (const auto& [name, value] : doc.items()) {
    SEQGAN_CHECK_HINT(header.find(name) != nullptr, kDamagedHint, source, ": metadata '", kChecksumKey,
                      "' names tensor '", printable(name.data(), name.size()), "', which the file does not hold");
    const std::string hex = value.is_string() ? value.get<std::string>() : std::string();
    bool ok = hex.size() == 8;
    uint32_t crc = 0;
    for (char c : hex) {
      const int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
      ok = ok && d >= 0;
      crc = (crc << 4) | static_cast<uint32_t>(d < 0 ? 0 : d);
    }
    SEQGAN_CHECK_HINT(ok, kDamagedHint, source, ": metadata '", kChecksumKey, "' holds '",
                      printable(value.dump().data(), value.dump().size()), "' for tensor '", name,
                      "'; expected 8 lower-case hex digits");
    out.emplace(name, crc);
  }
  return out;
}

void verify_checksum(const Header& header, const TensorInfo& info, const void* data, const std::string& source) {
  const auto it = header.checksums.find(info.name);
  if (it == header.checksums.end()) return;
  const uint32_t actual = checksum(data, info.end - info.begin);
  if (actual == it->second) return;
  char expected_hex[9], actual_hex[9];
  std::snprintf(expected_hex, sizeof expected_hex, "%08x", it->second);
  std::snprintf(actual_hex, sizeof actual_hex, "%08x", actual);
  throw Error(str(source, ": tensor '", info.name, "' is damaged: its bytes have CRC-32 ", actual_hex,
                  ", the file recorded ", expected_hex, " when it was written"),
              "restore the file from a copy or write it again (a training run: resume from an earlier checkpoint); "
              "`seqgan inspect --verify FILE` checks every tensor");
}

Header parse_json_header(std::string_view text, uint64_t data_size, const std::string& source) {
  const json doc = parse_json_rejecting_duplicates(text, source);
  SEQGAN_CHECK_HINT(doc.is_object(), kDamagedHint, source, ": expected the header to be a JSON object, found ",
                    doc.type_name());
  Header header;
  header.header_size = text.size();
  header.data_size = data_size;
  for (const auto& [key, value] : doc.items()) {
    if (key == "__metadata__")
      header.metadata = parse_metadata(value, source);
    else
      header.tensors.push_back(parse_entry(key, value, data_size, source));
  }

  // The reference packs tensors back to back; anything else is overlap, a gap or stray bytes.
  std::vector<const TensorInfo*> by_offset;
  for (const auto& t : header.tensors) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(), [](const TensorInfo* a, const TensorInfo* b) {
    return std::tie(a->begin, a->end) < std::tie(b->begin, b->end);
  });
  uint64_t covered = 0;
  const TensorInfo* previous = nullptr;
  for (const TensorInfo* t : by_offset) {
    SEQGAN_CHECK_HINT(t->begin >= covered, kDamagedHint, source, ": tensor '", t->name, "' data_offsets [",
                      t->begin, ", ", t->end, "] overlap tensor '", previous ? previous->name : "", "' which ends at ",
                      covered);
    SEQGAN_CHECK_HINT(t->begin == covered, kDamagedHint, source, ": tensor '", t->name, "' begins at byte ",
                      t->begin, ", leaving a gap after byte ", covered, "; tensors must be packed");
    covered = t->end;
    previous = t;
  }
  SEQGAN_CHECK_HINT(covered == data_size, kDamagedHint, source, ": the data buffer has ", data_size,
                    " bytes but the tensors cover only ", covered);

  std::sort(header.tensors.begin(), header.tensors.end(),
            [](const TensorInfo& a, const TensorInfo& b) { return a.name < b.name; });
  header.checksums = parse_checksums(header, source);
  header.metadata.erase(kChecksumKey);  // held in `checksums`; save() writes fresh ones
  return header;
}

// ----- files ---------------------------------------------------------------------------------

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(other.release()) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

Fd open_for_reading(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  SEQGAN_CHECK_HINT(fd.get() >= 0, "check the path", "cannot open '", path, "' for reading: ", std::strerror(errno));
  return fd;
}

uint64_t file_size(const Fd& fd, const std::string& path) {
  struct stat st {};
  SEQGAN_CHECK(::fstat(fd.get(), &st) == 0, "cannot stat '", path, "': ", std::strerror(errno));
  SEQGAN_CHECK_HINT(S_ISREG(st.st_mode), "pass a safetensors file", "expected '", path, "' to be a regular file");
  return static_cast<uint64_t>(st.st_size);
}

void read_exact(const Fd& fd, void* buffer, uint64_t n, uint64_t offset, const std::string& path) {
  auto* p = static_cast<char*>(buffer);
  while (n > 0) {
    const ssize_t got = ::pread(fd.get(), p, std::min<uint64_t>(n, 1u << 30), static_cast<off_t>(offset));
    if (got < 0 && errno == EINTR) continue;
    SEQGAN_CHECK(got >= 0, "cannot read '", path, "': ", std::strerror(errno));
    SEQGAN_CHECK_HINT(got > 0, "was the file changed while it was read?", "'", path,
                      "' ended at byte ", offset, " while ", n, " more bytes were expected");
    p += got, n -= got, offset += got;
  }
}

void write_exact(int fd, const void* buffer, uint64_t n, const std::string& path) {
  auto* p = static_cast<const char*>(buffer);
  while (n > 0) {
    const ssize_t put = ::write(fd, p, std::min<uint64_t>(n, 1u << 30));
    if (put < 0 && errno == EINTR) continue;
    SEQGAN_CHECK_HINT(put > 0, "is the disk full?", "cannot write '", path, "': ", std::strerror(errno));
    p += put, n -= put;
  }
}

Header read_header_from(const Fd& fd, uint64_t size, const std::string& path) {
  uint8_t length[8] = {};
  read_exact(fd, length, std::min<uint64_t>(size, 8), 0, path);
  const uint64_t header_size = read_le64(length);
  check_header_length(header_size, size, path);
  std::string text(header_size, '\0');
  read_exact(fd, text.data(), header_size, 8, path);
  return parse_json_header(text, size - 8 - header_size, path);
}

at::Tensor empty_for(const TensorInfo& info) {
  return torch::empty(info.shape, torch::TensorOptions().dtype(to_scalar_type(info.dtype)));
}

// torch assumes bool bytes are 0 or 1; anything else makes comparisons lie.
void check_bools(const TensorInfo& info, const uint8_t* data, const std::string& source) {
  if (info.dtype != DType::BOOL) return;
  for (uint64_t i = 0; i < info.end - info.begin; ++i)
    SEQGAN_CHECK_HINT(data[i] <= 1, kDamagedHint, source, ": BOOL tensor '", info.name, "' holds byte ",
                      int(data[i]), " at element ", i, "; expected 0 or 1");
}

// ----- writing -------------------------------------------------------------------------------

struct Plan {
  json doc;            // the header without the checksums
  Metadata metadata;   // the caller's
  std::string header;  // padded JSON with placeholder checksums: the final header has its length
  std::vector<std::pair<const std::string*, const at::Tensor*>> order;
  std::vector<uint64_t> bytes;
};

// The padded header JSON with `crcs` (in the order of p.order; nullptr: zeros) in the metadata.
std::string render_header(const Plan& p, const std::vector<uint32_t>* crcs) {
  json doc = p.doc;
  Metadata metadata = p.metadata;
  json sums = json::object();
  for (std::size_t i = 0; i < p.order.size(); ++i) {
    char hex[9];
    std::snprintf(hex, sizeof hex, "%08x", crcs ? (*crcs)[i] : 0u);
    sums[*p.order[i].first] = hex;
  }
  metadata[kChecksumKey] = sums.dump();
  doc["__metadata__"] = metadata;
  std::string header = doc.dump();
  header.append((8 - header.size() % 8) % 8, ' ');
  return header;
}

Plan plan(const TensorMap& tensors, const Metadata& metadata, const std::string& dest) {
  Plan p;
  for (const auto& [name, t] : tensors) {
    SEQGAN_CHECK(!name.empty() && name != "__metadata__", dest, ": cannot write a tensor named '", name, "'");
    SEQGAN_CHECK_HINT(t.defined(), "drop it from the map", dest, ": tensor '", name, "' is undefined");
    SEQGAN_CHECK_HINT(t.layout() == c10::kStrided, "call .to_dense() first", dest, ": tensor '", name,
                      "' has layout ", t.layout(), "; expected a dense (strided) tensor");
    from_scalar_type(t.scalar_type(), name);
    p.order.emplace_back(&name, &t);
  }
  // As the reference does: wider dtypes first, so that every tensor is aligned to its element
  // size with no padding between tensors (Python's reader rejects gaps).
  std::stable_sort(p.order.begin(), p.order.end(), [](const auto& a, const auto& b) {
    return c10::elementSize(a.second->scalar_type()) > c10::elementSize(b.second->scalar_type());
  });
  json doc = json::object();
  p.metadata = metadata;
  p.metadata.erase(kChecksumKey);  // a stale copy from a file this one was made from
  uint64_t offset = 0;
  for (const auto& [name, t] : p.order) {
    const uint64_t n = static_cast<uint64_t>(t->numel()) * t->element_size();
    doc[*name] = {{"dtype", dtype_name(from_scalar_type(t->scalar_type()))},
                  {"shape", t->sizes().vec()},
                  {"data_offsets", json::array({offset, offset + n})}};
    p.bytes.push_back(n);
    offset += n;
  }
  p.doc = std::move(doc);
  p.header = render_header(p, nullptr);
  return p;
}

// Calls sink(bytes, n) for the whole image, fetching one tensor at a time to the CPU; the header
// holds placeholder checksums. Returns the tensors' checksums (in the order of p.order): the
// caller writes render_header(p, &crcs) over the placeholder header.
template <class Sink>
std::vector<uint32_t> emit(const Plan& p, const std::string& dest, Sink&& sink) {
  std::vector<uint32_t> crcs;
  uint8_t length[8];
  for (int i = 0; i < 8; ++i) length[i] = static_cast<uint8_t>(uint64_t(p.header.size()) >> (8 * i));
  sink(length, 8);
  sink(p.header.data(), p.header.size());
  for (std::size_t i = 0; i < p.order.size(); ++i) {
    const auto& [name, t] = p.order[i];
    at::Tensor cpu;
    try {
      cpu = t->detach().to(at::kCPU).contiguous();
    } catch (const c10::Error& e) {
      throw Error(str(dest, ": cannot fetch tensor '", *name, "' (", t->device(), ") to write it: ",
                      e.what_without_backtrace()),
                  "a tensor without data (meta) or on a failed device cannot be saved");
    }
    SEQGAN_CHECK(cpu.nbytes() == p.bytes[i], dest, ": tensor '", *name, "' changed size while it was written");
    if (p.bytes[i] > 0) sink(cpu.data_ptr(), p.bytes[i]);
    crcs.push_back(checksum(cpu.data_ptr(), p.bytes[i]));
  }
  return crcs;
}

}  // namespace

// ----- public --------------------------------------------------------------------------------

const char* dtype_name(DType dtype) { return row(dtype).name; }

std::optional<DType> dtype_from_name(std::string_view name) {
  for (const auto& r : kDTypes)
    if (name == r.name) return r.dtype;
  return std::nullopt;
}

std::size_t dtype_size(DType dtype) { return row(dtype).size; }

c10::ScalarType to_scalar_type(DType dtype) { return row(dtype).scalar; }

DType from_scalar_type(c10::ScalarType type, const std::string& tensor_name) {
  for (const auto& r : kDTypes)
    if (r.scalar == type) return r.dtype;
  throw Error(str("from_scalar_type: tensor '", tensor_name, "' has dtype ", type,
                  ", which safetensors files here cannot hold; expected one of ", kKnownDTypes),
              "convert it first, e.g. t.to(torch::kFloat)");
}

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

const TensorInfo* Header::find(std::string_view name) const {
  auto it = std::lower_bound(tensors.begin(), tensors.end(), name,
                             [](const TensorInfo& t, std::string_view n) { return t.name < n; });
  return it != tensors.end() && it->name == name ? &*it : nullptr;
}

Header parse_header(const uint8_t* bytes, std::size_t size, const std::string& source) {
  SEQGAN_CHECK(bytes != nullptr || size == 0, source, ": null buffer of ", size, " bytes");
  const uint64_t header_size = size >= 8 ? read_le64(bytes) : 0;
  check_header_length(header_size, size, source);
  const std::string_view text(reinterpret_cast<const char*>(bytes) + 8, header_size);
  return parse_json_header(text, size - 8 - header_size, source);
}

Header read_header(const std::string& path) {
  const Fd fd = open_for_reading(path);
  return read_header_from(fd, file_size(fd, path), path);
}

std::string describe(const Header& header) {
  std::ostringstream os;
  os << "metadata (" << header.metadata.size() << "):\n";
  for (const auto& [key, value] : header.metadata) os << "  " << key << " = " << value << '\n';
  if (!header.checksums.empty())
    os << "checksums: CRC-32 of " << header.checksums.size() << " tensors (`seqgan inspect --verify` checks them)\n";
  std::size_t width = 0;
  for (const auto& t : header.tensors) width = std::max(width, t.name.size());
  os << "tensors (" << header.tensors.size() << ", " << header.data_size << " bytes):\n";
  for (const auto& t : header.tensors) {
    os << "  " << t.name << std::string(width - t.name.size() + 2, ' ') << dtype_name(t.dtype)
       << std::string(6 - std::strlen(dtype_name(t.dtype)), ' ') << shape_str(t.shape) << '\n';
  }
  return os.str();
}

TensorMap decode(const Header& header, const uint8_t* bytes, std::size_t size, const std::string& source) {
  SEQGAN_CHECK_HINT(size >= header.data_start() && size - header.data_start() >= header.data_size,
                    "pass the same bytes to parse_header and decode", source, ": the header describes ",
                    header.data_start() + header.data_size, " bytes but the buffer holds ", size);
  TensorMap tensors;
  for (const auto& info : header.tensors) {
    const uint8_t* data = bytes + header.data_start() + info.begin;
    check_bools(info, data, source);
    verify_checksum(header, info, data, source);
    at::Tensor t = empty_for(info);
    if (info.end > info.begin) std::memcpy(t.data_ptr(), data, info.end - info.begin);
    tensors.emplace(info.name, std::move(t));
  }
  return tensors;
}

File parse(const uint8_t* bytes, std::size_t size, const std::string& source) {
  File file;
  file.header = parse_header(bytes, size, source);
  file.tensors = decode(file.header, bytes, size, source);
  return file;
}

File load(const std::string& path) {
  const Fd fd = open_for_reading(path);
  File file;
  file.header = read_header_from(fd, file_size(fd, path), path);
  for (const auto& info : file.header.tensors) {
    at::Tensor t = empty_for(info);
    const uint64_t n = info.end - info.begin;
    if (n > 0) read_exact(fd, t.data_ptr(), n, file.header.data_start() + info.begin, path);
    check_bools(info, static_cast<const uint8_t*>(t.data_ptr()), path);
    verify_checksum(file.header, info, t.data_ptr(), path);
    file.tensors.emplace(info.name, std::move(t));
  }
  return file;
}

uint32_t checksum(const void* data, std::size_t size) {
  uLong crc = crc32_z(0L, Z_NULL, 0);
  if (size > 0) crc = crc32_z(crc, static_cast<const Bytef*>(data), size);
  return static_cast<uint32_t>(crc);
}

std::vector<uint8_t> serialize(const TensorMap& tensors, const Metadata& metadata) {
  const Plan p = plan(tensors, metadata, "<memory>");
  std::vector<uint8_t> out;
  const auto crcs = emit(p, "<memory>", [&](const void* data, uint64_t n) {
    const auto* b = static_cast<const uint8_t*>(data);
    out.insert(out.end(), b, b + n);
  });
  const std::string header = render_header(p, &crcs);
  SEQGAN_CHECK(header.size() == p.header.size(), "the header changed length with its checksums");
  std::memcpy(out.data() + 8, header.data(), header.size());
  return out;
}

void save(const std::string& path, const TensorMap& tensors, const Metadata& metadata) {
  const Plan p = plan(tensors, metadata, path);
  AtomicFile file(path);
  Fd fd(::open(file.temp_path().c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  SEQGAN_CHECK_HINT(fd.get() >= 0, "does the directory exist, and may this process write to it?", "cannot create '",
                    file.temp_path(), "' to write '", path, "': ", std::strerror(errno));
  const auto crcs = emit(p, path, [&](const void* data, uint64_t n) { write_exact(fd.get(), data, n, file.temp_path()); });
  const std::string header = render_header(p, &crcs);
  SEQGAN_CHECK(header.size() == p.header.size(), "the header changed length with its checksums");
  SEQGAN_CHECK_HINT(::pwrite(fd.get(), header.data(), header.size(), 8) == static_cast<ssize_t>(header.size()),
                    "is the disk full?", "cannot write the header of '", file.temp_path(), "': ", std::strerror(errno));
  SEQGAN_CHECK_HINT(::close(fd.release()) == 0, "is the disk full?", "cannot close '", file.temp_path(), "': ",
                    std::strerror(errno));
  file.commit();
}

}  // namespace seqgan::safetensors
