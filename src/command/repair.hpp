// The repair of runs that died (kill -9, power loss, an OOM kill) in the middle of changing live
// state, from the journals they left (catalog/journal.hpp). Every backupctl command that works on
// a BACKUP_DIR calls repair_interrupted_runs() before anything else; so does the next holder of
// the lock. A run whose process is gone has lost its flock, so "the lock is free and a journal is
// there" means its run died. The entries of a journal are undone newest first (the journal walked
// back): the swap finished or rolled back so that the live name holds a whole database that
// accepts connections, side and staging databases dropped (their sessions ended first), the
// safety dump of an in-place restore put back, temporary paths and unfinished files removed, open
// multipart uploads aborted, a half-applied config rolled back, and the services the run stopped
// started again. What cannot be done now (the server is down, the services' start command
// differs) stays in the journal: `backupctl status` then exits 12 and `backupctl repair` retries.
//
// The journal is input a file in BACKUP_DIR could forge, so nothing in it is taken on trust: a
// journal not owned by this user or writable by others is never acted on; database names must
// have the shapes backupctl gives them (and a staging database can never be the live one); paths
// must be backupctl's own temporary paths or backup files inside BACKUP_DIR; a service start
// command runs only when it is this configuration's own; the server must be the one recorded.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "catalog/journal.hpp"
#include "config/config.hpp"

namespace backupctl {

// The undo of a journal entry: repair_entry() with this configuration. Journals of commands are
// made with it, so in-process unwinding and the repair after a crash run the same code.
Journal::Undo journal_undo(const Config& config);

// Undoes or finishes one pending entry; returns what it did ("" when there was nothing left to
// do); throws Error when it cannot.
std::string repair_entry(const Config& config, const std::string& type, const nlohmann::json& data);

struct RepairOutcome {
  std::vector<std::string> lines;       // what was found and done, for the operator
  std::vector<std::string> unresolved;  // journals that still need a repair, each with why
  bool in_progress = false;             // the journals belong to a live run (its lock is held)
};

// Repairs what runs that died left in BACKUP_DIR; logs what it found and did (warnings, so `-q`
// shows them too). LockHeld::yes: the caller holds the BackupLock already. Never throws for a
// repair that fails: that journal is kept, with the error, and listed in `unresolved`.
enum class LockHeld { no, yes };
RepairOutcome repair_interrupted_runs(const Config& config, LockHeld lock);

// The journals still waiting for a repair (for `status`), one line each with the command that
// resolves them.
std::vector<std::string> pending_repairs(const Config& config);

}  // namespace backupctl
