// A file that is still arriving: a backup streamed from the remote for a restore that reads it
// as it comes (`restore db --remote`). Its bytes go to an anonymous spool file (O_TMPFILE: it has
// no name, and the kernel frees it when the process ends, however it ends), and the file is
// registered under the path it would have in BACKUP_DIR, where nothing is written. Readers that
// open that path through open_plaintext() (and so every reader of a dump) read what has arrived
// and wait for the rest; a child that would read the path itself (pg_restore, age) is fed through
// a pipe instead (is_incoming()).
//
// The spool is a window (64 MiB), not the whole file. Until the last reader of the file is open
// (the load of a restore, which reads the dump once, in order), the writer stops a window from
// the first byte, where every new reader starts, unless a reader asks for more (the plan's
// `pg_restore --list` reads the table of contents, a few KiB to MiB). From release_as_read() on,
// the bytes every open reader has passed are dropped (punched out of the spool) and the writer
// keeps a window ahead of the slowest reader. So a restore from the remote needs no free space
// the size of the dump, and the spool's writes land in the pages the dropped bytes freed instead
// of new ones (on this project's VMs a page the kernel has not used for a while costs ~7 us at
// first touch: 1.1 s of a 600 MiB restore's 2 s of system time).
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
#include <list>
#include <memory>
#include <mutex>
#include <span>

#include "io/pipeline.hpp"
#include "util/fd.hpp"

namespace backupctl::io {

class IncomingFile : public std::enable_shared_from_this<IncomingFile> {
 public:
  // Registers `name` for `size` bytes, spooled in an anonymous file in `spool_dir` (on the
  // backups' file system) of at most about `window` bytes (see above). Throws Error(usage) when
  // another IncomingFile has that name.
  static constexpr std::uint64_t kWindow = 64u << 20;
  // kWindow, or BACKUPCTL_SPOOL_WINDOW (bytes): tests shrink the window so that a dump of a few
  // MiB goes through every state a GB-sized one does (held back before the load, dropped during it).
  static std::uint64_t window_setting();
  // Bytes read are dropped from the spool in whole granules (a punch per 4 MiB, not per read).
  static constexpr std::uint64_t kDropGranule = 4u << 20;
  // `size` kUnknownSize: a file whose end is known when it comes (pg_dump's output); size()
  // says so until complete().
  static constexpr std::uint64_t kUnknownSize = ~std::uint64_t{0};
  static std::shared_ptr<IncomingFile> create(const std::filesystem::path& name, std::uint64_t size,
                                              const std::filesystem::path& spool_dir,
                                              std::uint64_t window = kWindow);
  // The file registered under `name`, or null.
  static std::shared_ptr<IncomingFile> find(const std::filesystem::path& name);

  IncomingFile(const IncomingFile&) = delete;
  IncomingFile& operator=(const IncomingFile&) = delete;
  ~IncomingFile();  // unregisters

  const std::filesystem::path& name() const { return m_name; }
  std::uint64_t size() const { return m_size; }  // kUnknownSize until complete(), for such a file

  // The writer's side (one thread). append() throws Error(verification) past size(), and
  // Error(interrupted) once cancel() was called. It first waits while the spool holds a window
  // (see above; never before a byte a reader has asked for).
  void append(std::span<const char> data);
  void complete();                    // REQUIRES: size() bytes arrived (any, when unknown) and were checked
  void fail(std::exception_ptr why);  // readers throw `why` from now on
  void cancel();                      // nobody will read on: the writer should stop
  bool cancelled() const { return m_cancelled; }
  const std::atomic<bool>* cancel_flag() const { return &m_cancelled; }  // for a StopScope
  std::uint64_t arrived() const;

  // From now on bytes every open reader has read are dropped, and the writer keeps within the
  // window of the slowest reader (see above). A reader opened later that reads a dropped byte
  // gets Error(internal): call this when the readers open from now on are the last ones.
  void release_as_read();
  // The bytes the spool holds on disk (its allocated blocks).
  std::uint64_t spooled() const;

  // The readers' side: a Source from the first byte. `stop`, when set, ends a wait with
  // Error(interrupted) (a feeder thread whose consumer went away).
  std::unique_ptr<Source> open(const std::atomic<bool>* stop = nullptr);
  // Up to buf.size() bytes at `offset`, waiting for them to arrive; 0 at the end (after
  // complete()). Throws the writer's failure, or Error(interrupted) on a signal or `stop`.
  // (Not an open reader: it holds back neither the writer nor the dropping.)
  std::size_t read_at(std::uint64_t offset, std::span<char> buf, const std::atomic<bool>* stop) {
    return read(nullptr, offset, buf, stop);
  }

 private:
  friend class IncomingSource;
  IncomingFile(std::filesystem::path name, std::uint64_t size, Fd spool, std::uint64_t window);
  // read_at() for an open reader (`reader`, whose position it advances), or for none.
  std::size_t read(std::uint64_t* reader, std::uint64_t offset, std::span<char> buf,
                   const std::atomic<bool>* stop);
  std::uint64_t* add_reader();  // an open reader's position, at 0
  void remove_reader(std::uint64_t* reader);
  void drop_read_bytes(std::unique_lock<std::mutex>& lock);  // REQUIRES: lock held

  const std::filesystem::path m_name;
  std::atomic<std::uint64_t> m_size;
  Fd m_spool;
  mutable std::mutex m_mutex;
  std::condition_variable m_grew;
  std::uint64_t m_arrived = 0;  // written to the spool (guarded by m_mutex)
  bool m_complete = false;
  std::exception_ptr m_failure;
  std::atomic<bool> m_cancelled{false};
  const std::uint64_t m_window;
  // Guarded by m_mutex: the open readers' positions, the end of the furthest byte a reader has
  // waited for (the writer is not held back before it), whether release_as_read() was called,
  // and the bytes dropped from the front.
  std::list<std::uint64_t> m_readers;
  std::uint64_t m_wanted = 0;
  bool m_released = false;
  std::uint64_t m_dropped = 0;
  std::condition_variable m_room;  // a reader moved on, went away, or asked for more
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
