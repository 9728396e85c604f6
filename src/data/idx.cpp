// IDX files of (Fashion-)MNIST, raw or gzip, and the data sets built on them. Needs no libtorch
// headers, so the fuzz target can compile this file alone.
#include <zlib.h>

#include <algorithm>
#include <memory>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <unistd.h>

#include "io/files.h"
#include "seqgan/data.h"
#include "seqgan/error.h"

namespace seqgan {
namespace fs = std::filesystem;

namespace {

constexpr const char* kIdxHint =
    "expected an IDX file as published for MNIST/Fashion-MNIST (optionally .gz); re-download or "
    "reinstall it (Debian: apt install dataset-fashion-mnist)";

bool is_gzip(const uint8_t* d, size_t n) { return n >= 2 && d[0] == 0x1f && d[1] == 0x8b; }

// Inflates gzip (or zlib) data, refusing to produce more than max_bytes. Concatenated gzip
// members are inflated one after another, as gzip(1) does.
std::vector<uint8_t> inflate_all(const uint8_t* data, size_t size, const std::string& name,
                                 size_t max_bytes) {
  std::vector<uint8_t> out;
  z_stream z{};
  SEQGAN_CHECK(inflateInit2(&z, 15 + 32) == Z_OK, "zlib inflateInit2 failed for '", name, "'");
  std::unique_ptr<z_stream, int (*)(z_stream*)> guard(&z, inflateEnd);
  const uint8_t* const end = data + size;
  // zlib counts in uInt, so the input is offered at most 1 GiB at a time.
  auto refill = [&] {
    const size_t left = static_cast<size_t>(end - z.next_in);
    z.avail_in = static_cast<uInt>(std::min<size_t>(left, size_t{1} << 30));
    return left > 0;
  };
  z.next_in = const_cast<Bytef*>(data);
  refill();
  std::vector<uint8_t> chunk(1 << 16);
  while (true) {
    z.next_out = chunk.data();
    z.avail_out = static_cast<uInt>(chunk.size());
    const int rc = inflate(&z, Z_NO_FLUSH);
    const size_t produced = chunk.size() - z.avail_out;
    SEQGAN_CHECK_HINT(out.size() + produced <= max_bytes, kIdxHint, "'", name,
                      "': decompresses to more than ", max_bytes, " bytes");
    out.insert(out.end(), chunk.begin(), chunk.begin() + static_cast<std::ptrdiff_t>(produced));
    const size_t consumed = static_cast<size_t>(z.next_in - data);
    if (rc == Z_STREAM_END) {
      if (consumed == size) return out;
      if (!is_gzip(data + consumed, size - consumed)) {
        // Zero padding after the last member is common (tape-era tools); anything else is not.
        bool zeros = true;
        for (size_t i = consumed; i < size && zeros; ++i) zeros = data[i] == 0;
        SEQGAN_CHECK_HINT(zeros, kIdxHint, "'", name, "': ", size - consumed,
                          " bytes of garbage after the gzip data");
        return out;
      }
      SEQGAN_CHECK(inflateReset(&z) == Z_OK, "zlib inflateReset failed for '", name, "'");
      refill();
      continue;
    }
    const bool starved = (rc == Z_BUF_ERROR || rc == Z_OK) && z.avail_in == 0 && z.avail_out != 0;
    if (starved) {
      SEQGAN_CHECK_HINT(refill(), kIdxHint, "'", name, "': the gzip data ends early (", size,
                        " compressed bytes gave ", out.size(), "): the file is truncated");
      continue;
    }
    SEQGAN_CHECK_HINT(rc == Z_OK, kIdxHint, "'", name, "': corrupt gzip data near compressed byte ",
                      consumed, ": ", z.msg ? z.msg : "zlib error");
  }
}

std::string dims_str(const std::vector<int64_t>& dims) {
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + "]";
}

uint32_t be32(const uint8_t* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
}

void put_be32(std::vector<uint8_t>& out, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<uint8_t>(v >> s));
}

void write_atomically(const std::string& path, const std::vector<uint8_t>& bytes, bool gzip) {
  if (!gzip) return write_file_atomic(path, bytes.data(), bytes.size());
  AtomicFile file(path);
  gzFile f = gzopen(file.temp_path().c_str(), "wb9");
  SEQGAN_CHECK_HINT(f != nullptr, "check that the folder is writable", "cannot create '", file.temp_path(), "': ",
                    std::strerror(errno));
  size_t done = 0;
  bool ok = true;
  while (ok && done < bytes.size()) {
    const unsigned part = static_cast<unsigned>(std::min<size_t>(bytes.size() - done, 1u << 30));
    ok = gzwrite(f, bytes.data() + done, part) == static_cast<int>(part);
    done += part;
  }
  ok = (gzclose(f) == Z_OK) && ok;
  SEQGAN_CHECK_HINT(ok, "check the free disk space", "cannot write '", path, "'");
  file.commit();
}

}  // namespace

