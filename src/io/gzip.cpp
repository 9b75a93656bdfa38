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

}  // namespace backupctl::io
