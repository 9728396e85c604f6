#include "io/hash.h"

#include <openssl/evp.h>

#include <cstdio>
#include <memory>
#include <vector>

#include "seqgan/error.h"

namespace seqgan {
namespace {

struct Digest {
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx{EVP_MD_CTX_new(), EVP_MD_CTX_free};
  Digest() { SEQGAN_CHECK(ctx && EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) == 1, "sha256: OpenSSL init failed"); }
  void update(const void* data, size_t size) {
    SEQGAN_CHECK(EVP_DigestUpdate(ctx.get(), data, size) == 1, "sha256: OpenSSL update failed");
  }
  std::string hex() {
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    SEQGAN_CHECK(EVP_DigestFinal_ex(ctx.get(), out, &len) == 1, "sha256: OpenSSL final failed");
    static const char* digits = "0123456789abcdef";
    std::string s;
    for (unsigned int i = 0; i < len; ++i) {
      s += digits[out[i] >> 4];
      s += digits[out[i] & 15];
    }
    return s;
  }
};

}  // namespace

std::string sha256_file(const std::string& path) {
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "rb"), std::fclose);
  SEQGAN_CHECK_HINT(f != nullptr, "check the path", "cannot read '", path, "' to hash it");
  Digest d;
  std::vector<char> buf(1 << 20);
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), f.get())) > 0) d.update(buf.data(), n);
  SEQGAN_CHECK_HINT(!std::ferror(f.get()), "check the file", "read error while hashing '", path, "'");
  return d.hex();
}

std::string sha256_bytes(const std::string& bytes) {
  Digest d;
  d.update(bytes.data(), bytes.size());
  return d.hex();
}

std::string short_hash(const std::string& hex) { return hex.substr(0, 12); }

}  // namespace seqgan
