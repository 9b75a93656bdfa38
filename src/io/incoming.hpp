// A file that is still arriving: a backup streamed from the remote for a restore that reads it
// as it comes (`restore db --remote`). Its bytes go to an anonymous spool file (O_TMPFILE: it has
// no name, and the kernel frees it when the process ends, however it ends), and the file is
// registered under the path it would have in BACKUP_DIR, where nothing is written. Readers that
// open that path through open_plaintext() (and so every reader of a dump) read what has arrived
// and wait for the rest; a child that would read the path itself (pg_restore, age) is fed through
// a pipe instead (is_incoming()).
//
// A reader sees the end of the file only once the writer declared every byte arrived and checked
// (complete()); a download that failed is thrown at every reader from then on. So a reader that
// read to the end has read the bytes the meta describes, and one that did not cannot mistake a
// cut-off for the end.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <memory>
#include <mutex>
#include <span>

#include "io/pipeline.hpp"
#include "util/fd.hpp"

namespace backupctl::io {

class IncomingFile : public std::enable_shared_from_this<IncomingFile> {
 public:
  // Registers `name` for `size` bytes, spooled in an anonymous file in `spool_dir` (on the
  // backups' file system: it holds the file until the process ends). Throws Error(usage) when
  // another IncomingFile has that name.
  static std::shared_ptr<IncomingFile> create(const std::filesystem::path& name, std::uint64_t size,
                                              const std::filesystem::path& spool_dir);
  // The file registered under `name`, or null.
  static std::shared_ptr<IncomingFile> find(const std::filesystem::path& name);

  IncomingFile(const IncomingFile&) = delete;
  IncomingFile& operator=(const IncomingFile&) = delete;
  ~IncomingFile();  // unregisters

  const std::filesystem::path& name() const { return m_name; }
  std::uint64_t size() const { return m_size; }

  // The writer's side (one thread). append() throws Error(verification) past size(), and
  // Error(interrupted) once cancel() was called.
  void append(std::span<const char> data);
  void complete();                    // REQUIRES: size() bytes arrived and were checked
  void fail(std::exception_ptr why);  // readers throw `why` from now on
  void cancel();                      // nobody will read on: the writer should stop
  bool cancelled() const { return m_cancelled; }
  const std::atomic<bool>* cancel_flag() const { return &m_cancelled; }  // for a StopScope
  std::uint64_t arrived() const;

  // The readers' side: a Source from the first byte. `stop`, when set, ends a wait with
  // Error(interrupted) (a feeder thread whose consumer went away).
  std::unique_ptr<Source> open(const std::atomic<bool>* stop = nullptr);
  // Up to buf.size() bytes at `offset`, waiting for them to arrive; 0 at the end (after
  // complete()). Throws the writer's failure, or Error(interrupted) on a signal or `stop`.
  std::size_t read_at(std::uint64_t offset, std::span<char> buf, const std::atomic<bool>* stop);

 private:
  IncomingFile(std::filesystem::path name, std::uint64_t size, Fd spool);

  const std::filesystem::path m_name;
  const std::uint64_t m_size;
  Fd m_spool;
  mutable std::mutex m_mutex;
  std::condition_variable m_grew;
  std::uint64_t m_arrived = 0;  // written to the spool (guarded by m_mutex)
  bool m_complete = false;
  std::exception_ptr m_failure;
  std::atomic<bool> m_cancelled{false};
};

// Whether `file` is an IncomingFile (then nothing is on disk under that name).
inline bool is_incoming(const std::filesystem::path& file) {
  return IncomingFile::find(file) != nullptr;
}

// A Sink that appends to an IncomingFile (the downloader's end of the chain).
class IncomingSink : public Sink {
 public:
  explicit IncomingSink(IncomingFile& file) : m_file(file) {}
  void write(std::span<const char> data) override { m_file.append(data); }

 private:
  IncomingFile& m_file;
};

}  // namespace backupctl::io