IdxArray parse_idx(const uint8_t* data, size_t size, const std::string& name, size_t max_bytes) {
  std::vector<uint8_t> inflated;
  if (is_gzip(data, size)) {
    inflated = inflate_all(data, size, name, max_bytes + 4 + 4 * 255);
    data = inflated.data();
    size = inflated.size();
  }
  SEQGAN_CHECK_HINT(size >= 4, kIdxHint, "'", name, "': expected at least a 4-byte IDX header, found ",
                    size, " bytes");
  const uint32_t magic = be32(data);
  SEQGAN_CHECK_HINT(data[0] == 0 && data[1] == 0 && data[2] == 0x08 && data[3] >= 1, kIdxHint, "'",
                    name, "': expected an IDX magic 0x000008NN (unsigned bytes, NN >= 1 dimensions; "
                    "0x00000803 for images, 0x00000801 for labels), found 0x", std::hex, magic);
  const size_t ndims = data[3];
  const size_t header = 4 + 4 * ndims;
  SEQGAN_CHECK_HINT(size >= header, kIdxHint, "'", name, "': the header declares ", ndims,
                    " dimensions (", header, " header bytes) but the file has only ", size, " bytes");
  IdxArray out;
  for (size_t i = 0; i < ndims; ++i) out.dims.push_back(be32(data + 4 + 4 * i));
  size_t count = 1;
  for (const int64_t d : out.dims) {
    SEQGAN_CHECK_HINT(d == 0 || count <= max_bytes / static_cast<size_t>(d), kIdxHint, "'", name,
                      "': dimensions ", dims_str(out.dims), " exceed the limit of ", max_bytes, " bytes");
    count *= static_cast<size_t>(d);
  }
  SEQGAN_CHECK_HINT(size - header == count, kIdxHint, "'", name, "': dimensions ", dims_str(out.dims),
                    " need ", count, " data bytes after the ", header, "-byte header, found ", size - header,
                    size - header < count ? " (the file is truncated)" : " (trailing bytes)");
  out.data.assign(data + header, data + size);
  return out;
}

IdxArray read_idx(const std::string& path) {
  const std::vector<uint8_t> bytes = read_file(path);
  return parse_idx(bytes.data(), bytes.size(), path);
}

void write_idx(const std::string& path, const IdxArray& array) {
  SEQGAN_CHECK(!array.dims.empty() && array.dims.size() <= 255, "expected 1..255 dimensions, got ",
               array.dims.size());
  size_t count = 1;
  for (const int64_t d : array.dims) {
    SEQGAN_CHECK(d >= 0 && d <= UINT32_MAX, "dimension ", d, " does not fit IDX's uint32");
    count *= static_cast<size_t>(d);
  }
  SEQGAN_CHECK(count == array.data.size(), "dimensions ", dims_str(array.dims), " need ", count,
               " bytes, the array holds ", array.data.size());
  std::vector<uint8_t> bytes;
  bytes.reserve(4 + 4 * array.dims.size() + count);
  put_be32(bytes, 0x00000800u | static_cast<uint32_t>(array.dims.size()));
  for (const int64_t d : array.dims) put_be32(bytes, static_cast<uint32_t>(d));
  bytes.insert(bytes.end(), array.data.begin(), array.data.end());
  const bool gz = path.size() > 3 && path.compare(path.size() - 3, 3, ".gz") == 0;
  write_atomically(path, bytes, gz);
}

