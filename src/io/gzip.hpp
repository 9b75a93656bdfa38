// gzip (zlib) decompression for the pipeline: `.sql.gz` dumps made elsewhere are streamed into
// psql without a temporary file. Multi-member files (concatenated gzip streams) are read whole.
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

}  // namespace backupctl::io
