// `backupctl prune [--dry-run]`, also run after every successful backup (never before one).
//
// Per source (each database, each objects source, the config, each cluster's base backups),
// newest first, a backup is kept when it is one of the BACKUP_KEEP_MIN newest, one of the BACKUP_KEEP_MIN newest that verified
// (and is not damaged since: its size is the meta's), the newest of one of
// the last BACKUP_KEEP_DAILY days / BACKUP_KEEP_WEEKLY weeks / BACKUP_KEEP_MONTHLY months, younger
// than BACKUP_RETENTION_DAYS, dated in the future (a clock problem is not a reason to delete), or
// not yet copied to BACKUP_REMOTE_URL (while the remote would keep it).
// Everything else goes, with its meta and companions. Also removed: stale .partial and temporary
// files (no backup runs: the caller holds the lock), roles files whose dump is gone, set files
// whose parts are all gone, the WAL (wal/<cluster>/) from before the oldest base backup kept of
// its cluster, and `<db>__pre_restore_*` databases older than
// RESTORE_KEEP_PREVIOUS_DAYS. Each deletion says why. Only files inside BACKUP_DIR whose names
// are backup names are ever deleted (with their meta and the roles file the meta names beside
// them): a meta or set file naming anything else is reported, not followed.
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "catalog/catalog.hpp"
#include "catalog/journal.hpp"
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
// With `journal`, the deletions are announced there first (a prune cut short is finished by the
// repair).
// The retention rules for the backups of one source, newest first: the ones kept, each with why
// (the time limit itself is the caller's). Shared by the local and the remote prune.
std::map<const CatalogEntry*, std::string> kept_of_source(const Config& config,
                                                          const std::vector<const CatalogEntry*>& list,
                                                          Clock::time_point now);

// Whether every backup of a source is dated ahead of `now`: then this host's clock is the likely
// wrong one, and `prune --wrong-clock` deletes none of them.
bool all_dated_ahead(const std::vector<const CatalogEntry*>& list, Clock::time_point now);

// What a prune deletes: what the retention rules allow (a backup that needs an off-site copy and
// has none is kept), or only the backups dated ahead of this host's clock (`prune
// --wrong-clock`: made with a wrong clock, they are never `latest` and `status` fails on them).
enum class PruneWhat { retention, wrong_clock };

// Whether a prune deletes, or says what it would delete.
enum class DryRun { no, yes };

PruneResult prune(const Config& config, DryRun mode, const std::optional<PgTarget>& pg,
                  Clock::time_point now, Journal* journal = nullptr, PruneWhat what = PruneWhat::retention);

}  // namespace backupctl
