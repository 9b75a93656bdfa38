// What `status` and the metrics file say of a BACKUP_DIR at a moment: per kind, how many
// backups and the newest good one; the backups made with a wrong clock; and, with a remote, the
// newest copy there and the backups that need one and have none. One judgement, so the two can
// never disagree.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "catalog/catalog.hpp"
#include "config/config.hpp"
#include "util/time.hpp"

namespace backupctl {

// The meta's record of its copy on the remote `url` (`remote_copies[url]`: at, size, etag, by),
// or nullptr.
const nlohmann::json* copy_record(const Meta& meta, const std::string& url);

// When `e` reached the remote `url`, by its meta's record of the copy (nullopt: never).
std::optional<Clock::time_point> copied_at(const CatalogEntry& e, const std::string& url);

// A backup needs a copy on the remote when it has none yet and the remote's retention would keep
// it (younger than BACKUP_REMOTE_RETENTION_DAYS). Local retention never deletes such a backup:
// while the remote fails, backups stay here until they reach it, or until they are old enough
// that the remote would not keep them anyway. Damaged and meta-less backups cannot be copied and
// are not counted.
// False without BACKUP_REMOTE_URL.
bool needs_remote_copy(const Config& config, const CatalogEntry& e, Clock::time_point now);

struct CatalogHealth {
  struct PerKind {
    int count = 0;
    const CatalogEntry* newest_good = nullptr;  // a meta, not damaged, not failed, clock right
  };
  std::map<Kind, PerKind> kinds;                   // db, objects, config (always all three)
  std::vector<const CatalogEntry*> wrong_clock;    // dated ahead of `now`: made with a wrong clock
  std::vector<const CatalogEntry*> not_on_remote;  // needs_remote_copy()
  const CatalogEntry* newest_copy = nullptr;       // the newest copy on the remote, by when it arrived
  Clock::time_point newest_copy_at{};
};

// REQUIRES: `entries` outlive the result (it points into them).
CatalogHealth catalog_health(const Config& config, const std::vector<CatalogEntry>& entries, Clock::time_point now);

}  // namespace backupctl