// ---------------------------------------------------------------------------------------------

IdxDataset::IdxDataset(const std::string& images_path, const std::string& labels_path,
                       std::vector<std::string> class_names)
    : images_path_(images_path) {
  IdxArray images = read_idx(images_path);
  SEQGAN_CHECK_HINT(images.dims.size() == 3, kIdxHint, "'", images_path,
                    "': expected images [N, H, W] (magic 0x00000803), found dimensions ",
                    dims_str(images.dims));
  IdxArray labels = read_idx(labels_path);
  SEQGAN_CHECK_HINT(labels.dims.size() == 1, kIdxHint, "'", labels_path,
                    "': expected labels [N] (magic 0x00000801), found dimensions ",
                    dims_str(labels.dims));
  SEQGAN_CHECK_HINT(images.dims[0] == labels.dims[0], "use the labels file of the same split",
                    "'", images_path, "' holds ", images.dims[0], " images but '", labels_path, "' holds ",
                    labels.dims[0], " labels");
  SEQGAN_CHECK(images.dims[1] > 0 && images.dims[2] > 0 && images.dims[1] < (1 << 16) && images.dims[2] < (1 << 16),
               "'", images_path, "': expected image sizes in 1..65535, found ", images.dims[1], "x", images.dims[2]);
  count_ = images.dims[0];
  height_ = static_cast<int>(images.dims[1]);
  width_ = static_cast<int>(images.dims[2]);
  pixels_ = std::move(images.data);
  labels_ = std::move(labels.data);

  int max_label = -1;
  for (const uint8_t l : labels_) max_label = std::max<int>(max_label, l);
  if (class_names.empty()) {
    for (int c = 0; c <= max_label; ++c) class_names.push_back(std::to_string(c));
  }
  SEQGAN_CHECK_HINT(max_label < static_cast<int>(class_names.size()), "pass the right class names",
                    "'", labels_path, "' holds label ", max_label, " but only ", class_names.size(),
                    " classes are named");
  classes_ = std::move(class_names);
}

std::pair<std::string, std::string> IdxDataset::find_split(const std::string& root, const std::string& split) {
  SEQGAN_CHECK_HINT(split == "train" || split == "test", "use \"train\" or \"test\"",
                    "expected split \"train\" or \"test\", got \"", split, "\"");
  const std::string prefix = split == "train" ? "train" : "t10k";
  auto find = [&](const std::string& kind, const std::string& idx) {
    std::vector<std::string> tried;
    for (const char* sep : {"-", "."}) {
      for (const char* ext : {"", ".gz"}) {
        const std::string candidate = (fs::path(root) / (prefix + "-" + kind + sep + idx + "-ubyte" + ext)).string();
        if (fs::is_regular_file(candidate)) return candidate;
        tried.push_back(candidate);
      }
    }
    std::string list;
    for (const std::string& t : tried) list += "\n  " + t;
    throw Error(str("IdxDataset::find_split: no ", split, " ", kind, " file under '", root, "'; tried:", list),
                "point the data root at the folder holding the IDX files (Debian: apt install "
                "dataset-fashion-mnist, root " + std::string(kFashionMnistRoot) + ")");
  };
  return {find("images", "idx3"), find("labels", "idx1")};
}

RawExample IdxDataset::load(int64_t index) const {
  check_index(index);
  RawExample out;
  out.image = Image(width_, height_, 1);
  const size_t n = static_cast<size_t>(width_) * height_;
  std::memcpy(out.image.pixels.data(), pixels_.data() + static_cast<size_t>(index) * n, n);
  out.label = labels_[static_cast<size_t>(index)];
  return out;
}

const std::vector<std::string>& fashion_mnist_classes() {
  static const std::vector<std::string> kClasses = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                                    "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
  return kClasses;
}

FashionMnist::FashionMnist(const std::string& root, const std::string& split)
    : FashionMnist(find_split(root, split)) {}

FashionMnist::FashionMnist(std::pair<std::string, std::string> files)
    : IdxDataset(files.first, files.second, fashion_mnist_classes()) {}

}  // namespace seqgan
