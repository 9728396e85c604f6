#include "io/npz.h"

#include <fcntl.h>
#include <unistd.h>
#include <zip.h>

#include <ATen/ATen.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <vector>

#include "io/files.h"
#include "seqgan/error.h"

namespace seqgan::npz {
namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicSize = 6;
constexpr const char* kFormatHint =
    "write it with numpy.save / numpy.savez / numpy.savez_compressed (plain numeric arrays, allow_pickle=False)";

struct Header {
  at::ScalarType dtype = at::kFloat;
  bool swap = false;  // stored big-endian (this machine is little-endian)
  bool fortran = false;
  std::vector<int64_t> shape;
  size_t header_size = 0;  // bytes before the data
  size_t nbytes = 0;       // bytes of the data
};

// A strict reader of the header dict, a Python literal such as
//   {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }
class Literal {
 public:
  Literal(const std::string& text, const std::string& source) : s_(text), source_(source) {}

  Header parse() {
    Header h;
    bool have_descr = false, have_order = false, have_shape = false;
    expect('{');
    for (;;) {
      skip();
      if (peek() == '}') {
        ++i_;
        break;
      }
      const std::string key = string();
      expect(':');
      if (key == "descr" && !have_descr) {
        skip();
        if (peek() == '[') fail("the dtype is a structured (record) type; seqgan reads plain numeric arrays");
        descr(string(), h);
        have_descr = true;
      } else if (key == "fortran_order" && !have_order) {
        h.fortran = boolean();
        have_order = true;
      } else if (key == "shape" && !have_shape) {
        h.shape = tuple();
        have_shape = true;
      } else {
        fail(str("unexpected or repeated key '", key, "' (an .npy header holds descr, fortran_order and shape)"));
      }
      if (!another('}')) break;
    }
    skip();
    if (i_ != s_.size()) fail("text after the header dict");
    if (!(have_descr && have_order && have_shape)) fail("the header lacks descr, fortran_order or shape");
    return h;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw Error(str(source_, ": not a valid .npy header: ", what), kFormatHint);
  }
  void skip() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\t')) ++i_;
  }
  char peek() const { return i_ < s_.size() ? s_[i_] : '\0'; }
  // After an item of a dict or tuple: a comma (true: another item may follow) or the closing
  // bracket (false).
  bool another(char close) {
    skip();
    if (peek() == ',') {
      ++i_;
      return true;
    }
    expect(close);
    return false;
  }
  void expect(char c) {
    skip();
    if (peek() != c) fail(str("expected '", c, "' at byte ", i_));
    ++i_;
  }
  std::string string() {
    skip();
    const char q = peek();
    if (q != '\'' && q != '"') fail(str("expected a quoted string at byte ", i_));
    const size_t end = s_.find(q, i_ + 1);
    if (end == std::string::npos) fail("an unterminated string");
    std::string out = s_.substr(i_ + 1, end - i_ - 1);
    if (out.find('\\') != std::string::npos) fail("an escape in a string");
    i_ = end + 1;
    return out;
  }
  bool boolean() {
    skip();
    if (s_.compare(i_, 4, "True") == 0) {
      i_ += 4;
      return true;
    }
    if (s_.compare(i_, 5, "False") == 0) {
      i_ += 5;
      return false;
    }
    fail("fortran_order is neither True nor False");
  }
  std::vector<int64_t> tuple() {
    expect('(');
    std::vector<int64_t> out;
    for (;;) {
      skip();
      if (peek() == ')') {
        ++i_;
        break;
      }
      if (peek() < '0' || peek() > '9') fail(str("a shape holds non-negative integers, found '", peek(), "'"));
      uint64_t v = 0;
      while (peek() >= '0' && peek() <= '9') {
        if (v > (static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) - 9) / 10) fail("a dimension too large");
        v = v * 10 + static_cast<uint64_t>(s_[i_++] - '0');
      }
      if (peek() == 'L') ++i_;  // Python 2's long suffix
      out.push_back(static_cast<int64_t>(v));
      if (!another(')')) break;
    }
    return out;
  }
  void descr(const std::string& d, Header& h) {
    if (d.size() >= 2 && d[1] == 'O')
      fail(str("dtype '", d, "' is an object array (pickled Python objects), which seqgan never loads"));
    if (d.size() < 3) fail(str("dtype '", d, "' is not a plain numeric type"));
    const char order = d[0], kind = d[1];
    int size = 0;
    for (size_t k = 2; k < d.size(); ++k) {
      if (d[k] < '0' || d[k] > '9' || size > 64) fail(str("dtype '", d, "' is not a plain numeric type"));
      size = size * 10 + (d[k] - '0');
    }
    if (order != '<' && order != '>' && order != '|' && order != '=')
      fail(str("dtype '", d, "' has no byte order"));
    h.swap = order == '>' && size > 1;
    struct Kind {
      char kind;
      int size;
      at::ScalarType type;
    };
    static const Kind kinds[] = {{'b', 1, at::kBool}, {'i', 1, at::kChar},  {'i', 2, at::kShort}, {'i', 4, at::kInt},
                                 {'i', 8, at::kLong}, {'u', 1, at::kByte},  {'f', 2, at::kHalf},  {'f', 4, at::kFloat},
                                 {'f', 8, at::kDouble}};
    for (const auto& k : kinds)
      if (k.kind == kind && k.size == size) {
        h.dtype = k.type;
        return;
      }
    fail(str("dtype '", d, "' is not one seqgan reads (bool, int8/16/32/64, uint8, float16/32/64)"));
  }

  const std::string& s_;
  const std::string& source_;
  size_t i_ = 0;
};

