// `backupctl restore db --to-time T | --to-lsn L`: the database as it was at a moment, through
// the same guarded path as a dump restore.
//
//   plan (no CONFIRM=YES: printed, nothing changes)
//     the newest base backup that ended before the target (base/*.meta: its cluster, timeline,
//     WAL start and end), its sha256 checked; the WAL kept after it (wal/<cluster>/), followed
//     segment by segment to the first gap; the server programs of the backup's major version:
//     this host's, or (PG_TOOLS=compose, or auto under SERVICE_CONTROL=compose on a host without
//     them) those of the compose service PG_SERVICE, where the server then runs
//     (pg/recovery_cluster.hpp)
//   run, as the journal's steps (each a fault point of the same name)
//     restore-pitr.unpack    the base backup into a temporary cluster under PITR_WORK_DIR
//                            (journal entry "recovery_cluster": a killed run's server is stopped
//                            and its folder removed by the next command, here and in the
//                            compose service's container)
//     restore-pitr.wal       the segments staged beside it (from the unpack on, while the server
//                            replays; in a compose service all of them first), each checked
//                            against its name
//     restore-pitr.replay    the server started in recovery, up to the target, then promoted
//     restore-pitr.dump      pg_dump of the database from it (custom format, in the same folder)
//     then the dump restore's own steps (command/restore_db.hpp): side database, swap,
//     checklist, undo
//
// PostgreSQL stops replay at the target itself (recovery_target_time / _lsn, inclusive), and
// refuses to promote when the WAL ends before it: a moment past the WAL kept is an error, never
// an older database.
#pragma once

#include <nlohmann/json.hpp>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "catalog/journal.hpp"
#include "catalog/meta.hpp"
#include "command/backup_base.hpp"
#include "command/restore_db.hpp"
#include "config/config.hpp"
#include "pg/recovery_cluster.hpp"
#include "pg/target.hpp"
#include "util/progress.hpp"

namespace backupctl {

struct PitrOptions {
  std::string to_time;  // ISO 8601 with Z or an offset, or "latest"
  std::string to_lsn;   // "0/16B3F48"
  RestoreDbOptions restore;  // target database, --online, ... (file: unused)
  // Whether plan_pitr reads the whole base backup to compare it with its meta: for a plan that is
  // shown and not run. run_pitr checks it as it unpacks it, before a server starts on it.
  bool check_base_in_plan = true;
};

struct PitrPlan {
  RecoveryTarget target;
  std::filesystem::path base;  // the base backup file
  Meta base_meta;
  std::uint64_t system_identifier = 0;
  std::uint32_t timeline = 0;
  std::uint64_t segment_size = 0;
  std::string start_lsn, stop_lsn;
  std::vector<std::string> segments;  // staged in order, from the base's first
  std::optional<std::string> partial;  // the receiver's unfinished segment, staged last
  std::string gap;                     // the first missing segment, when WAL was kept after it
  RecoveryServer server;               // postgres of the base's major version, here or in the service
  int major = 0;
  std::string database;                // the database dumped from the recovered cluster
  // Its OID in the base backup (the meta's, else the live server's): the only database unpacked
  // whole, the others as sparse zeroes; none when unknown, or the server runs in a service
  // (its folder is shipped whole).
  std::optional<std::uint32_t> database_oid;

  std::string describe() const;
  nlohmann::json to_json() const;
};

// Parses --to-time: "2026-12-06T14:01:59Z", "2026-12-06T14:01:59.123456+09:00", "latest".
// Throws Error(usage) with the accepted forms.
RecoveryTarget parse_recovery_target(const std::string& to_time, const std::string& to_lsn);

// The live server's cluster (its system identifier), when it says; 0 otherwise (a user without
// the right to ask, or no server).
std::uint64_t live_system_identifier(const PgTarget& live);

// The base backup a restore to `target` starts from: of the live server's cluster when there are
// backups of it (else of the only cluster there is), the newest that ended before the target.
// Throws Error(not_found) / Error(usage) saying what is missing.
const BaseBackup& pick_base_backup(const std::vector<BaseBackup>& bases, std::uint64_t live, const RecoveryTarget& target);

// Everything checked, nothing changed. Throws when no base backup and WAL reach the target.
PitrPlan plan_pitr(const Config& config, const PgTarget& live, const PitrOptions& options);

// Carries out the plan (see the top of this file). REQUIRES: config.confirmed; the caller holds
// the lock and owns `journal`.
RestoreReport run_pitr(const Config& config, const PgTarget& live, const PitrPlan& plan, const PitrOptions& options,
                       Journal& journal, Progress& progress);

// `compose … exec -T -u postgres <PG_SERVICE>`: how the temporary server runs in the service.
std::vector<std::string> recovery_service_exec(const Config& config);

// Whether `root` is a folder run_pitr makes (PITR_WORK_DIR/pitr-<run tag>): the journal's repair
// removes nothing else.
bool own_recovery_folder(const Config& config, const std::filesystem::path& root);

}  // namespace backupctl
