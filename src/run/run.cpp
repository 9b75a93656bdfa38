#include "run/run.hpp"

#include <spdlog/spdlog.h>

#include "command/wal_status.hpp"
#include "command/prune.hpp"
#include "command/repair.hpp"
#include "command/sets.hpp"
#include "pg/target.hpp"
#include "util/error.hpp"
#include "util/format.hpp"
#include "util/process.hpp"
#include "util/time.hpp"

namespace backupctl {

namespace {

// BACKUP_PING_URL, the healthchecks.io convention: URL/start when a scheduled run begins, URL on
// success, URL/fail on failure (a body says why). A run that never happens is noticed by the
// service. Never fails the run.
void ping(const Config& config, const std::string& what, const std::string& body = "") {
  if (config.ping_url.empty()) return;
  post_text(config.ping_url + what, body, "BACKUP_PING_URL");
}

// A scheduled kind of run: backups and pushes are pinged.
bool pinged(const std::string& kind) {
  return kind == "db" || kind == "objects" || kind == "config" || kind == "base" || kind == "set" || kind == "remote";
}

// Copies a finished backup off-site and applies the remote's retention. Throws an Error that
// says the backup itself is done.
void copy_off_site(const Config& config, const Outcome& o, RunState& state) {
  auto remote = make_remote(config);
  NoProgress quiet;
  const auto start = std::chrono::steady_clock::now();
  try {
    PushReport r = push(config, *remote, o.push_files, o.push_sets, quiet);
    if (!r.failed.empty()) {
      throw Error(ErrorCode::tool_failed, "not copied: " + r.failed.front(), "see the log; `backupctl push` retries");
    }
    state.record_success("remote", seconds_since(start), r.bytes, r.remote);
    spdlog::info("remote: {} file(s) copied to {} ({})", r.sent.size(), r.remote, human_bytes(r.bytes));
  } catch (const Error& e) {
    if (e.code() == ErrorCode::interrupted) throw;
    state.record_failure("remote", e.what());
    throw Error(e.code() == ErrorCode::usage ? ErrorCode::usage : ErrorCode::connection,
                "the backup is done, but its off-site copy to " + config.remote->url + " failed: " + e.what(),
                e.hint().empty() ? "run `backupctl push` once the remote is reachable (it resumes)"
                                 : e.hint() + "; then `backupctl push` (it resumes)");
  }
  // The copy is there: a retention that cannot delete (a key without delete rights) is a warning.
  best_effort("remote: the retention on " + config.remote->url + " failed", [&] { prune_remote(config, *remote, DryRun::no); });
}

// After the body: the off-site copy first, then the local retention (a backup the copy just sent
// may then go by the rules; one that never reached the remote is kept: prune.hpp). A failed copy
// fails the run after the retention ran.
void after_success(const Config& config, const Outcome& o, RunState& state, Journal& journal) {
  std::optional<Error> copy_failed;
  if (o.copy_off_site && o.exit == 0 && config.remote) {
    try {
      copy_off_site(config, o, state);
    } catch (const Error& e) {
      if (e.code() == ErrorCode::interrupted) throw;
      copy_failed = e;
    }
  }
  if (o.prune_after && o.exit == 0) {
    best_effort("retention after the backup failed", [&] {
      journal.step("prune.delete");
      prune(config, DryRun::no, std::nullopt, Clock::now(), &journal);
    });
  }
  if (copy_failed) throw *copy_failed;
}

// A fetch into BACKUP_DIR: the download is the entry of a backup (its .partial files are removed
// by a repair when the run dies).
template <class Fetch>
auto journaled_fetch(const Config& config, Fetch&& fetch) {
  RunScope scope(config, "fetch");
  Journal::Entry unfinished = scope.journal().add("backup", nlohmann::json::object());
  auto result = fetch();
  unfinished.settle();
  return result;
}

}  // namespace

RunScope::RunScope(const Config& config, const std::string& command)
    : m_lock(BackupLock::acquire(config.backup_dir, "backupctl " + command)) {
  // A journal that cannot be repaired stops every run until an operator looks: recorded (the
  // metric backupctl_last_failure_timestamp_seconds{kind="repair"}) so an alert says so.
  try {
    repair_interrupted_runs(config, LockHeld::yes);
  } catch (const Error& e) {
    if (e.code() == ErrorCode::repair_needed) {
      RunState state = RunState::load(config.backup_dir);
      state.record_failure("repair", e.what());
      record_state(config, state);
    }
    throw;
  }
  if (RunState state = RunState::load(config.backup_dir); state.clear_failure("repair")) record_state(config, state);
  remove_stale_verify_scratch(config.backup_dir);
  m_journal.emplace(config.backup_dir, command, journal_undo(config));
}

void record_state(const Config& config, const RunState& state) {
  try {
    state.save();
  } catch (const std::exception& e) {
    spdlog::warn("cannot record the run state: {}", e.what());
  }
  write_metrics_file(config, state, config.wal_stream ? wal_metrics(config, Clock::now()) : "");
}

int run_recorded(const Config& config, const std::string& command, const std::string& kind,
                 const std::function<Outcome(Journal&)>& body) {
  RunScope scope(config, command);
  RunState state = RunState::load(config.backup_dir);
  nlohmann::json event = {{"command", command},
                          {"kind", kind},
                          {"host", machine_hostname()},
                          {"profile", config.profile},
                          {"at", iso8601(Clock::now())}};
  if (pinged(kind)) ping(config, "/start");
  auto finish = [&] {
    const bool ok = event.value("ok", false);
    if (pinged(kind)) {
      ping(config, ok ? "" : "/fail", ok ? command + ": ok" : command + ": " + event.value("error", std::string("failed")));
    }
    record_state(config, state);
    notify(config, event);
  };
  try {
    Outcome o = body(scope.journal());
    for (const auto& [k, secs, size, file] : o.successes) state.record_success(k, secs, size, file);
    for (const auto& [k, error] : o.failures) state.record_failure(k, error);
    after_success(config, o, state, scope.journal());
    event["ok"] = o.exit == 0;
    if (!o.failures.empty()) event["error"] = o.failures.front().second;
    if (!o.event_file.empty()) {
      event["file"] = o.event_file;
    } else if (!o.successes.empty()) {
      event["file"] = std::get<3>(o.successes.front());
    }
    finish();
    return o.exit;
  } catch (const Error& e) {
    state.record_failure(kind, e.what());
    event["ok"] = false;
    event["error"] = e.what();
    event["hint"] = e.hint();
    finish();
    throw;
  }
}

std::filesystem::path fetch_file(const Config& config, const std::string& kind, const std::string& file,
                                 Progress& progress) {
  auto remote = make_remote(config);
  const std::string name = std::filesystem::path(file).filename().string();
  return journaled_fetch(config, [&] { return fetch_backup(config, *remote, kind + "/" + name, progress); });
}

std::string fetch_set_here(const Config& config, const std::string& id, Progress& progress,
                           const std::function<bool(const std::string&)>& streamed, FetchCheck check) {
  auto remote = make_remote(config);
  const SetScope scope = set_scope(config, PgTarget::from_environment());
  return journaled_fetch(config, [&] { return fetch_set(config, *remote, id, scope, progress, streamed, check); });
}

}  // namespace backupctl
