#include "io/gzip.hpp"

#include <zlib.h>

#include <string>

#include "util/error.hpp"

namespace backupctl::io {
namespace {

z_stream* zs(void* p) { return static_cast<z_stream*>(p); }

Error corrupt(const char* why) {
  return Error(ErrorCode::verification, std::string("the gzip stream is corrupt: ") + why,
               "the file is damaged; use another backup");
}

}  // namespace

GzipDecompressSink::GzipDecompressSink(Sink& next)
    : m_next(next), m_stream(new z_stream{}), m_out(256 * 1024) {
  // 16 + MAX_WBITS: expect a gzip header and trailer (CRC-32 and length are checked).
  if (inflateInit2(zs(m_stream), 16 + MAX_WBITS) != Z_OK) {
    delete zs(m_stream);
    throw Error(ErrorCode::internal, "cannot initialise zlib");
  }
}

GzipDecompressSink::~GzipDecompressSink() {
  inflateEnd(zs(m_stream));
  delete zs(m_stream);
}

void GzipDecompressSink::write(std::span<const char> data) {
  if (!data.empty()) m_seen_input = true;
  z_stream* s = zs(m_stream);
  s->next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  s->avail_in = static_cast<uInt>(data.size());
  bool output_full = false;
  // Go on while input remains or the last call filled the output (zlib may hold more).
  while (s->avail_in > 0 || output_full) {
    s->next_out = reinterpret_cast<Bytef*>(m_out.data());
    s->avail_out = static_cast<uInt>(m_out.size());
    int rc = inflate(s, Z_NO_FLUSH);
    std::size_t produced = m_out.size() - s->avail_out;
    output_full = s->avail_out == 0;
    if (produced > 0) m_next.write(std::span<const char>(m_out.data(), produced));
    if (rc == Z_STREAM_END) {
      m_in_member = false;
      // Another member may follow (gzip files can be concatenated).
      if (inflateReset(s) != Z_OK) throw corrupt("cannot reset");
      continue;
    }
    if (rc != Z_OK && rc != Z_BUF_ERROR) throw corrupt(s->msg ? s->msg : "inflate failed");
    m_in_member = true;
    if (rc == Z_BUF_ERROR) break;  // needs more input
  }
}

void GzipDecompressSink::finish() {
  if (!m_seen_input) throw corrupt("the file is empty");
  if (m_in_member) {
    throw Error(ErrorCode::verification, "the gzip stream ends inside a member (truncated file)",
                "the file is incomplete; use another backup");
  }
  m_next.finish();
}

GzipCompressSink::GzipCompressSink(Sink& next, int level)
    : m_next(next), m_stream(new z_stream{}), m_out(256 * 1024), m_level(level) {
  // 16 + MAX_WBITS: a gzip header and trailer; memLevel 8 is zlib's default.
  if (deflateInit2(static_cast<z_stream*>(m_stream), level, Z_DEFLATED, 16 + MAX_WBITS, 8,
                   Z_DEFAULT_STRATEGY) != Z_OK) {
    delete static_cast<z_stream*>(m_stream);
    throw Error(ErrorCode::internal, "cannot initialise zlib");
  }
}

GzipCompressSink::~GzipCompressSink() {
  deflateEnd(static_cast<z_stream*>(m_stream));
  delete static_cast<z_stream*>(m_stream);
}

void GzipCompressSink::drive(int flush) {
  z_stream* z = static_cast<z_stream*>(m_stream);
  do {
    z->next_out = reinterpret_cast<Bytef*>(m_out.data());
    z->avail_out = static_cast<uInt>(m_out.size());
    int rc = deflate(z, flush);
    if (rc == Z_STREAM_ERROR) throw Error(ErrorCode::internal, "deflate failed");
    std::size_t n = m_out.size() - z->avail_out;
    if (n > 0) m_next.write(std::span<const char>(m_out.data(), n));
  } while (z->avail_out == 0 || (flush == Z_FINISH && z->avail_in > 0));
}

void GzipCompressSink::set_level(int level) {
  if (level == m_level) return;
  z_stream* z = static_cast<z_stream*>(m_stream);
  // deflateParams compresses what it holds with the old level first; it needs output room.
  for (;;) {
    z->next_out = reinterpret_cast<Bytef*>(m_out.data());
    z->avail_out = static_cast<uInt>(m_out.size());
    int rc = deflateParams(z, level, Z_DEFAULT_STRATEGY);
    std::size_t n = m_out.size() - z->avail_out;
    if (n > 0) m_next.write(std::span<const char>(m_out.data(), n));
    if (rc == Z_OK) break;
    if (rc != Z_BUF_ERROR) throw Error(ErrorCode::internal, "deflateParams failed");
  }
  m_level = level;
}

void GzipCompressSink::write(std::span<const char> data) {
  z_stream* z = static_cast<z_stream*>(m_stream);
  z->next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  z->avail_in = static_cast<uInt>(data.size());
  while (z->avail_in > 0) drive(Z_NO_FLUSH);
}

void GzipCompressSink::finish() {
  z_stream* z = static_cast<z_stream*>(m_stream);
  z->next_in = nullptr;
  z->avail_in = 0;
  for (;;) {
    z->next_out = reinterpret_cast<Bytef*>(m_out.data());
    z->avail_out = static_cast<uInt>(m_out.size());
    int rc = deflate(z, Z_FINISH);
    std::size_t n = m_out.size() - z->avail_out;
    if (n > 0) m_next.write(std::span<const char>(m_out.data(), n));
    if (rc == Z_STREAM_END) break;
    if (rc != Z_OK && rc != Z_BUF_ERROR) throw Error(ErrorCode::internal, "deflate finish failed");
  }
  m_next.finish();
}

}  // namespace backupctl::io
