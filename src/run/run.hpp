// The run policy: what every command that writes into BACKUP_DIR runs inside, in one place so that
// a new command gets all of it by construction.
//
//   RunScope        the BACKUP_DIR lock, then the repair of what runs that died left (and the
//                   scratch of dead verify runs), then a journal of this run's own (every change
//                   to live state is an entry of it: catalog/journal.hpp, command/repair.hpp)
//   run_recorded()  a RunScope around the body; then the off-site copy of a backup, the local
//                   retention, and the record: run state, metrics file, notification, and the
//                   BACKUP_PING_URL pings of scheduled kinds; an Error is recorded the same way
//                   and passed on
//   fetch_*()       a RunScope around a download into BACKUP_DIR (journaled like a backup: a
//                   fetch killed midway leaves no .partial the next one would take for another's)
//   record_state()  the record alone, for the runs that only read (verify) or record their own
//                   verdict (rehearse)
//
// The commands themselves (command/) take a Journal& and know nothing of this; cli/ only parses,
// calls them through these, and prints.
#pragma once

#include <nlohmann/json.hpp>

#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "catalog/journal.hpp"
#include "catalog/lock.hpp"
#include "command/remote.hpp"
#include "config/config.hpp"
#include "monitor/state.hpp"
#include "util/progress.hpp"

namespace backupctl {

class RunScope {
 public:
  // `command` names the run in the lock file and its journal ("backup db", "fetch", ...).
  RunScope(const Config& config, const std::string& command);
  Journal& journal() { return *m_journal; }
  // Ends the journal before the scope (the lock) ends: rehearse records its verdict after.
  void close_journal() { m_journal.reset(); }

 private:
  BackupLock m_lock;
  std::optional<Journal> m_journal;
};

// What a run that changes things reports to the policy.
struct Outcome {
  int exit = 0;
  bool prune_after = false;  // a successful backup: apply retention now (never before a backup)
  std::vector<std::tuple<std::string, double, std::uint64_t, std::string>>
      successes;                                              // kind, s, size, file
  std::vector<std::pair<std::string, std::string>> failures;  // kind, error
  // A successful backup's files, copied off-site after it (BACKUP_REMOTE_URL, unless --no-remote).
  bool copy_off_site = false;
  std::vector<std::filesystem::path> push_files, push_sets;
  std::string event_file;  // the file the notification names (default: the first success's)
};

// Runs `body` inside a RunScope named `command`, then applies and records its Outcome (above).
// `kind` is the run state's kind (db, objects, config, set, remote, restore, prune); backups and
// pushes are pinged. Returns the Outcome's exit status.
int run_recorded(const Config& config, const std::string& command, const std::string& kind,
                 const std::function<Outcome(Journal&)>& body);

// Saves `state` (a failure to is a warning: monitoring never fails a run) and writes the metrics
// file from it.
void record_state(const Config& config, const RunState& state);

// The backup `kind`/NAME (NAME: the file name of `file`) fetched from the remote into BACKUP_DIR
// and checked against its meta there; returns its local path.
std::filesystem::path fetch_file(const Config& config, const std::string& kind, const std::string& file,
                                 Progress& progress);

// The set `id` (or latest) of this database and store, its file and parts fetched from the remote
// into BACKUP_DIR; returns its id. `streamed` names the parts that are not fetched (read as they
// download instead).
std::string fetch_set_here(const Config& config, const std::string& id, Progress& progress,
                           const std::function<bool(const std::string&)>& streamed = {},
                           FetchCheck check = FetchCheck::reuse_local);

}  // namespace backupctl
