// safetensors files: an 8-byte little-endian header length N, N bytes of JSON
// {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}}, then the data.
// Python's `safetensors` package reads what this writes and the other way round.
//
// seqgan adds a CRC-32 of every tensor's bytes to the metadata it writes (key "seqgan.crc32", a
// JSON object {tensor name: 8 hex digits}); loading checks them when present, so that a damaged
// file is refused naming the tensor, and files from other tools (without the key) load as before.
//
// The header half (DType, TensorInfo, Header, parse_header, describe) needs no libtorch, so the
// fuzzer and `seqgan inspect` stay light; the tensor half works with at::Tensor.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace c10 {
enum class ScalarType : int8_t;
}
namespace at {
class Tensor;
}

namespace seqgan::safetensors {

enum class DType { F64, F32, F16, BF16, I64, I32, U8, BOOL };

const char* dtype_name(DType dtype);                         // "F32", as in the header
std::optional<DType> dtype_from_name(std::string_view name);  // nullopt for names we don't know
std::size_t dtype_size(DType dtype);                         // bytes per element
c10::ScalarType to_scalar_type(DType dtype);
// Throws for scalar types with no safetensors dtype here (complex, quantised, ...).
DType from_scalar_type(c10::ScalarType type, const std::string& tensor_name = {});

struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // byte offsets into the data buffer, end exclusive
  uint64_t end = 0;

  int64_t numel() const;
};

using Metadata = std::map<std::string, std::string>;

// The metadata key of the checksums.
inline constexpr const char* kChecksumKey = "seqgan.crc32";

struct Header {
  Metadata metadata;  // without kChecksumKey, which is parsed into `checksums`
  // From the metadata's kChecksumKey, checked against the tensor names; empty when absent.
  std::map<std::string, uint32_t> checksums;
  std::vector<TensorInfo> tensors;  // sorted by name
  uint64_t header_size = 0;         // N: JSON bytes, padding included
  uint64_t data_size = 0;           // bytes in the data buffer after the header

  uint64_t data_start() const { return 8 + header_size; }
  const TensorInfo* find(std::string_view name) const;  // nullptr when absent
};

// Headers larger than this are refused, as the reference implementation does.
inline constexpr uint64_t kMaxHeaderSize = 100'000'000;

// Parses and validates the header of a whole safetensors image held in memory (`size` bytes,
// length field included). Everything is checked before any large allocation: header length vs
// size, JSON, dtypes, shapes, offsets (in bounds, no overlap, no gaps, buffer fully covered),
// duplicate names. `source` names the image in errors (a file name).
Header parse_header(const uint8_t* bytes, std::size_t size, const std::string& source = "<memory>");

// Reads and validates only the header of a file; the data is not read.
Header read_header(const std::string& path);

// What `seqgan inspect` prints: the metadata, then every tensor's name, dtype and shape.
std::string describe(const Header& header);

// ----- tensors -----------------------------------------------------------------------------

using TensorMap = std::map<std::string, at::Tensor>;

struct File {
  Header header;
  TensorMap tensors;  // contiguous CPU tensors, dtype as in the file
};

// Decodes the tensors of an image whose header parse_header returned. Throws when a BOOL
// tensor holds a byte other than 0 or 1.
TensorMap decode(const Header& header, const uint8_t* bytes, std::size_t size,
                 const std::string& source = "<memory>");

// parse_header + decode.
File parse(const uint8_t* bytes, std::size_t size, const std::string& source = "<memory>");

// Reads a whole file. Any safetensors file loads here, ours or Python's (e.g. converted weights).
// Every tensor with a checksum in the header is checked against it.
File load(const std::string& path);

// CRC-32 (zlib's) of a byte range, as the checksums hold it.
uint32_t checksum(const void* data, std::size_t size);

// Writes `tensors` and `metadata` (plus the checksums, see kChecksumKey) atomically: a temporary file in the same directory is written,
// fsynced and renamed over `path`, then the directory is fsynced. On any error the temporary
// file is removed and an existing file at `path` is left as it was. Tensors on any device are
// copied to the CPU one at a time; the header lists them by name.
void save(const std::string& path, const TensorMap& tensors, const Metadata& metadata = {});

// The bytes save() would write, for tests and in-memory use.
std::vector<uint8_t> serialize(const TensorMap& tensors, const Metadata& metadata = {});

}  // namespace seqgan::safetensors
