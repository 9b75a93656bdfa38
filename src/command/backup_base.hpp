// `backupctl backup base`: a base backup for point-in-time recovery. pg_basebackup writes the
// data directory as one tar to its stdout (-Ft -D -, WAL fetched into it: -X fetch, so the backup
// restores on its own to the moment it ended); the tar streams through zstd (and age) into
// base/base_<system id>_<ts>.tar.zst, whose meta records the cluster (system identifier), the
// timeline, the WAL positions the backup starts and ends at and the server's version: what a
// restore needs to pick it and to know which WAL follows it.
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <vector>

#include "command/backup_db.hpp"
#include "config/config.hpp"
#include "pg/wal.hpp"
#include "util/time.hpp"
#include "pg/target.hpp"
#include "util/progress.hpp"

namespace backupctl {

BackupResult backup_base(const Config& config, const PgTarget& target, Progress& progress);

// A base backup in BACKUP_DIR/base, as its meta describes it.
struct BaseBackup {
  std::filesystem::path file;
  Meta meta;
  std::uint64_t sysid = 0;
  std::uint32_t timeline = 0;
  Lsn start = 0, stop = 0;
  std::uint64_t segment_size = 0;
  int major = 0;
  Clock::time_point finished;  // when it had surely ended, by the server's clock
  // Each database's OID when it ended (metas before 2026-12-08 have none): which base/<oid>
  // folder a restore of one database needs whole. A hint only: the restore checks it.
  std::map<std::string, std::uint32_t> databases;

  // The first WAL segment a restore from it reads: the WAL before it is not needed.
  std::string first_segment() const;
};

// The base backup `meta` describes (its file: `file`, which need not be there: a remote's).
// Throws Error(verification) when the meta is not a base backup's, or not readable.
BaseBackup base_backup_of(const Meta& meta, const std::filesystem::path& file);

// Whether `backup all` takes a base backup now: none yet, or the newest is
// BACKUP_BASE_EVERY_HOURS old (less a few minutes' slack).
bool base_backup_due(const Config& config, Clock::time_point now);

// parse_iso8601() keeping the fraction of a second ("2026-12-06T14:01:59.123456Z").
std::optional<Clock::time_point> parse_precise_time(const std::string& text);

// The base backups with a readable meta that names its own file; the others are passed over
// with a warning.
std::vector<BaseBackup> list_base_backups(const Config& config);

}  // namespace backupctl
