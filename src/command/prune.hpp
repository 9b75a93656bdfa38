// `backupctl prune [--dry-run]`, also run after every successful backup (never before one).
//
// Per kind (db, objects, config), newest first, a backup is kept when it is one of the
// BACKUP_KEEP_MIN newest, one of the BACKUP_KEEP_MIN newest that verified, the newest of one of
// the last BACKUP_KEEP_DAILY days / BACKUP_KEEP_WEEKLY weeks / BACKUP_KEEP_MONTHLY months, younger
// than BACKUP_RETENTION_DAYS, or dated in the future (a clock problem is not a reason to delete).
// Everything else goes, with its meta and companions. Also removed: stale .partial and temporary
// files (no backup runs: the caller holds the lock), roles files whose dump is gone, set files
// whose parts are all gone, and `<db>__pre_restore_*` databases older than
// RESTORE_KEEP_PREVIOUS_DAYS. Each deletion says why.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "pg/target.hpp"
#include "util/time.hpp"

namespace backupctl {

struct PruneAction {
  std::string what;    // a path, or "database <name>"
  std::string reason;
};

struct PruneResult {
  std::vector<PruneAction> deleted;
  std::vector<PruneAction> kept;  // backups older than the retention that were kept, and why
};

// With `pg`, expired previous databases are dropped too (best effort: a server that cannot be
// reached is a warning). REQUIRES: the caller holds the BackupLock (unless dry_run).
PruneResult prune(const Config& config, bool dry_run, const std::optional<PgTarget>& pg,
                  Clock::time_point now);

}  // namespace backupctl
