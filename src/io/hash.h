// Content hashes that name what a result was measured with (feature-network weights, reference
// batches): SHA-256 through OpenSSL's libcrypto, as `sha256sum` prints it.
#pragma once

#include <string>

namespace seqgan {

// The SHA-256 of a file's bytes as 64 lower-case hex digits. Read in 1 MiB pieces; a file that
// cannot be read is an error naming it.
std::string sha256_file(const std::string& path);
// The SHA-256 of bytes in memory.
std::string sha256_bytes(const std::string& bytes);
// The first 12 hex digits, how results print a hash ("sha256:0123456789ab").
std::string short_hash(const std::string& hex);

}  // namespace seqgan
