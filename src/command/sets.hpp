// Backup sets: `backupctl backup all` makes the db, objects and config backups under one set id
// and writes sets/set_<ts>.json naming the three files and their checksums. A part that fails
// fails the set (non-zero exit) but the parts that succeeded are kept, and the error says which.
// `backupctl restore all --set ID|latest` restores the database and the attachments of one set;
// its config stays preview-first.
#pragma once

#include <nlohmann/json.hpp>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "pg/target.hpp"
#include "util/progress.hpp"
#include "util/time.hpp"

namespace backupctl {

struct SetResult {
  std::string set_id;
  std::filesystem::path file;  // sets/set_<ts>.json
  nlohmann::json json;         // what the file holds
  bool ok = false;
};

// Never throws for a failing part (see SetResult::ok and json["parts"][kind]["error"]).
SetResult backup_all(const Config& config, const PgTarget& target, Progress& progress);

// What `latest` means: the newest complete set of the configured database (PGDATABASE /
// DATABASE_URL) and attachments store (OBJECT_STORAGE), never another database's set that
// shares BACKUP_DIR or the remote, and never one dated ahead of this host's clock.
struct SetScope {
  std::string database;       // the configured database
  std::string objects_label;  // "minio" or "disk"
  Clock::time_point now;
};
SetScope set_scope(const Config& config, const PgTarget& target);

// Why `set` is not a candidate for `latest` in `scope` ("" when it is): not complete, a part of
// another database or store, or dated in the future (made with a wrong clock).
std::string why_not_latest(const nlohmann::json& set, const SetScope& scope);

// The set file of `id` ("latest": the newest set why_not_latest() takes; the newer ones it
// skipped are logged). Throws Error(not_found) naming what was skipped.
// " (skipped <the first>, and N more)" for an error that found no `latest`; "" when none was.
std::string skipped_note(const std::vector<std::string>& skipped);

// `file`, when given, is set to the set file's path.
nlohmann::json find_set(const Config& config, const std::string& id, const SetScope& scope,
                        std::filesystem::path* file = nullptr);

// Where a set's part `kind` ("db", "objects", "config") is: BACKUP_DIR/<kind>/<its file name>. Set
// files name their members relative to BACKUP_DIR (older ones by absolute path: only the file
// name counts, so a moved BACKUP_DIR keeps its sets). nullopt when the set has no such part or it
// failed; Error(verification) when the set names something that is not a backup file of that kind
// (a set file is input someone else may have written: reported, never followed).
std::optional<std::filesystem::path> set_part_path(const Config& config, const nlohmann::json& set,
                                                   const std::string& kind);

}  // namespace backupctl