// The header of the first `size` bytes of an .npy (at least the whole header), checked.
Header read_header(const uint8_t* data, size_t size, const std::string& source) {
  if (size < kMagicSize + 4 || std::memcmp(data, kMagic, kMagicSize) != 0)
    throw Error(str(source, ": not an .npy array (no \\x93NUMPY magic)"), kFormatHint);
  const int major = data[6];
  size_t length = 0, prefix = 0;
  if (major == 1) {
    length = data[8] | (static_cast<size_t>(data[9]) << 8);
    prefix = 10;
  } else if (major == 2 || major == 3) {
    if (size < 12) throw Error(str(source, ": the .npy header is cut short"), kFormatHint);
    length = data[8] | (static_cast<size_t>(data[9]) << 8) | (static_cast<size_t>(data[10]) << 16) |
             (static_cast<size_t>(data[11]) << 24);
    prefix = 12;
  } else {
    throw Error(str(source, ": .npy format version ", major, ".", int(data[7]), " is not one seqgan reads (1, 2 or 3)"),
                kFormatHint);
  }
  if (length > size - prefix) throw Error(str(source, ": the .npy header is cut short"), kFormatHint);
  const std::string text(reinterpret_cast<const char*>(data + prefix), length);
  Header h = Literal(text, source).parse();
  h.header_size = prefix + length;
  uint64_t count = 1;
  for (const int64_t d : h.shape) {
    if (d != 0 && count > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) / static_cast<uint64_t>(d))
      throw Error(str(source, ": the shape's element count overflows"), kFormatHint);
    count *= static_cast<uint64_t>(d);
  }
  const uint64_t item = c10::elementSize(h.dtype);
  if (count > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) / item)
    throw Error(str(source, ": the shape's byte count overflows"), kFormatHint);
  h.nbytes = static_cast<size_t>(count * item);
  return h;
}

// The tensor of a header whose data has been read into `t` (allocated by `allocate`).
at::Tensor allocate(const Header& h) {
  std::vector<int64_t> dims = h.shape;
  if (h.fortran) std::reverse(dims.begin(), dims.end());
  return at::empty(dims, at::TensorOptions(h.dtype));
}

at::Tensor finish(const Header& h, at::Tensor t) {
  if (h.swap) {
    const int64_t item = static_cast<int64_t>(t.element_size());
    auto* p = static_cast<uint8_t*>(t.data_ptr());
    for (int64_t i = 0; i < t.numel(); ++i) std::reverse(p + i * item, p + (i + 1) * item);
  }
  if (h.fortran && t.dim() > 1) {
    std::vector<int64_t> order(static_cast<size_t>(t.dim()));
    for (int64_t i = 0; i < t.dim(); ++i) order[static_cast<size_t>(i)] = t.dim() - 1 - i;
    t = t.permute(order).contiguous();
  }
  return t;
}

struct ZipCloser {
  void operator()(zip_t* z) const { zip_discard(z); }
};
struct FileCloser {
  void operator()(zip_file_t* f) const { zip_fclose(f); }
};

std::string zip_error_text(zip_error_t* e) { return zip_error_strerror(e); }

// The text of a libzip error code (zip_open's).
std::string zip_code_text(int code) {
  zip_error_t error;
  zip_error_init_with_code(&error, code);
  std::string text = zip_error_text(&error);
  zip_error_fini(&error);
  return text;
}

