#include "io/atomic_file.hpp"

#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include <cerrno>

#include "util/error.hpp"
#include "util/fs.hpp"

namespace backupctl::io {
namespace {
// Start write-back every 8 MiB so the final fsync has little left to flush, and drop the pages
// from the cache once on disk: a backup should not evict the database's working set.
constexpr std::uint64_t kWriteBehind = 8u << 20;
}  // namespace

std::optional<AtomicFileSink> AtomicFileSink::try_create(const std::filesystem::path& final_path) {
  std::filesystem::path partial = final_path;
  partial += ".partial";
  Fd fd(::open(partial.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!fd) {
    if (errno == EEXIST) return std::nullopt;
    throw_errno("cannot create " + partial.string());
  }
  return AtomicFileSink(final_path, partial, std::move(fd));
}

AtomicFileSink::AtomicFileSink(std::filesystem::path final_path, std::filesystem::path partial,
                               Fd fd)
    : m_final(std::move(final_path)), m_partial(std::move(partial)), m_fd(std::move(fd)) {}

AtomicFileSink::AtomicFileSink(AtomicFileSink&& other) noexcept
    : m_final(std::move(other.m_final)),
      m_partial(std::move(other.m_partial)),
      m_fd(std::move(other.m_fd)),
      m_written(other.m_written),
      m_flushed(other.m_flushed),
      m_done(other.m_done) {
  other.m_done = true;
}

AtomicFileSink::~AtomicFileSink() {
  if (!m_done) abort();
}

void AtomicFileSink::write(std::span<const char> data) {
  write_all(m_fd.get(), data.data(), data.size(), "cannot write " + m_partial.string());
  m_written += data.size();
  if (m_written - m_flushed >= kWriteBehind) write_behind();
}

void AtomicFileSink::write_behind() {
  // Best effort: errors here resurface at fsync in commit().
  ::sync_file_range(m_fd.get(), static_cast<off_t>(m_flushed),
                    static_cast<off_t>(m_written - m_flushed), SYNC_FILE_RANGE_WRITE);
  if (m_flushed >= kWriteBehind) {
    off_t old = static_cast<off_t>(m_flushed - kWriteBehind);
    ::sync_file_range(m_fd.get(), old, static_cast<off_t>(kWriteBehind),
                      SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                          SYNC_FILE_RANGE_WAIT_AFTER);
    ::posix_fadvise(m_fd.get(), old, static_cast<off_t>(kWriteBehind), POSIX_FADV_DONTNEED);
  }
  m_flushed = m_written;
}

void AtomicFileSink::sync() {
  if (m_synced) return;
  if (::fsync(m_fd.get()) != 0) throw_errno("cannot fsync " + m_partial.string());
  m_fd.reset();
  m_synced = true;
}

void AtomicFileSink::commit() {
  sync();
  int rc = ::renameat2(AT_FDCWD, m_partial.c_str(), AT_FDCWD, m_final.c_str(), RENAME_NOREPLACE);
  if (rc != 0 && errno == EINVAL) {
    // File systems without RENAME_NOREPLACE: link() also refuses to replace.
    rc = ::link(m_partial.c_str(), m_final.c_str());
    if (rc == 0) ::unlink(m_partial.c_str());
  }
  if (rc != 0) {
    if (errno == EEXIST) {
      throw Error(ErrorCode::io, "cannot finish " + m_final.string() + ": the file already exists",
                  "another run wrote a backup with the same name; run again");
    }
    throw_errno("cannot rename " + m_partial.string());
  }
  m_done = true;
  fsync_dir(m_final.parent_path());
}

void AtomicFileSink::abort() {
  m_fd.reset();
  if (!m_partial.empty()) ::unlink(m_partial.c_str());
  m_done = true;
}

}  // namespace backupctl::io
