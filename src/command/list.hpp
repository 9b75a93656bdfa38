// `backupctl list`: what BACKUP_DIR holds, newest first, as a table or JSON.
#pragma once

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <vector>

#include "catalog/catalog.hpp"
#include "config/config.hpp"

namespace backupctl {

std::vector<CatalogEntry> list_backups(const Config& config, std::optional<Kind> kind);

// One object per backup: kind, file, path, created_at, size, sha256, verified, verified_at,
// set_id, profile, compression.
// ... and the last rehearsal of the backup's set ("rehearsed": {at, ok, report} or null).
nlohmann::json backups_json(const std::vector<CatalogEntry>& entries, const std::filesystem::path& backup_dir);

// Aligned columns: KIND CREATED SIZE VERIFIED SET REHEARSED FILE.
std::string backups_table(const std::vector<CatalogEntry>& entries,
                          const std::filesystem::path& backup_dir);

}  // namespace backupctl