std::map<std::string, at::Tensor> read_archive(zip_t* z, const std::string& source) {
  std::map<std::string, at::Tensor> out;
  const zip_int64_t n = zip_get_num_entries(z, 0);
  for (zip_int64_t i = 0; i < n; ++i) {
    zip_stat_t st;
    zip_stat_init(&st);
    if (zip_stat_index(z, static_cast<zip_uint64_t>(i), 0, &st) != 0 || !(st.valid & ZIP_STAT_NAME) ||
        !(st.valid & ZIP_STAT_SIZE))
      throw Error(str(source, ": cannot read member ", i, " of the zip: ", zip_strerror(z)), kFormatHint);
    std::string name = st.name;
    if (name.size() < 5 || name.compare(name.size() - 4, 4, ".npy") != 0)
      throw Error(str(source, ": member '", name, "' is not an .npy array"), kFormatHint);
    name.resize(name.size() - 4);
    const std::string where = source + ":" + name;
    if (out.count(name)) throw Error(str(where, ": the archive holds this array twice"), kFormatHint);
    // Deflate expands at most 1032-fold: a member claiming more than that of its compressed bytes
    // is damaged (and would make seqgan allocate what it claims).
    if ((st.valid & ZIP_STAT_COMP_SIZE) && st.size > st.comp_size * 1032 + 1024)
      throw Error(str(where, ": the member claims ", st.size, " bytes from ", st.comp_size, " compressed ones"),
                  "the file is damaged");
    std::unique_ptr<zip_file_t, FileCloser> f(zip_fopen_index(z, static_cast<zip_uint64_t>(i), 0));
    if (!f) throw Error(str(where, ": cannot open the member: ", zip_strerror(z)), kFormatHint);
    // The header first (at most 64 KiB for versions 1; longer ones are read as they come).
    std::vector<uint8_t> head(static_cast<size_t>(std::min<zip_uint64_t>(st.size, 65536 + 12)));
    zip_int64_t got = zip_fread(f.get(), head.data(), head.size());
    if (got < 0) throw Error(str(where, ": cannot read the member: ", zip_file_strerror(f.get())), kFormatHint);
    head.resize(static_cast<size_t>(got));
    if (head.size() >= 12 && std::memcmp(head.data(), kMagic, kMagicSize) == 0 && head[6] >= 2) {
      // A version-2/3 header may exceed the first read.
      const size_t length = head[8] | (static_cast<size_t>(head[9]) << 8) | (static_cast<size_t>(head[10]) << 16) |
                            (static_cast<size_t>(head[11]) << 24);
      if (length > head.size() - 12 && length <= st.size - 12 && length < (size_t{1} << 24)) {
        const size_t have = head.size();
        head.resize(12 + length);
        got = zip_fread(f.get(), head.data() + have, head.size() - have);
        if (got < 0 || static_cast<size_t>(got) != head.size() - have)
          throw Error(str(where, ": the .npy header is cut short"), kFormatHint);
      }
    }
    const Header h = read_header(head.data(), head.size(), where);
    if (st.size != h.header_size + h.nbytes)
      throw Error(str(where, ": the header's shape and dtype make ", h.nbytes, " bytes of data, the member holds ",
                      st.size - std::min<zip_uint64_t>(st.size, h.header_size)),
                  "the file is damaged or not written by numpy; " + std::string(kFormatHint));
    at::Tensor t = allocate(h);
    auto* dst = static_cast<uint8_t*>(t.data_ptr());
    const size_t already = head.size() - h.header_size;
    if (h.nbytes) std::memcpy(dst, head.data() + h.header_size, std::min(already, h.nbytes));
    size_t done = std::min(already, h.nbytes);
    while (done < h.nbytes) {
      const zip_int64_t r = zip_fread(f.get(), dst + done, std::min<size_t>(h.nbytes - done, size_t{1} << 26));
      if (r < 0) throw Error(str(where, ": cannot read the member: ", zip_file_strerror(f.get())), kFormatHint);
      if (r == 0) throw Error(str(where, ": the member ends before its data does"), "the file is damaged");
      done += static_cast<size_t>(r);
    }
    uint8_t extra;
    const zip_int64_t tail = zip_fread(f.get(), &extra, 1);  // also where libzip checks the CRC
    if (tail != 0)
      throw Error(str(where, tail < 0 ? ": " + std::string(zip_file_strerror(f.get())) : ": data after the array"),
                  "the file is damaged");
    out.emplace(name, finish(h, t));
  }
  return out;
}

}  // namespace

at::Tensor parse_npy(const uint8_t* data, size_t size, const std::string& source) {
  const Header h = read_header(data, size, source);
  if (size - h.header_size != h.nbytes)
    throw Error(str(source, ": the header's shape and dtype make ", h.nbytes, " bytes of data, the array holds ",
                    size - h.header_size),
                "the file is damaged or not written by numpy; " + std::string(kFormatHint));
  at::Tensor t = allocate(h);
  if (h.nbytes) std::memcpy(t.data_ptr(), data + h.header_size, h.nbytes);
  return finish(h, t);
}

