// `backupctl backup config` and `restore config`: the files of CONFIG_PATHS (infra/env,
// infra/docker-compose.yml, infra/monitoring by default), relative to APP_ROOT.
//
// The backup is config/config_<ts>.tar.gz (pax tar: modes and mtimes kept, symbolic links stored
// as links and never followed). The restore is preview-first: `--mode preview` lists every file as
// added, changed, removed or unchanged with a unified diff in which secret-looking values are
// masked on both sides, and writes nothing; `--mode apply` (CONFIRM=YES) first backs up the current
// files, then writes each one atomically with its mode, and refuses any archive with an entry that
// would land outside CONFIG_PATHS (`..`, absolute paths) and any write through a linked folder.
// Links are restored as links; one whose target leaves APP_ROOT is never created (it is listed as
// skipped).
#pragma once

#include <nlohmann/json.hpp>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "command/backup_db.hpp"

namespace backupctl {

struct BackupConfigOptions {
  std::string set_id;
};

BackupResult backup_config(const Config& config, Progress& progress, const BackupConfigOptions& options = {});

struct ConfigChange {
  std::string path;    // relative to APP_ROOT
  std::string status;  // added | changed | removed | unchanged | skipped (a link leaving APP_ROOT)
  std::string diff;    // unified diff with secrets masked ("" when unchanged)
};

struct ConfigPlan {
  std::filesystem::path file;
  std::vector<ConfigChange> changes;
  std::string describe() const;
  nlohmann::json to_json() const;
};

// Reads the backup and compares it with APP_ROOT; writes nothing. Throws Error(verification) for an
// archive with entries outside CONFIG_PATHS.
ConfigPlan preview_config(const Config& config, const std::filesystem::path& file, bool allow_no_meta);

struct ConfigApplyReport {
  std::filesystem::path safety_backup;  // the config as it was before, backed up first
  std::vector<ConfigChange> applied;    // what changed (no diffs)
  std::string describe() const;
};

// REQUIRES: confirmed.
ConfigApplyReport apply_config(const Config& config, const ConfigPlan& plan, Progress& progress);

// Masks the values of secret-looking keys (PASSWORD, SECRET, TOKEN, KEY, CREDENTIAL in the name:
// `KEY=value`, `key: value`, `"key": "value"`) and passwords in URLs (scheme://user:pw@host).
// When `other` (the side before, in a diff) holds a different value for the same key, the line
// gets a "# (secret changed)" note, so the diff shows it without showing the values. For tests too.
std::string mask_secrets(const std::string& text, const std::string& other = "");

}  // namespace backupctl
