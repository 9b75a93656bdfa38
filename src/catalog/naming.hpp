// Backup file names, as the operations plan fixes them:
//   db/archive_<db>_<YYYYMMDD_HHMMSS>.dump (or .dump.zst, .sql, .sql.gz)
//   objects/objects_<minio|disk>_<YYYYMMDD_HHMMSS>.tar.gz (or .tar.zst)
//   config/config_<YYYYMMDD_HHMMSS>.tar.gz
//   base/base_<system identifier>_<YYYYMMDD_HHMMSS>.tar.zst  (point-in-time recovery's base backups)
// each optionally followed by .age when encrypted, and each with a `<file>.meta` sidecar.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "util/time.hpp"

namespace backupctl {

enum class Kind { db, objects, config, base };

std::string_view kind_name(Kind kind);
std::optional<Kind> parse_kind(std::string_view name);

// Characters other than [A-Za-z0-9.-] become '_', so any database name makes a safe file name.
std::string filename_safe(std::string_view text);

// "archive_<db>_<ts><suffix>".
std::string db_backup_filename(std::string_view database, std::string_view timestamp,
                               std::string_view suffix);

// The cluster roles saved beside a dump: "archive_<db>_<ts>.roles.sql".
std::string roles_filename(std::string_view dump_filename);

struct ParsedName {
  Kind kind;
  std::string label;      // the database (db), minio|disk (objects), the system identifier (base); empty for config
  std::string timestamp;  // YYYYMMDD_HHMMSS
  std::string suffix;     // ".dump", ".dump.zst", ".sql", ".sql.gz", ".tar.gz", ...
  bool encrypted = false; // ends in .age
};

// Recognises the names above; nullopt for anything else (.meta, .partial, roles files, ...).
std::optional<ParsedName> parse_backup_filename(std::string_view filename);

// "<file>.meta".
std::string meta_filename(std::string_view backup_filename);

// A new set id: "<YYYYMMDD_HHMMSS>-<4 hex digits>", unique enough to tell runs apart.
std::string new_set_id(Clock::time_point t);

}  // namespace backupctl
