// The one way this program hashes bytes: SHA-256 (metas, manifests, the server's body check) and
// MD5 (S3's ETags and Content-MD5). OpenSSL's context is freed however the scope is left — a read
// that throws halfway leaks nothing.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <string_view>

struct evp_md_ctx_st;  // OpenSSL's EVP_MD_CTX, kept out of the includers

namespace backupctl {

enum class DigestKind { sha256, md5 };

class Digest {
 public:
  // Throws Error(internal) when OpenSSL cannot start one (out of memory).
  explicit Digest(DigestKind kind);
  ~Digest();
  Digest(const Digest&) = delete;
  Digest& operator=(const Digest&) = delete;

  void update(const void* data, std::size_t n);
  void update(std::span<const char> data) { update(data.data(), data.size()); }
  void update(std::string_view data) { update(data.data(), data.size()); }
  void update(const std::string& data) { update(data.data(), data.size()); }

  // The digest of everything given since the start (or the last finish): raw bytes, lowercase
  // hex, or base64 (Content-MD5). Each starts the digest over.
  std::string finish_raw();
  std::string finish_hex();
  std::string finish_base64();

 private:
  DigestKind m_kind;
  evp_md_ctx_st* m_ctx;
};

// One-shot: the digest of `data`.
std::string digest_raw(DigestKind kind, std::string_view data);
std::string digest_hex(DigestKind kind, std::string_view data);

}  // namespace backupctl
