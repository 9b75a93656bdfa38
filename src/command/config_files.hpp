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

#include "catalog/journal.hpp"
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

// All or nothing: everything is checked, then the current config is backed up (the safety
// backup), then every file is staged beside its target and all are swapped in; any failure,
// signal or crash before the commit leaves every file as it was (the journal entry
// "config_apply": rollback_config_apply()). Owner, group and mode are those the archive recorded
// (the owner by name when this system has it, else by number); a link is written only when the
// whole chain of links it starts stays inside APP_ROOT. Steps: restore-config.safety-backup,
// .stage, .apply (fault point restore-config.half-applied), .commit.
// REQUIRES: confirmed; the caller holds the lock and owns `journal`.
ConfigApplyReport apply_config(const Config& config, const ConfigPlan& plan, Journal& journal, Progress& progress);

// Rolls an interrupted apply back (or, once it committed, removes the originals it kept): the
// undo of the journal entry "config_apply". Returns what it did.
std::string rollback_config_apply(const Config& config, const nlohmann::json& data);

// Masks the values of secret-looking names (PASS, PWD, SECRET, TOKEN, KEY, CREDENTIAL, AUTH,
// PRIVATE, SALT, DSN, COOKIE anywhere in the name) in every syntax a config file uses (env files,
// compose maps and lists, JSON, quoted or not, command-line flags), passwords in URLs with or
// without a user, YAML block values of such names, and PEM private keys.
// When `other` (the side before, in a diff) holds a different value for the same key, the line
// gets a "# (secret changed)" note, so the diff shows it without showing the values. For tests too.
std::string mask_secrets(const std::string& text, const std::string& other = "");

}  // namespace backupctl
