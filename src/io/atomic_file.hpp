// A file that appears under its final name only when complete.
#pragma once

#include <filesystem>
#include <optional>

#include "io/pipeline.hpp"
#include "util/fd.hpp"

namespace backupctl::io {

// Writes `<final>.partial` (created exclusively, mode 0600). commit() fsyncs it, renames it to
// `<final>` without replacing an existing file, and fsyncs the directory. Destroyed uncommitted
// (an error, a signal), it removes the .partial: a crash or failure never leaves a file that
// looks like a finished backup.
class AtomicFileSink : public Sink {
 public:
  // nullopt when `<final>.partial` already exists (another run owns that name).
  static std::optional<AtomicFileSink> try_create(const std::filesystem::path& final_path);

  AtomicFileSink(AtomicFileSink&& other) noexcept;
  AtomicFileSink& operator=(AtomicFileSink&&) = delete;
  ~AtomicFileSink() override;

  void write(std::span<const char> data) override;
  // fsyncs the .partial (commit() does it too when this was not called).
  void sync();
  void commit();
  // Removes the .partial now.
  void abort();

  const std::filesystem::path& final_path() const { return m_final; }
  const std::filesystem::path& partial_path() const { return m_partial; }
  std::uint64_t bytes_written() const { return m_written; }
  // The .partial's descriptor (until commit or abort): to fstat the very file written.
  int fd() const { return m_fd.get(); }

 private:
  AtomicFileSink(std::filesystem::path final_path, std::filesystem::path partial, Fd fd);
  void write_behind();

  std::filesystem::path m_final;
  std::filesystem::path m_partial;
  Fd m_fd;
  std::uint64_t m_written = 0;
  std::uint64_t m_flushed = 0;  // bytes handed to write-back so far
  bool m_done = false;
  bool m_synced = false;
};

}  // namespace backupctl::io
