#include "io/zstd.hpp"

#include <zstd.h>

#include <cstdlib>
#include <string>

#include "util/error.hpp"

namespace backupctl::io {
namespace {

constexpr int kJobSize = 2 << 20;

ZSTD_CCtx* cctx(void* p) { return static_cast<ZSTD_CCtx*>(p); }
ZSTD_DCtx* dctx(void* p) { return static_cast<ZSTD_DCtx*>(p); }

void check(size_t rc, const char* what) {
  if (ZSTD_isError(rc)) {
    throw Error(ErrorCode::internal, std::string(what) + ": " + ZSTD_getErrorName(rc));
  }
}

}  // namespace

ZstdCompressSink::ZstdCompressSink(Sink& next, int level, int threads)
    : m_next(next), m_ctx(ZSTD_createCCtx()), m_out(ZSTD_CStreamOutSize()) {
  if (m_ctx == nullptr) throw Error(ErrorCode::internal, "cannot create a zstd context");
  check(ZSTD_CCtx_setParameter(cctx(m_ctx), ZSTD_c_compressionLevel, level), "zstd level");
  check(ZSTD_CCtx_setParameter(cctx(m_ctx), ZSTD_c_checksumFlag, 1), "zstd checksum");
  if (threads > 1) {
    // Fails only when libzstd was built without multithreading; then we stay single-threaded.
    ZSTD_CCtx_setParameter(cctx(m_ctx), ZSTD_c_nbWorkers, threads);
    // Smaller jobs than the default (4x the window, 8+ MiB at level 3) bound the buffers the
    // workers hold, keeping the whole process well under 64 MiB, for a negligible loss of ratio.
    if (const char* js = std::getenv("BACKUPCTL_ZSTD_JOB_MIB")) {
      ZSTD_CCtx_setParameter(cctx(m_ctx), ZSTD_c_jobSize, std::atoi(js) << 20);
    } else {
      ZSTD_CCtx_setParameter(cctx(m_ctx), ZSTD_c_jobSize, kJobSize);
    }
  }
}

ZstdCompressSink::~ZstdCompressSink() { ZSTD_freeCCtx(cctx(m_ctx)); }

void ZstdCompressSink::drive(std::span<const char> data, int mode) {
  ZSTD_inBuffer in{data.data(), data.size(), 0};
  for (;;) {
    ZSTD_outBuffer out{m_out.data(), m_out.size(), 0};
    size_t remaining =
        ZSTD_compressStream2(cctx(m_ctx), &out, &in, static_cast<ZSTD_EndDirective>(mode));
    check(remaining, "zstd compression");
    if (out.pos > 0) m_next.write(std::span<const char>(m_out.data(), out.pos));
    bool done = mode == ZSTD_e_continue ? in.pos == in.size : remaining == 0;
    if (done) break;
  }
}

void ZstdCompressSink::write(std::span<const char> data) { drive(data, ZSTD_e_continue); }

void ZstdCompressSink::finish() {
  drive({}, ZSTD_e_end);
  m_next.finish();
}

ZstdDecompressSink::ZstdDecompressSink(Sink& next)
    : m_next(next), m_ctx(ZSTD_createDCtx()), m_out(ZSTD_DStreamOutSize()) {
  if (m_ctx == nullptr) throw Error(ErrorCode::internal, "cannot create a zstd context");
}

ZstdDecompressSink::~ZstdDecompressSink() { ZSTD_freeDCtx(dctx(m_ctx)); }

void ZstdDecompressSink::write(std::span<const char> data) {
  if (!data.empty()) m_seen_input = true;
  ZSTD_inBuffer in{data.data(), data.size(), 0};
  bool output_full = false;
  // Keep going while input remains, or while the last call filled the output buffer (the decoder
  // may hold more for the input it already has).
  while (in.pos < in.size || output_full) {
    ZSTD_outBuffer out{m_out.data(), m_out.size(), 0};
    size_t hint = ZSTD_decompressStream(dctx(m_ctx), &out, &in);
    if (ZSTD_isError(hint)) {
      throw Error(ErrorCode::verification,
                  std::string("the zstd stream is corrupt: ") + ZSTD_getErrorName(hint),
                  "the file is damaged; use another backup");
    }
    m_last_hint = hint;
    // A frame that ended exactly at the end of the buffer is done: another call would start a
    // next frame and wait for its header (every WAL segment, 16 MiB, ends so).
    output_full = out.pos == out.size && hint != 0;
    if (out.pos > 0) {
      m_out_bytes += out.pos;
      m_next.write(std::span<const char>(m_out.data(), out.pos));
    }
  }
}

void ZstdDecompressSink::finish() {
  if (!m_seen_input) {
    throw Error(ErrorCode::verification, "the zstd stream is empty", "the file is damaged");
  }
  if (m_last_hint != 0) {
    throw Error(ErrorCode::verification, "the zstd stream ends inside a frame (truncated file)",
                "the file is incomplete; use another backup");
  }
  m_next.finish();
}

ZstdSource::ZstdSource(Source& in)
    : m_in(in), m_ctx(ZSTD_createDCtx()), m_inbuf(ZSTD_DStreamInSize()) {
  if (m_ctx == nullptr) throw Error(ErrorCode::internal, "cannot create a zstd context");
}

ZstdSource::~ZstdSource() { ZSTD_freeDCtx(dctx(m_ctx)); }

std::size_t ZstdSource::read(std::span<char> buf) {
  for (;;) {
    if (m_pos == m_len && !m_eof) {
      m_len = m_in.read(m_inbuf);
      m_pos = 0;
      if (m_len == 0) m_eof = true;
      if (m_len > 0) m_seen_input = true;
    }
    ZSTD_inBuffer in{m_inbuf.data(), m_len, m_pos};
    ZSTD_outBuffer out{buf.data(), buf.size(), 0};
    size_t hint = ZSTD_decompressStream(dctx(m_ctx), &out, &in);
    if (ZSTD_isError(hint)) {
      throw Error(ErrorCode::verification,
                  std::string("the zstd stream is corrupt: ") + ZSTD_getErrorName(hint),
                  "the file is damaged; use another backup");
    }
    // A call that moved nothing (no input left) says nothing about frame boundaries.
    if (in.pos != m_pos || out.pos > 0) m_last_hint = hint;
    m_pos = in.pos;
    if (out.pos > 0) return out.pos;
    if (m_eof && m_pos == m_len) {
      if (!m_seen_input) {
        throw Error(ErrorCode::verification, "the zstd stream is empty", "the file is damaged");
      }
      if (m_last_hint != 0) {
        throw Error(ErrorCode::verification, "the zstd stream ends inside a frame (truncated file)",
                    "the file is incomplete; use another backup");
      }
      return 0;
    }
  }
}

}  // namespace backupctl::io
