// Loads the COPY data of a custom-format archive over several connections at once, splitting even
// a single table between them.
//
// Why: a database whose data is mostly one big table restores no faster with `pg_restore -j`
// than with one job, because pg_restore gives a table to one worker; the server's COPY of that
// table is the whole restore's critical path. Cut into line-aligned batches and fed to N
// connections, the table loads N-wide (measured on 2 cores: 1 GB of COPY text, one COPY 7.97 s,
// two concurrent COPYs of halves 5.00 s). Rows are appended in a different order than the
// archive holds them, which SQL does not see (tables have no order) but CLUSTERed layouts do.
//
// The producer (the thread reading the archive) calls data()/end() per table; worker threads
// own the connections. Memory: at most 2 batches per connection queued plus one being filled.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "pg/dump_parser.hpp"
#include "pg/target.hpp"

namespace backupctl {

class ParallelCopyLoader {
 public:
  // Opens `connections` connections to `db`, each running `session_sql` first (the archive's
  // encoding, standard_conforming_strings, search_path).
  ParallelCopyLoader(const PgTarget& db, int connections, std::string session_sql);
  // Without finish(): the workers abort their COPYs and stop; nothing is committed for batches
  // still queued.
  ~ParallelCopyLoader();
  ParallelCopyLoader(const ParallelCopyLoader&) = delete;
  ParallelCopyLoader& operator=(const ParallelCopyLoader&) = delete;

  // COPY text of `entry` (an is_copy_data() entry), in any chunking. Throws the workers' first
  // failure as soon as it is known.
  void data(const DumpTocEntry& entry, const char* p, std::size_t n);
  // The end of the entry's data: its last batch, without pg_dump's end-of-data marker.
  void end(const DumpTocEntry& entry);
  // Waits for every batch to be loaded and every COPY to be committed; throws the first failure.
  // Returns the rows the server reported per dump id.
  std::map<int, std::int64_t> finish();
  // Called once per entry as soon as all of its rows are committed (from a worker thread; from
  // the caller's, for an entry without rows), so that work on the table can start while later
  // tables still load. Set before the first data(); keep it short: the thread that calls it
  // loads nothing meanwhile.
  void on_loaded(std::function<void(const DumpTocEntry&)> fn) { m_on_loaded = std::move(fn); }

  // The session settings for connections loading this archive's data, from its TOC.
  static std::string session_sql(const std::vector<DumpTocEntry>& toc);

 private:
  struct Batch {
    const DumpTocEntry* entry = nullptr;
    std::string bytes;
  };
  // Where an entry's data is: batches queued, connections with a COPY of it open, and whether
  // the producer has handed over its end.
  struct EntryState {
    int queued = 0;
    int open = 0;
    bool ended = false;
  };
  // Under m_mutex: whether the entry just became fully loaded (reported once).
  bool loaded_now(const DumpTocEntry* entry);
  void push(Batch batch);
  // Queues the first `cut` bytes of the batch being filled; the rest begins the next one.
  void send_pending(const DumpTocEntry& entry, std::size_t cut);
  // Takes the next batch; a worker whose open COPY is not for the batch's entry opens one.
  bool pop(Batch& batch, const DumpTocEntry* open_entry);
  void work(const PgTarget& db, const std::string& session_sql);
  void fail(std::exception_ptr e);
  void rethrow_failure();
  void stop_workers();

  std::mutex m_mutex;
  std::condition_variable m_can_pop, m_can_push;
  std::deque<Batch> m_queue;
  std::size_t m_max_queue;
  bool m_closed = false;
  bool m_aborted = false;
  std::exception_ptr m_failure;
  std::map<int, std::int64_t> m_rows;
  std::map<const DumpTocEntry*, EntryState> m_state;
  std::function<void(const DumpTocEntry&)> m_on_loaded;
  std::vector<std::thread> m_workers;
  // The batch being filled, for the entry being read; how much of it was searched for newlines,
  // and the last newline found there.
  const DumpTocEntry* m_entry = nullptr;
  std::string m_pending;
  std::size_t m_searched = 0;
  std::size_t m_last_newline = std::string::npos;
};

}  // namespace backupctl
