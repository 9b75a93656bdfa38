// Byte encodings shared by the digest users (S3 ETags and Content-MD5, metas' sha256).
#pragma once

#include <cstddef>
#include <string>

namespace backupctl {

// Lowercase hex of `n` bytes (a digest: "d41d8cd9…").
std::string hex_encode(const unsigned char* data, std::size_t n);

// Standard base64 with padding (Content-MD5 wants the MD5 so).
std::string base64_encode(const unsigned char* data, std::size_t n);

}  // namespace backupctl
