// gzip (zlib) for the pipeline. Decompression: `.sql.gz` dumps made elsewhere are streamed into
// psql without a temporary file; multi-member files (concatenated gzip streams) are read whole.
// Compression: the attachments tar's, whose level changes per entry (tar/tar.hpp).
#pragma once

#include <vector>

#include "io/pipeline.hpp"

namespace backupctl::io {

class GzipDecompressSink : public Sink {
 public:
  explicit GzipDecompressSink(Sink& next);
  ~GzipDecompressSink() override;
  GzipDecompressSink(const GzipDecompressSink&) = delete;
  GzipDecompressSink& operator=(const GzipDecompressSink&) = delete;

  void write(std::span<const char> data) override;
  // Throws Error(verification) when the stream ends inside a member (a truncated file).
  void finish() override;
  bool wants_more() const override { return m_next.wants_more(); }

 private:
  Sink& m_next;
  void* m_stream;  // z_stream*
  std::vector<char> m_out;
  bool m_in_member = false;
  bool m_seen_input = false;
};

// gzip whose level can change between entries (deflateParams) within one stream.
class GzipCompressSink : public Sink {
 public:
  GzipCompressSink(Sink& next, int level);
  ~GzipCompressSink() override;
  GzipCompressSink(const GzipCompressSink&) = delete;
  GzipCompressSink& operator=(const GzipCompressSink&) = delete;
  void set_level(int level);
  void write(std::span<const char> data) override;
  void finish() override;

 private:
  void drive(int flush);
  Sink& m_next;
  void* m_stream;  // z_stream*
  std::vector<char> m_out;
  int m_level;
};


}  // namespace backupctl::io
