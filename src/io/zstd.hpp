// zstd transformers for the pipeline (libzstd streaming API). Frames carry content checksums,
// so `zstd -t` and our own decompression detect corruption.
#pragma once

#include <memory>
#include <vector>

#include "io/pipeline.hpp"

namespace backupctl::io {

// Compresses what it is given into `next`. threads > 1 uses zstd's worker threads.
class ZstdCompressSink : public Sink {
 public:
  ZstdCompressSink(Sink& next, int level, int threads);
  ~ZstdCompressSink() override;
  void write(std::span<const char> data) override;
  void finish() override;

 private:
  void drive(std::span<const char> data, int mode);

  Sink& m_next;
  void* m_ctx;  // ZSTD_CCtx*
  std::vector<char> m_out;
};

// Decompresses what it is given into `next`; finish() throws Error(verification) when the stream
// ends inside a frame (a truncated file).
class ZstdDecompressSink : public Sink {
 public:
  explicit ZstdDecompressSink(Sink& next);
  ~ZstdDecompressSink() override;
  void write(std::span<const char> data) override;
  void finish() override;
  bool wants_more() const override { return m_next.wants_more(); }
  std::uint64_t decompressed_bytes() const { return m_out_bytes; }

 private:
  Sink& m_next;
  void* m_ctx;  // ZSTD_DCtx*
  std::vector<char> m_out;
  std::size_t m_last_hint = 0;  // 0 after a frame ended
  bool m_seen_input = false;
  std::uint64_t m_out_bytes = 0;
};

// Pull-side decompression: reads zstd frames from `in`, returns the decompressed bytes.
// Throws Error(verification) on corruption or a truncated last frame.
class ZstdSource : public Source {
 public:
  explicit ZstdSource(Source& in);
  ~ZstdSource() override;
  ZstdSource(const ZstdSource&) = delete;
  ZstdSource& operator=(const ZstdSource&) = delete;
  std::size_t read(std::span<char> buf) override;

 private:
  Source& m_in;
  void* m_ctx;  // ZSTD_DCtx*
  std::vector<char> m_inbuf;
  std::size_t m_pos = 0, m_len = 0;
  std::size_t m_last_hint = 0;
  bool m_eof = false, m_seen_input = false;
};

}  // namespace backupctl::io
