#include "util/digest.hpp"

#include <openssl/evp.h>

#include "util/encoding.hpp"
#include "util/error.hpp"

namespace backupctl {

namespace {

const EVP_MD* algorithm(DigestKind kind) { return kind == DigestKind::sha256 ? EVP_sha256() : EVP_md5(); }

}  // namespace

Digest::Digest(DigestKind kind) : m_kind(kind), m_ctx(EVP_MD_CTX_new()) {
  if (m_ctx == nullptr || EVP_DigestInit_ex(m_ctx, algorithm(kind), nullptr) != 1) {
    EVP_MD_CTX_free(m_ctx);
    throw Error(ErrorCode::internal, "cannot start a digest (OpenSSL)", "the host may be out of memory");
  }
}

Digest::~Digest() { EVP_MD_CTX_free(m_ctx); }

void Digest::update(const void* data, std::size_t n) { EVP_DigestUpdate(m_ctx, data, n); }

std::string Digest::finish_raw() {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(m_ctx, md, &len);
  EVP_DigestInit_ex(m_ctx, algorithm(m_kind), nullptr);
  return std::string(reinterpret_cast<const char*>(md), len);
}

std::string Digest::finish_hex() {
  const std::string raw = finish_raw();
  return hex_encode(reinterpret_cast<const unsigned char*>(raw.data()), raw.size());
}

std::string Digest::finish_base64() {
  const std::string raw = finish_raw();
  return base64_encode(reinterpret_cast<const unsigned char*>(raw.data()), raw.size());
}

std::string digest_raw(DigestKind kind, std::string_view data) {
  Digest d(kind);
  d.update(data);
  return d.finish_raw();
}

std::string digest_hex(DigestKind kind, std::string_view data) {
  Digest d(kind);
  d.update(data);
  return d.finish_hex();
}

}  // namespace backupctl