std::string npy_bytes(const at::Tensor& tensor) {
  const auto t = tensor.contiguous().cpu();
  const char* descr = nullptr;
  switch (t.scalar_type()) {
    case at::kBool: descr = "|b1"; break;
    case at::kChar: descr = "|i1"; break;
    case at::kByte: descr = "|u1"; break;
    case at::kShort: descr = "<i2"; break;
    case at::kInt: descr = "<i4"; break;
    case at::kLong: descr = "<i8"; break;
    case at::kHalf: descr = "<f2"; break;
    case at::kFloat: descr = "<f4"; break;
    case at::kDouble: descr = "<f8"; break;
    default: throw Error(str("npy: cannot store dtype ", t.scalar_type()), "convert the tensor to a numeric type numpy has");
  }
  std::string shape = "(";
  for (int64_t i = 0; i < t.dim(); ++i) shape += std::to_string(t.size(i)) + (t.dim() == 1 ? ",)" : i + 1 < t.dim() ? ", " : ")");
  if (t.dim() == 0) shape += ")";
  std::string header = str("{'descr': '", descr, "', 'fortran_order': False, 'shape': ", shape, ", }");
  // Padded with spaces so that the data starts at a multiple of 64, ending in a newline.
  const size_t total = ((10 + header.size() + 1 + 63) / 64) * 64;
  header.append(total - 10 - header.size() - 1, ' ');
  header += '\n';
  std::string out(kMagic, kMagicSize);
  out += '\x01';
  out += '\x00';
  out += static_cast<char>(header.size() & 0xff);
  out += static_cast<char>(header.size() >> 8);
  out += header;
  out.append(static_cast<const char*>(t.data_ptr()), t.nbytes());
  return out;
}

std::map<std::string, at::Tensor> parse(const std::string& bytes, const std::string& source) {
  zip_error_t error;
  zip_error_init(&error);
  zip_source_t* src = zip_source_buffer_create(bytes.data(), bytes.size(), 0, &error);
  if (!src) throw Error(str(source, ": ", zip_error_text(&error)));
  zip_t* raw = zip_open_from_source(src, ZIP_RDONLY | ZIP_CHECKCONS, &error);
  if (!raw) {
    zip_source_free(src);
    const std::string why = zip_error_text(&error);
    zip_error_fini(&error);
    throw Error(str(source, ": not a readable .npz (zip) archive: ", why), kFormatHint);
  }
  std::unique_ptr<zip_t, ZipCloser> z(raw);
  return read_archive(z.get(), source);
}

std::map<std::string, at::Tensor> load(const std::string& path) {
  int code = 0;
  zip_t* raw = zip_open(path.c_str(), ZIP_RDONLY | ZIP_CHECKCONS, &code);
  if (!raw) {
    throw Error(str("cannot read '", path, "' as an .npz (zip) archive: ", zip_code_text(code)),
                code == ZIP_ER_NOZIP ? "a file cut short (an interrupted download) looks like this too; fetch it again, or " +
                                           std::string(kFormatHint)
                                     : std::string(kFormatHint));
  }
  std::unique_ptr<zip_t, ZipCloser> z(raw);
  return read_archive(z.get(), path);
}

void save(const std::string& path, const std::map<std::string, at::Tensor>& arrays, bool compressed) {
  AtomicFile file(path);
  const std::string& tmp = file.temp_path();
  int code = 0;
  zip_t* z = zip_open(tmp.c_str(), ZIP_CREATE | ZIP_EXCL, &code);
  if (!z) throw Error(str("cannot create '", tmp, "': ", zip_code_text(code)), "check that the folder exists and is writable");
  std::vector<std::string> members;  // kept alive until zip_close reads them
  members.reserve(arrays.size());
  try {
    for (const auto& [name, t] : arrays) {
      members.push_back(npy_bytes(t));
      zip_source_t* src = zip_source_buffer(z, members.back().data(), members.back().size(), 0);
      const std::string member = name + ".npy";
      const zip_int64_t index = src ? zip_file_add(z, member.c_str(), src, ZIP_FL_ENC_UTF_8) : -1;
      if (index < 0) {
        if (src) zip_source_free(src);
        throw Error(str("cannot add '", member, "' to ", tmp, ": ", zip_strerror(z)));
      }
      zip_set_file_compression(z, static_cast<zip_uint64_t>(index), compressed ? ZIP_CM_DEFLATE : ZIP_CM_STORE, 0);
    }
    if (zip_close(z) != 0) throw Error(str("cannot write '", tmp, "': ", zip_strerror(z)), "check the free space");
  } catch (...) {
    zip_discard(z);
    throw;
  }
  file.commit();
}

}  // namespace seqgan::npz
