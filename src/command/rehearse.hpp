// `backupctl rehearse [--set latest|ID]` (plan §5.3, the monthly restore rehearsal): proves a
// backup set restores, without touching the live system.
//   1. the set's database into a staging database (<db>_rehearsal on the same server, or
//      STAGING_DATABASE_URL), through the same checked restore as `restore db`;
//   2. its attachments into a staging place: a folder under BACKUP_DIR for the disk store, or
//      STAGING_BUCKET/rehearsal-<ts>/ for S3;
//   3. the checklist's sql and objects checks against the staging copies (http ones too when
//      STAGING_API_URL points at an app serving them), and every table's rows compared with the
//      lines of COPY data the backup holds for it;
//   4. a report, rehearsals/rehearsal_<ts>.json and .md; the set file and `list` show the result;
//   5. the staging database and objects are removed, whatever happened.
#pragma once

#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>

#include "catalog/journal.hpp"
#include "config/config.hpp"
#include "pg/target.hpp"
#include "util/progress.hpp"

namespace backupctl {

struct RehearsalReport {
  bool ok = false;
  std::string set_id;
  std::filesystem::path json_file, md_file;
  nlohmann::json json;
  std::string markdown;
};

// Never leaves staging copies behind. A failure (a damaged file, a failed check, a row count that
// differs) is a report with ok == false and the reason, not an exception; exceptions are for not
// being able to rehearse at all (no such set, no server).
// The staging database is refused before anything changes when it is the live one (by what the
// server says about itself). Every staging copy is a journal entry: removed at the end, on an
// error or a signal, or by the repair after a crash; the live services are never stopped.
// `to_time` (rehearse --to-time T|random): the database is recovered to the moment (point-in-time
// recovery into the staging database; `random`: a moment inside the window, after an empty
// transaction on the live server so that replay has a commit to stop at), the attachments are the
// newest set's made by then (none: not rehearsed), and the report names the moment, the base
// backup, the last commit replayed and the first one not.
RehearsalReport rehearse(const Config& config, const PgTarget& live, const std::string& set_id,
                         Journal& journal, Progress& progress, const std::string& to_time = "");

}  // namespace backupctl
