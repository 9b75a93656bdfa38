// `backupctl restore config`: preview-first. `--mode preview` lists every file as added, changed,
// removed or unchanged with a unified diff in which secret-looking values are masked on both
// sides (command/config_mask.hpp), and writes nothing; `--mode apply` (CONFIRM=YES) first backs
// up the current files, then writes each one atomically with its mode, and refuses any archive
// with an entry that would land outside CONFIG_PATHS (`..`, absolute paths) and any write through
// a linked folder. Links are restored as links; one whose target leaves APP_ROOT is never created
// (it is listed as skipped).
#pragma once

#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>
#include <vector>

#include "catalog/journal.hpp"
#include "config/config.hpp"
#include "util/progress.hpp"

namespace backupctl {

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
// NoMeta::allow reads a backup without its .meta (`--allow-no-meta`).
enum class NoMeta { refuse, allow };
ConfigPlan preview_config(const Config& config, const std::filesystem::path& file, NoMeta no_meta);

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

}  // namespace backupctl
