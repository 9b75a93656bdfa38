// A temporary PostgreSQL server recovered from a base backup and WAL to a moment, for a
// point-in-time restore (command/restore_pitr.cpp) to dump the database from.
//
// Under its folder (`root`): data/ (the base backup unpacked), wal/ (the segments recovery needs,
// staged by the caller: restore_command copies from there), server.conf, hba.conf and server.log.
// Our own configuration replaces the backed-up one (which may live in /etc, load libraries this
// host lacks, or listen on the live server's port): a socket in `root` only, no TCP, no
// archiving, trust for that socket. The server runs as a child of backupctl; as root, under the
// `postgres` user (PostgreSQL refuses root), which must be able to reach `root`.
//
// The journal entry "recovery_cluster" (command/repair.cpp) stops a server left running by a
// killed run (by its postmaster.pid, only when that process runs in this data directory) and
// removes the folder.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include "io/pipeline.hpp"
#include "pg/target.hpp"
#include "util/process.hpp"

namespace backupctl {

// Where recovery stops: a moment, a WAL position, or the end of the WAL there is.
struct RecoveryTarget {
  enum class Kind { time, lsn, latest };
  Kind kind = Kind::latest;
  std::string value;  // time: as PostgreSQL takes it ("2026-12-06 14:01:59.5+00"); lsn: "0/16B3F48"

  std::string describe() const;  // "2026-12-06 14:01:59.5+00", "LSN 0/16B3F48", "the end of the WAL kept"
};

class RecoveryCluster {
 public:
  // `root`: a new, empty folder; `bindir`: the server's programs (postgres) of the backup's major
  // version.
  RecoveryCluster(std::filesystem::path root, std::filesystem::path bindir);
  ~RecoveryCluster();  // stops the server (immediate shutdown) when it still runs
  RecoveryCluster(const RecoveryCluster&) = delete;
  RecoveryCluster& operator=(const RecoveryCluster&) = delete;

  const std::filesystem::path& root() const { return m_root; }
  std::filesystem::path data_dir() const { return m_root / "data"; }
  std::filesystem::path wal_dir() const { return m_root / "wal"; }

  // Unpacks a base backup's tar (pg_basebackup -Ft) into data/. Only folders and regular files
  // with relative paths are taken (a tar of one tablespace has nothing else); anything else, a
  // path with "..", or a second copy of a file is refused before it is written.
  void unpack_base(io::Source& tar);

  // Writes the configuration and recovery.signal and starts the server; returns once it accepts
  // connections or ends. Throws Error(tool_failed) with the log's FATAL line when it ends.
  void start(const RecoveryTarget& target);

  // Waits until recovery has ended and the server left recovery (promoted). Throws
  // Error(tool_failed) naming the log's reason when the server stops instead (e.g. the target
  // lies past the WAL kept), Error(interrupted) on a signal.
  void wait_until_promoted();

  // A connection to database `dbname` on this server as `user` (over its socket).
  PgTarget target(const PgTarget& like, const std::string& dbname) const;

  // Fast shutdown; immediate after 60 s. Never throws.
  void stop() noexcept;

  // The last lines of the server's log (for errors).
  std::string log_tail() const;

 private:
  void write_config(const RecoveryTarget& target);
  void own_tree();  // as root: everything under root to the postgres user
  bool accepting();

  std::filesystem::path m_root, m_bindir;
  int m_port = 5432;
  std::optional<Child> m_server;
  long m_uid = -1, m_gid = -1;  // the postgres user, when we are root
};

// Stops the server a killed run left in `root`/data (its postmaster.pid names it; only a process
// whose working directory is that data directory is signalled) and removes `root`. For the
// journal's repair. Returns what it did ("" when there was nothing).
std::string remove_recovery_cluster(const std::filesystem::path& root);

}  // namespace backupctl
