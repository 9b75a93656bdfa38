// What is in a BACKUP_DIR: the backup files of each kind with their metas.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "catalog/meta.hpp"
#include "catalog/naming.hpp"
#include "util/time.hpp"

namespace backupctl {

struct CatalogEntry {
  Kind kind;
  std::filesystem::path path;  // the backup file
  std::optional<Meta> meta;
  std::string meta_problem;    // why `meta` is empty: missing or unreadable
  Clock::time_point time;      // created_at from the meta, else the name's timestamp
  std::uint64_t size = 0;      // size on disk

  // "ok", "failed", "never" (not verified yet) or "no meta".
  std::string verify_state() const;
};

// Every backup file under <backup_dir>/{db,objects,config}, newest first. Files that are not
// backups (.partial, .meta, roles files, temporary files) are left out. A missing directory is an
// empty catalog.
std::vector<CatalogEntry> scan_catalog(const std::filesystem::path& backup_dir);

// Reads one backup file's entry (the file must exist).
CatalogEntry catalog_entry(const std::filesystem::path& file);

}  // namespace backupctl

#include <functional>
#include "io/atomic_file.hpp"

namespace backupctl {

// The files of a new backup, reserved: each one's `.partial` exists, so no other run will use
// these names.
struct ReservedFiles {
  std::vector<io::AtomicFileSink> sinks;  // in the order name_for returned the names
  std::string timestamp;                  // YYYYMMDD_HHMMSS in the names
  Clock::time_point time;
};

// Reserves `<dir>/<name>` for every name in name_for(timestamp) (a backup file and its companions)
// for the current second. When any of them is taken (a finished file or another run's .partial),
// it waits for the next second and tries again, so runs in the same second never overwrite each
// other and names keep the plan's format.
ReservedFiles reserve_backup_files(
    const std::filesystem::path& dir,
    const std::function<std::vector<std::string>(std::string_view)>& name_for);

}  // namespace backupctl
