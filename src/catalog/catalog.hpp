// What is in a BACKUP_DIR: the backup files of each kind with their metas.
#pragma once

#include <filesystem>
#include <map>
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

  // "ok", "failed", "never" (not verified yet), "no meta", or "damaged" when the file's size on
  // disk is not the meta's (truncated or changed since): checked on every listing, so a backup
  // that verified once and was cut short since is never shown or counted as good.
  std::string verify_state() const;
  bool damaged() const { return meta && size != meta->size; }
  // Verified and not damaged since: what retention and status may count on.
  bool verified_ok() const { return verify_state() == "ok"; }
  // Dated ahead of `now` by more than the clocks' tolerance: made with a wrong clock (util/time).
  bool wrong_clock(Clock::time_point now) const { return dated_in_future(time, now); }
  // The source a backup is of, for retention per source: the database (db), the store label and
  // location (objects), "cluster <system identifier>" (base), or "" (config).
  std::string source() const;
};

// Every backup file under <backup_dir>/{db,objects,config,base}, newest first. Files that are not
// backups (.partial, .meta, roles files, temporary files) are left out. A missing directory is an
// empty catalog.
std::vector<CatalogEntry> scan_catalog(const std::filesystem::path& backup_dir);

// The entries of each source (kind and CatalogEntry::source()), in the order given (newest
// first, as scan_catalog gives them): what the retention rules hold per source, here and on the
// remote. REQUIRES: `entries` outlive the result.
using SourceGroups = std::map<std::pair<Kind, std::string>, std::vector<const CatalogEntry*>>;
SourceGroups group_by_source(const std::vector<CatalogEntry>& entries);

// Reads one backup file's entry (the file must exist).
CatalogEntry catalog_entry(const std::filesystem::path& file);

// Refuses, with a one-line error and a hint, a `--file` that is not a regular file: missing, a
// directory, a device or a pipe. `kind` ("db", "objects", "config") names what `list` shows.
void require_backup_file(const std::filesystem::path& file, const std::filesystem::path& backup_dir,
                         std::string_view kind);

// The companion file a meta names (its `parts`, e.g. the roles file of a dump): only a plain file
// name, beside the backup, that is a regular file. nullopt when the meta names none or it is not
// there; Error(verification) when the meta names a path elsewhere or something not a file: a meta
// is input someone else may have written, and is reported, never followed.
std::optional<std::filesystem::path> meta_part_file(const std::filesystem::path& backup_file, const Meta& meta,
                                                    const std::string& part);

// What an interrupted run can leave in BACKUP_DIR (db/, objects/, config/, sets/, rehearsals/,
// reports/, journal/): unfinished `.partial` files, temporary files of atomic writes
// (`<name>.tmp.<pid>`), and metas whose backup file is not there (a backup writes its meta just
// before the rename that publishes the file). Each with why it is one.
// REQUIRES: no other run writes there (the caller holds the lock).
std::vector<std::pair<std::filesystem::path, std::string>> interrupted_leftovers(const std::filesystem::path& backup_dir);

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

// Publishes a finished backup: the file is fsynced, its meta written (atomically), then the file
// renamed to its final name. In that order, a file that looks finished always has its meta; a
// crash in between leaves a .partial and a meta without its file, which the repair (and prune)
// remove. Fault point "backup.publish" between the meta and the rename.
void publish_backup(io::AtomicFileSink& file, const Meta& meta);

// Reserves `<dir>/<name>` for every name in name_for(timestamp) (a backup file and its companions)
// for the current second. When any of them is taken (a finished file or another run's .partial),
// it waits for the next second and tries again, so runs in the same second never overwrite each
// other and names keep the plan's format.
ReservedFiles reserve_backup_files(
    const std::filesystem::path& dir,
    const std::function<std::vector<std::string>(std::string_view)>& name_for);

}  // namespace backupctl
