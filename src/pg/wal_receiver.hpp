// The WAL receiver's replication client: PostgreSQL's streaming replication protocol over libpq
// (START_REPLICATION on a physical slot), writing the segments as pg_receivewal does — a
// <segment>.partial zero-filled to the segment size while it arrives, renamed to <segment> once
// whole and fsynced — into one folder (the archive's incoming/).
//
// Why not pg_receivewal: it has two ways to make what it receives durable, an fsync per message
// (--synchronous) or one per segment. The first costs the primary ~20% of its TPS under pgbench on
// a 2-core host (bench/receivewal_fsync.sh: the receiver's fsyncs queue behind the server's own
// on the same disk); the second leaves up to a segment (16 MiB, minutes of a quiet server) not
// durable. Here the unfinished segment is fsynced in groups: at once when the last fsync is older
// than kGroupFlush, otherwise when it is — a commit is durable in BACKUP_DIR within kGroupFlush of
// its arrival, with at most 1/kGroupFlush fsyncs a second however busy the server is. The flush
// position reported to the server is the fsynced one, so pg_stat_replication.flush_lsn and the
// slot's restart_lsn say what is durable here (what the drill and the tests wait on).
//
// As a synchronous standby (WAL_SYNCHRONOUS=yes) the primary's commits wait for that flush: then
// the unfinished segment is fsynced as soon as the socket has nothing more to read, not up to
// kGroupFlush later (which held each commit ~50 ms: 70 TPS under pgbench -c 4). A server that
// streams without a pause (a bulk load) is still flushed in groups.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "pg/connection.hpp"
#include "pg/wal.hpp"

namespace backupctl {

// Why a stream ended.
enum class StreamEnd {
  stopped,      // `stop` was set: everything received is fsynced
  server_ended, // the server ended the stream (shut down, a timeline switch): reconnect
};

struct WalStreamStart {
  std::uint32_t timeline = 0;
  Lsn position = 0;  // a segment's start
};

class WalReceiver {
 public:
  static constexpr std::chrono::milliseconds kGroupFlush{50};

  // `conn`: a Session::physical connection. `dir`: where the files go (it exists).
  // `synchronous`: the primary waits for our flushes (above).
  WalReceiver(PgConnection conn, std::filesystem::path dir, std::string slot, std::uint64_t segment_size,
              bool synchronous = false);

  // Streams from `start` until the server ends the stream or `stop` is set (checked at least
  // every 100 ms). Throws Error(connection) when the connection breaks or the server refuses (its
  // words in the message: "requested WAL segment … has already been removed"), Error(io) when a
  // file cannot be written.
  StreamEnd run(const WalStreamStart& start, const std::atomic<bool>& stop);

  // The end of what is fsynced here (0 before anything was).
  Lsn flushed() const { return m_flushed; }

 private:
  void on_data(Lsn start, const char* data, std::size_t size);
  void open_segment(Lsn at);
  void close_segment();
  void flush();
  void send_feedback();
  void fetch_history(std::uint32_t timeline);

  PgConnection m_conn;
  std::filesystem::path m_dir;
  std::string m_slot;
  std::uint64_t m_segment_size;
  bool m_synchronous;
  std::uint32_t m_timeline = 0;
  int m_fd = -1;                  // the open .partial
  WalSegmentName m_segment;       // its segment
  Lsn m_written = 0, m_flushed = 0;
  std::chrono::steady_clock::time_point m_last_flush{}, m_last_feedback{};
};

// Where a receiver resumes: after the newest segment kept (on the server's timeline), at the start
// of the unfinished one (it is received again whole), else at the slot's restart position, else
// the server's. `kept`: the segment names kept (archived and finished); `partial`: the unfinished
// one's name, if any. A position ahead of the server's (a crafted name in BACKUP_DIR) is passed
// over. Pure: the caller asks the server.
WalStreamStart wal_stream_start(const std::vector<std::string>& kept, const std::optional<std::string>& partial,
                                std::uint32_t server_timeline, Lsn server_position, std::optional<Lsn> slot_restart,
                                std::uint64_t segment_size);

}  // namespace backupctl
