// A temporary PostgreSQL server recovered from a base backup and WAL to a moment, for a
// point-in-time restore (command/restore_pitr.cpp) to dump the database from.
//
// It runs on this host (the server programs of the backup's major version), or, on a host without
// them (PG_TOOLS=compose, or auto with SERVICE_CONTROL=compose), in the compose service's own
// container (PG_SERVICE, its image: the live server's version by construction). There the folder
// is staged here first, then shipped into the container as one plain tar (`tar -x` in
// /tmp/backupctl-pitr.<run tag>, as the postgres user), and the server runs through `compose exec`:
// its log still comes back to server.log here, pg_isready and pg_ctl run the same way. The
// container's filesystem then needs room for the database.
//
// Under its folder (`root`): data/ (the base backup unpacked), wal/ (the segments recovery needs,
// staged by the caller, add_wal(), while the server replays: its restore_command waits for each
// and renames it into pg_wal/), server.conf, hba.conf and server.log.
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
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <vector>

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

// Where the temporary server runs.
struct RecoveryServer {
  std::filesystem::path bindir;           // postgres, pg_ctl, pg_isready of the backup's major version
  std::vector<std::string> service_exec;  // `compose … exec -T -u postgres <service>`; empty: on this host
  std::string service;                    // PG_SERVICE, for messages

  bool in_service() const { return !service_exec.empty(); }
  // "/usr/lib/postgresql/15/bin/postgres" or "... in the compose service postgres".
  std::string describe() const;
};

// Finds the server of major version `major` in the compose service: the first of
// /usr/lib/postgresql/<major>/bin (Debian's layout, the official image's too), /usr/local/bin (the
// official Alpine images), /usr/local/pgsql/bin whose postgres says that version. Throws
// Error(not_found) naming what the service has.
RecoveryServer find_service_server(const std::vector<std::string>& service_exec, const std::string& service, int major);

// Whether `bindir` is one find_service_server() can answer (a journal names one).
bool service_server_bindir(const std::string& bindir);

class RecoveryCluster {
 public:
  // `root`: a new, empty folder here (on this host: the server's; with a service: the staging
  // folder, and server.log).
  RecoveryCluster(std::filesystem::path root, RecoveryServer server);
  ~RecoveryCluster();  // stops the server (immediate shutdown) when it still runs
  RecoveryCluster(const RecoveryCluster&) = delete;
  RecoveryCluster& operator=(const RecoveryCluster&) = delete;

  const std::filesystem::path& root() const { return m_root; }
  std::filesystem::path data_dir() const { return m_root / "data"; }
  std::filesystem::path wal_dir() const { return m_root / "wal"; }

  // Unpacks a base backup's tar (pg_basebackup -Ft) into data/. Only folders and regular files
  // with relative paths are taken (a tar of one tablespace has nothing else); anything else, a
  // path with "..", or a second copy of a file is refused before it is written.
  // With `only_database` (a database's OID), the relation files of the other databases users
  // made (OID 16384 and up) are written as sparse files of zeroes of their size, as pgBackRest's
  // `--db-include` does: the server can replay the WAL (with full_page_writes, every page the
  // WAL touches comes as a whole image first) and start, and only that database holds its data.
  // The catalogs shared by all databases (global/) and the templates stay whole.
  void unpack_base(io::Source& tar, std::optional<std::uint32_t> only_database = std::nullopt);
  // After unpack_base(…, oid): the databases whose files are zeroes, and whether `oid` was in
  // the base backup at all.
  // The server then runs with ignore_invalid_pages (PostgreSQL 13 and later): a record that
  // needs no full-page image (a heap page marked all-visible) may touch a page of zeroes, which
  // PostgreSQL would otherwise stop on at the end of recovery. invalid_page_outside_zeroed()
  // says, after the replay, whether the log names such a page anywhere else: then the restore
  // cannot trust this one and starts over with the whole base backup.
  const std::set<std::uint32_t>& zeroed_databases() const { return m_zeroed; }
  bool kept_database_seen() const { return m_kept_seen; }
  std::string invalid_page_outside_zeroed() const;  // the log's line, "" when none

  // The WAL, from any thread, while the server replays: a segment written whole to `staged` (in
  // wal_dir(), under another name) is handed to the server as `name`; wal_staged() says every
  // one is there (until then the server waits for the next). In a service's container the server
  // starts only once all of them are staged (it gets the folder whole).
  // expect_wal() first, before start(): the names that will be added, in order (the server waits
  // for these only).
  void expect_wal(const std::vector<std::string>& names) const;
  void add_wal(const std::filesystem::path& staged, const std::string& name) const;
  void wal_staged() const;

  // Writes the configuration and recovery.signal and starts the server.
  void start(const RecoveryTarget& target);

  // Waits until recovery has ended and the server left recovery (promoted), calling `check`
  // (which may throw: the WAL's stager failed) while it waits. Throws Error(tool_failed) naming
  // the log's reason when the server stops instead (e.g. the target lies past the WAL kept),
  // Error(interrupted) on a signal.
  void wait_until_promoted(const std::function<void()>& check = {});

  // A connection to database `dbname` on this server as `user` (over its socket). With a service:
  // from inside its container (PGHOST is the folder there).
  PgTarget target(const PgTarget& like, const std::string& dbname) const;

  // Where the server's folder is, as the server sees it: root() here; in the service's container
  // /tmp/backupctl-pitr.<run tag>.
  const std::string& server_root() const { return m_server_root; }
  int port() const;  // of its socket

  // Fast shutdown; immediate after 60 s. Never throws.
  void stop() noexcept;

  // The last lines of the server's log (for errors).
  std::string log_tail() const;

 private:
  void write_config(const RecoveryTarget& target);
  void own(const std::filesystem::path& p) const;  // as root: to the postgres user
  void own_tree();  // as root: everything under root to the postgres user
  std::string restore_command() const;
  void move_wal_into_pg_wal();  // wal/ (staged) into data/pg_wal/
  void ship();      // with a service: root's data/, wal/ and configuration into its container
  bool accepting();
  std::vector<std::string> program(const std::string& name, std::vector<std::string> args) const;

  std::filesystem::path m_root;
  RecoveryServer m_where;
  std::string m_server_root;
  std::optional<Child> m_server;
  long m_uid = -1, m_gid = -1;  // the postgres user, when we are root
  std::set<std::uint32_t> m_zeroed;
  bool m_kept_seen = false;
};

// Stops the server a killed run left in `root`/data (its postmaster.pid names it; only a process
// whose working directory is that data directory is signalled) and removes `root`. For the
// journal's repair. Returns what it did ("" when there was nothing).
std::string remove_recovery_cluster(const std::filesystem::path& root);

// The same for a server a killed run left in the service's container: stopped (pg_ctl, immediate)
// and `server_root` removed there. REQUIRES: `server_root` and `bindir` checked
// (is_service_recovery_root, service_server_bindir). Throws Error(tool_failed) when the service
// cannot be asked (the journal keeps the entry for the next command).
std::string remove_service_recovery(const std::vector<std::string>& service_exec, const std::string& server_root,
                                    const std::string& bindir);

// Whether `path` is a folder a RecoveryCluster makes in a service's container, and the one this
// run makes (/tmp/backupctl-pitr.<run tag>).
bool is_service_recovery_root(const std::string& path);
std::string service_recovery_root();

}  // namespace backupctl
