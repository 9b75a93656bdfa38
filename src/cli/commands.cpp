#include "cli/commands.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>

#include <functional>
#include <iostream>
#include <optional>

#include "catalog/lock.hpp"
#include "catalog/naming.hpp"
#include "check/checklist.hpp"
#include "command/backup_db.hpp"
#include "command/backup_objects.hpp"
#include "command/backup_config.hpp"
#include "command/restore_config.hpp"
#include "command/list.hpp"
#include "command/prune.hpp"
#include "command/rehearse.hpp"
#include "command/remote.hpp"
#include "command/repair.hpp"
#include "command/sets.hpp"
#include "command/status.hpp"
#include "command/verify.hpp"
#include "monitor/state.hpp"
#include "pg/target.hpp"
#include "storage/disk/disk_store.hpp"
#include "util/env.hpp"
#include "util/error.hpp"
#include "util/format.hpp"
#include "util/fs.hpp"
#include "util/json.hpp"
#include "util/signals.hpp"
#include "util/time.hpp"

namespace backupctl {
namespace {

// Peak resident memory of this process (all threads, not its children), for the benchmarks.
long peak_rss_kib() {
  struct rusage ru {};
  ::getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;
}

nlohmann::json backup_json(const BackupResult& r) {
  return {{"ok", true},
          {"kind", r.meta.kind},
          {"path", r.file.string()},
          {"meta", r.meta.to_json()},
          {"stats", {{"peak_rss_kib", peak_rss_kib()}}}};
}

void print_backup(const BackupResult& r) {
  double rate =
      r.meta.duration_seconds > 0 ? static_cast<double>(r.meta.size) / r.meta.duration_seconds : 0;
  std::cout << fmt::format("{} backup: {}\n  size {}, sha256 {}, {}, {} ({}/s), set {}\n",
                           r.meta.kind, r.file.string(), human_bytes(r.meta.size), r.meta.sha256,
                           r.meta.compression, human_duration(r.meta.duration_seconds),
                           human_bytes(static_cast<std::uint64_t>(rate)), r.meta.set_id);
}

// Without CONFIRM=YES a restore prints its plan and stops, having changed nothing.
void require_confirmation(const Config& config, const Args& args, const std::string& plan,
                          const nlohmann::json& plan_json, const std::string& how) {
  if (config.confirmed || args.confirm) return;
  if (args.out.json) {
    print_json({{"ok", false}, {"plan", plan_json}, {"confirmed", false}});
  } else {
    std::cout << plan;
  }
  throw Error(ErrorCode::confirmation_required, "not confirmed: nothing was changed",
              "to go ahead: " + how);
}

// What a command that changes things reports to the bookkeeping.
struct Outcome {
  int exit = 0;
  bool prune_after = false;  // a successful backup: apply retention now (never before a backup)
  std::vector<std::tuple<std::string, double, std::uint64_t, std::string>>
      successes;                                              // kind, s, size, file
  std::vector<std::pair<std::string, std::string>> failures;  // kind, error
  // A successful backup's files, copied off-site after it (BACKUP_REMOTE_URL, unless --no-remote).
  bool copy_off_site = false;
  std::vector<fs::path> push_files, push_sets;
  std::string event_file;  // the file the notification names (default: the first success's)
};

// BACKUP_PING_URL, the healthchecks.io convention: URL/start when a scheduled run begins, URL on
// success, URL/fail on failure (a body says why). A run that never happens is noticed by the
// service. Never fails the run.
void ping(const Config& config, const std::string& what, const std::string& body = "") {
  if (config.ping_url.empty()) return;
  post_text(config.ping_url + what, body, "BACKUP_PING_URL");
}

// A scheduled kind of run: backups and pushes are pinged.
bool pinged(const std::string& kind) {
  return kind == "db" || kind == "objects" || kind == "config" || kind == "set" || kind == "remote";
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

// Runs `body` under the BACKUP_DIR lock, with a journal of its own (after repairing what a run
// that died left), then records the outcome in the run state, the metrics file and a
// notification; an Error is recorded the same way and passed on.
int bookkeeping(const Config& config, const std::string& command, const std::string& kind,
                const std::function<Outcome(Journal&)>& body) {
  BackupLock lock = BackupLock::acquire(config.backup_dir, "backupctl " + command);
  repair_interrupted_runs(config, LockHeld::yes);
  remove_stale_verify_scratch(config.backup_dir);
  Journal journal(config.backup_dir, command, journal_undo(config));
  RunState state = RunState::load(config.backup_dir);
  nlohmann::json event = {{"command", command},
                          {"kind", kind},
                          {"host", machine_hostname()},
                          {"profile", config.profile},
                          {"at", iso8601(Clock::now())}};
  if (pinged(kind)) ping(config, "/start");
  auto finish = [&] {
    if (pinged(kind)) {
      ping(config, event.value("ok", false) ? "" : "/fail",
           event.value("ok", false) ? command + ": ok" : command + ": " + event.value("error", std::string("failed")));
    }
    try {
      state.save();
    } catch (const std::exception& e) {
      spdlog::warn("cannot record the run state: {}", e.what());
    }
    write_metrics_file(config, state);
    notify(config, event);
  };
  try {
    Outcome o = body(journal);
    for (const auto& [k, secs, size, file] : o.successes) state.record_success(k, secs, size, file);
    for (const auto& [k, error] : o.failures) state.record_failure(k, error);
    // The off-site copy first, then the local retention: a backup the copy just sent may then
    // go by the rules; one that never reached the remote is kept (prune.hpp). A failed copy
    // fails the run after the retention ran.
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

Outcome backup_outcome(const BackupResult& r, const Args& args) {
  Outcome o;
  o.prune_after = true;
  o.copy_off_site = !args.no_remote;
  o.push_files.push_back(r.file);
  o.successes.emplace_back(r.meta.kind, r.meta.duration_seconds, r.meta.size, r.file.string());
  return o;
}

void show_backup(const Args& args, const BackupResult& r) {
  if (args.out.json) {
    print_json(backup_json(r));
  } else if (!args.out.quiet) {
    print_backup(r);
  }
}

// After a restore, with the services running again: the checklist (plan §4.5). Throws
// Error(check_failed) naming the failed checks, with `undo` as the hint.
void post_restore_checks(const Config& config, const std::string& undo) {
  std::error_code ec;
  if (!fs::exists(config.checks_file, ec)) {
    spdlog::info("restore: no checklist at {} (CHECKS_FILE); nothing checked", config.checks_file.string());
    return;
  }
  auto checks = load_checklist(config.checks_file);
  std::unique_ptr<ObjectStore> store;
  try {
    store = make_object_store(config);
  } catch (const Error&) {
    // No store configured: objects checks report it.
  }
  CheckTarget target{PgTarget::from_environment(), store.get(), nullptr, config.api_url};
  auto results = run_checks(checks, target);
  std::cerr << "post-restore checklist (" << config.checks_file.string() << "):\n" << checks_table(results);
  if (!all_passed(results)) {
    std::string failed;
    int n = 0;
    for (const auto& r : results) {
      if (r.status == "fail") failed += (n++ ? ", " : "") + r.name;
    }
    throw Error(ErrorCode::check_failed,
                fmt::format("the restore finished but {} of {} checks failed: {}", n, results.size(), failed),
                undo);
  }
}

}  // namespace

int cmd_verify_remote(const Config& config, const Args& args) {
  auto remote = make_remote(config);
  auto progress = make_progress(args.out);
  // --read-data writes into BACKUP_DIR (a scratch copy of each backup in turn): under its lock and
  // journaled, as every run that writes there.
  std::optional<BackupLock> lock;
  std::optional<Journal> journal;
  if (args.read_data) {
    lock.emplace(BackupLock::acquire(config.backup_dir, "backupctl verify --remote --read-data"));
    repair_interrupted_runs(config, LockHeld::yes);
    journal.emplace(config.backup_dir, "verify --remote --read-data", journal_undo(config));
  }
  auto verdicts = verify_remote(config, *remote, args.read_data, *progress, journal ? &*journal : nullptr);
  nlohmann::json results = nlohmann::json::array();
  bool all_ok = !verdicts.empty();
  for (const auto& v : verdicts) {
    all_ok = all_ok && v.ok;
    results.push_back({{"name", v.name}, {"ok", v.ok}, {"detail", v.detail}});
    if (!args.out.json) std::cout << fmt::format("{:<4}  {}  {}\n", v.ok ? "OK" : "FAIL", v.name, v.detail);
  }
  if (args.out.json) print_json({{"ok", all_ok}, {"remote", config.remote->url}, {"read_data", args.read_data}, {"results", results}});
  RunState state = RunState::load(config.backup_dir);
  if (all_ok) {
    state.record_success(args.read_data ? "remote_verify_data" : "remote_verify", 0, verdicts.size(), config.remote->url);
  } else {
    state.record_failure(args.read_data ? "remote_verify_data" : "remote_verify",
                         verdicts.empty() ? "no backups on the remote" : "a copy failed its check");
  }
  try {
    state.save();
  } catch (const std::exception& e) {
    spdlog::warn("cannot record the run state: {}", e.what());
  }
  write_metrics_file(config, state);
  if (verdicts.empty()) {
    throw Error(ErrorCode::not_found, "no backups on the remote " + config.remote->url, "`backupctl push --all` copies them");
  }
  if (!all_ok) {
    spdlog::error("verify --remote: {} of {} failed", std::count_if(verdicts.begin(), verdicts.end(), [](const auto& v) { return !v.ok; }),
                  verdicts.size());
  }
  return all_ok ? 0 : exit_status(ErrorCode::verification);
}

int cmd_verify(const Config& config, const Args& args) {
  if (args.read_data && !args.remote) {
    throw Error(ErrorCode::usage, "--read-data goes with --remote", "a local verify reads every byte already: backupctl verify --all");
  }
  if (args.remote) return cmd_verify_remote(config, args);
  std::vector<fs::path> files;
  if (args.all || args.latest) {
    if (!args.files.empty()) {
      throw Error(ErrorCode::usage, "verify takes FILE arguments or --all/--latest, not both");
    }
    files = select_backups(config, args.all ? VerifySelection::all : VerifySelection::latest);
    if (files.empty()) {
      throw Error(ErrorCode::not_found, "no backups in " + config.backup_dir.string(),
                  "make one with `backupctl backup db`, or set BACKUP_DIR");
    }
  } else {
    if (args.files.empty()) {
      throw Error(ErrorCode::usage, "verify needs a FILE, --all or --latest",
                  "e.g. backupctl verify --latest");
    }
    for (const auto& f : args.files) files.emplace_back(f);
  }
  auto progress = make_progress(args.out);
  nlohmann::json results = nlohmann::json::array();
  bool all_ok = true;
  for (const fs::path& f : files) {
    VerifyVerdict v = verify_backup(config, f, *progress, args.quick ? VerifyDepth::quick : VerifyDepth::full);
    all_ok = all_ok && v.ok;
    results.push_back(
        {{"file", v.file.string()}, {"kind", v.kind}, {"ok", v.ok}, {"detail", v.detail}});
    if (!args.out.json) {
      std::cout << fmt::format("{:<4}  {:<7}  {}  {}\n", v.ok ? "OK" : "FAIL", v.kind,
                               v.file.string(), v.detail);
    }
  }
  if (args.out.json) print_json({{"ok", all_ok}, {"results", results}});
  RunState state = RunState::load(config.backup_dir);
  state.record_verify(all_ok);
  try {
    state.save();
  } catch (const std::exception& e) {
    spdlog::warn("cannot record the run state: {}", e.what());
  }
  write_metrics_file(config, state);
  if (!all_ok) {
    spdlog::error(
        "verify: {} of {} failed",
        std::count_if(results.begin(), results.end(), [](const auto& r) { return !r["ok"]; }),
        results.size());
  }
  return all_ok ? 0 : exit_status(ErrorCode::verification);
}

int cmd_list(const Config& config, const Args& args) {
  std::optional<Kind> kind;
  if (!args.kind.empty()) {
    kind = parse_kind(args.kind);
    if (!kind) {
      throw Error(ErrorCode::usage, "unknown kind '" + args.kind + "'",
                  "use db, objects or config");
    }
  }
  if (args.remote) {
    auto remote = make_remote(config);
    auto entries = remote_catalog(config, *remote);
    if (kind) std::erase_if(entries, [&](const RemoteEntry& e) { return e.kind != *kind; });
    if (args.out.json) {
      print_json(remote_json(entries, config.remote->url));
    } else {
      std::cout << "remote " << config.remote->url << ":\n" << remote_table(entries);
    }
    return 0;
  }
  auto entries = list_backups(config, kind);
  if (args.out.json) {
    print_json(backups_json(entries, config.backup_dir));
  } else {
    std::cout << backups_table(entries, config.backup_dir);
  }
  return 0;
}

// A fetch from the remote writes into BACKUP_DIR: under its lock, journaled like a backup, so a
// run killed mid-fetch leaves no .partial that the next fetch would take for another run's.
template <class Fetch>
auto journaled_fetch(const Config& config, Fetch&& fetch) {
  BackupLock lock = BackupLock::acquire(config.backup_dir, "backupctl fetch");
  repair_interrupted_runs(config, LockHeld::yes);
  Journal journal(config.backup_dir, "fetch", journal_undo(config));
  Journal::Entry unfinished = journal.add("backup", nlohmann::json::object());
  auto result = fetch();
  unfinished.settle();
  return result;
}

// restore … --remote --file NAME: the backup fetched from the remote into BACKUP_DIR first
// (checked against its meta there), then restored like a local one.
std::string fetched(const Config& config, const Args& args, const std::string& kind, const std::string& file) {
  if (!args.remote) return file;
  if (file.empty()) return file;
  auto remote = make_remote(config);
  auto progress = make_progress(args.out);
  std::string name = fs::path(file).filename().string();
  return journaled_fetch(config, [&] { return fetch_backup(config, *remote, kind + "/" + name, *progress).string(); });
}

// --remote --set ID|latest: the set file and its parts fetched into BACKUP_DIR; the same
// arguments for the local command, naming the set by its id.
Args with_set_fetched(const Config& config, const Args& args,
                      const std::function<bool(const std::string&)>& streamed = {},
                      FetchCheck check = FetchCheck::reuse_local) {
  auto remote = make_remote(config);
  auto progress = make_progress(args.out);
  Args local = args;
  local.remote = false;
  const SetScope scope = set_scope(config, PgTarget::from_environment());
  local.set = journaled_fetch(config, [&] { return fetch_set(config, *remote, args.set, scope, *progress, streamed, check); });
  return local;
}

// Whether a database restore reads the dump `name` (on the remote) as it downloads: the load runs
// while the rest arrives, nothing is stored locally, and the swap waits for the whole file to
// match the remote meta. Only a custom-format dump (its table of contents comes first: the plan
// needs no more), only into a side database (an --in-place restore drops the live database
// first: it takes the whole file, checked, before), and not one in BACKUP_DIR already (restored
// from there, after fetch_backup's check that it is the remote's).
bool streams_from_remote(const Config& config, const std::string& name, bool in_place) {
  auto format = db_format_of(name);
  std::error_code ec;
  return !in_place && format && is_custom(*format) && !fs::exists(fs::symlink_status(config.kind_dir("db") / name, ec));
}

int cmd_restore_db(const Config& config, const Args& args) {
  if (args.remote && !args.restore.file.empty()) {
    Args local = args;
    local.remote = false;
    const std::string name = fs::path(args.restore.file).filename().string();
    if (streams_from_remote(config, name, args.restore.in_place)) {
      IncomingBackup incoming(config, make_remote(config), "db/" + name);
      local.restore.file = incoming.file();
      local.restore.incoming = &incoming;
      return cmd_restore_db(config, local);
    }
    local.restore.file = fetched(config, args, "db", args.restore.file.string());
    return cmd_restore_db(config, local);
  }
  if (args.restore.file.empty()) {
    throw Error(
        ErrorCode::usage, "no backup file given",
        "make restore-db BACKUP_FILE=infra/data/backup/db/archive_<db>_<ts>.dump CONFIRM=YES "
        "(`backupctl list` shows the backups)");
  }
  PgTarget target = PgTarget::from_environment();
  auto progress = make_progress(args.out);
  RestorePlan plan = plan_restore_db(config, target, args.restore, *progress);
  require_confirmation(config, args, plan.describe(), plan.to_json(),
                       args.restore.incoming ? "CONFIRM=YES backupctl restore db --remote --file " + args.restore.file.filename().string()
                                             : "make restore-db BACKUP_FILE=" + args.restore.file.string() +
                                                   " CONFIRM=YES (or backupctl restore db --confirm)");
  return bookkeeping(config, "restore db", "restore", [&](Journal& journal) {
    RestoreReport report = run_restore_db(config, target, plan, args.restore, journal, *progress);
    if (args.out.json) {
      print_json(report.to_json());
    } else {
      std::cout << report.describe();
    }
    if (interrupt_signal() != 0) {
      throw Error(ErrorCode::interrupted,
                  "interrupted by " + signal_name(interrupt_signal()) + " after the restore had finished (the database " +
                      report.target + " is restored and the services run)",
                  "the checklist did not run: `backupctl check`");
    }
    if (!plan.stops_services) return Outcome{};  // a staging copy: the live system's checklist does not apply
    post_restore_checks(config, report.safety_dump
                                    ? "to go back: CONFIRM=YES backupctl restore db --in-place --file " + report.safety_dump->string()
                                : report.previous_kept ? "to go back: CONFIRM=YES backupctl restore undo"
                                                       : "to go back: restore an earlier backup (`backupctl list --kind db`)");
    return Outcome{};
  });
}

int cmd_restore_objects(const Config& config, const Args& args) {
  if (args.remote && !args.restore_objects.file.empty()) {
    Args local = args;
    local.remote = false;
    local.restore_objects.file = fetched(config, args, "objects", args.restore_objects.file.string());
    return cmd_restore_objects(config, local);
  }
  const RestoreObjectsOptions& options = args.restore_objects;
  if (options.file.empty()) {
    throw Error(ErrorCode::usage, "no backup file given",
                "make restore-objects "
                "BACKUP_FILE=infra/data/backup/objects/objects_<label>_<ts>.tar.gz CONFIRM=YES");
  }
  // For the disk store, --target is another folder (a rehearsal copy).
  std::unique_ptr<ObjectStore> store;
  if (config.object_storage == ObjectStorage::disk && !options.target.empty()) {
    store = std::make_unique<DiskStore>(options.target);  // created when the restore runs
  } else {
    store = make_object_store(config);
  }
  auto progress = make_progress(args.out);
  ObjectsPlan plan = plan_restore_objects(config, *store, options, *progress);
  require_confirmation(config, args, plan.describe(), plan.to_json(),
                       "make restore-objects BACKUP_FILE=" + options.file.string() +
                           " CONFIRM=YES (or backupctl restore objects --confirm)");
  return bookkeeping(config, "restore objects", "restore", [&](Journal& journal) {
    ObjectsReport report = run_restore_objects(config, *store, plan, journal, *progress);
    if (args.out.json) {
      print_json(report.to_json());
    } else {
      std::cout << report.describe();
    }
    post_restore_checks(config, "to go back: restore an earlier objects backup (backupctl list --kind objects)");
    return Outcome{};
  });
}

int cmd_restore_undo(const Config& config, const Args& args) {
  PgTarget target = PgTarget::from_environment();
  UndoPlan plan = plan_restore_undo(config, target, args.restore.target_db);
  require_confirmation(
      config, args, plan.describe(),
      {{"target", plan.target}, {"previous", plan.previous}, {"keep_as", plan.keep_as}},
      "CONFIRM=YES backupctl restore undo (or --confirm)");
  return bookkeeping(config, "restore undo", "restore", [&](Journal& journal) {
    RestoreReport report = run_restore_undo(config, target, plan, journal);
    if (args.out.json) {
      print_json(report.to_json());
    } else {
      std::cout << fmt::format("{} is back as {}; the database it replaced is kept as {}\n",
                               plan.previous, plan.target, plan.keep_as);
    }
    return Outcome{};
  });
}

int cmd_backup_db(const Config& config, const Args& args) {
  PgTarget target = PgTarget::from_environment();  // bad settings fail before anything is touched
  return bookkeeping(config, "backup db", "db", [&](Journal& journal) {
    auto progress = make_progress(args.out);
    Journal::Entry unfinished = journal.add("backup", nlohmann::json::object());
    BackupResult r = backup_db(config, target, *progress);
    unfinished.settle();
    show_backup(args, r);
    return backup_outcome(r, args);
  });
}

int cmd_backup_objects(const Config& config, const Args& args) {
  auto store = make_object_store(config);
  return bookkeeping(config, "backup objects", "objects", [&](Journal& journal) {
    auto progress = make_progress(args.out);
    Journal::Entry unfinished = journal.add("backup", nlohmann::json::object());
    BackupResult r = backup_objects(config, *store, *progress);
    unfinished.settle();
    show_backup(args, r);
    return backup_outcome(r, args);
  });
}

int cmd_backup_config(const Config& config, const Args& args) {
  return bookkeeping(config, "backup config", "config", [&](Journal& journal) {
    auto progress = make_progress(args.out);
    Journal::Entry unfinished = journal.add("backup", nlohmann::json::object());
    BackupResult r = backup_config(config, *progress);
    unfinished.settle();
    show_backup(args, r);
    return backup_outcome(r, args);
  });
}

int cmd_backup_all(const Config& config, const Args& args) {
  PgTarget target = PgTarget::from_environment();
  return bookkeeping(config, "backup all", "set", [&](Journal& journal) {
    auto progress = make_progress(args.out);
    Journal::Entry unfinished = journal.add("backup", nlohmann::json::object());
    SetResult set = backup_all(config, target, *progress);
    unfinished.settle();
    Outcome o;
    std::vector<std::string> failed, kept;
    for (auto it = set.json["parts"].begin(); it != set.json["parts"].end(); ++it) {
      if (it.value().contains("error")) {
        o.failures.emplace_back(it.key(), it.value()["error"].get<std::string>());
        failed.push_back(it.key());
      } else {
        o.successes.emplace_back(it.key(), 0.0, it.value()["size"].get<std::uint64_t>(),
                                 (config.backup_dir / it.value()["path"].get<std::string>()).string());
        kept.push_back(it.key());
      }
    }
    if (args.out.json) {
      print_json({{"ok", set.ok}, {"set_file", set.file.string()}, {"set", set.json}});
    } else if (!args.out.quiet) {
      std::cout << fmt::format("backup set {}: {}\n", set.set_id, set.file.string());
      for (auto it = set.json["parts"].begin(); it != set.json["parts"].end(); ++it) {
        std::cout << fmt::format("  {:<8} {}\n", it.key(),
                                 it.value().contains("error")
                                     ? "FAILED: " + it.value()["error"].get<std::string>()
                                     : (config.backup_dir / it.value()["path"].get<std::string>()).string());
      }
    }
    if (!set.ok) {
      auto join = [](const std::vector<std::string>& v) {
        std::string s;
        for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
        return s.empty() ? std::string("none") : s;
      };
      throw Error(ErrorCode::tool_failed,
                  fmt::format("backup set {} is incomplete: {} failed; kept: {}", set.set_id,
                              join(failed), join(kept)),
                  "fix the failing part (see the errors above) and run `make backup-all` again");
    }
    o.prune_after = true;
    o.copy_off_site = !args.no_remote;
    for (const auto& [k, secs, size, file] : o.successes) o.push_files.emplace_back(file);
    o.push_sets.push_back(set.file);
    o.event_file = set.file.string();  // the set, not its first part
    return o;
  });
}

int cmd_restore_config(const Config& config, const Args& args) {
  if (args.remote && !args.config_file.empty()) {
    Args local = args;
    local.remote = false;
    local.config_file = fetched(config, args, "config", args.config_file);
    return cmd_restore_config(config, local);
  }
  if (args.config_file.empty()) {
    throw Error(
        ErrorCode::usage, "no backup file given",
        "make restore-config BACKUP_FILE=infra/data/backup/config/config_<ts>.tar.gz MODE=preview");
  }
  if (args.config_mode != "preview" && args.config_mode != "apply") {
    throw Error(ErrorCode::usage, "unknown MODE '" + args.config_mode + "'",
                "MODE=preview shows what would change; MODE=apply CONFIRM=YES writes it");
  }
  ConfigPlan plan = preview_config(config, args.config_file, NoMeta::refuse);
  if (args.config_mode == "preview") {
    if (args.out.json) {
      print_json(plan.to_json());
    } else {
      std::cout << plan.describe();
      std::cout << "\nto apply: make restore-config BACKUP_FILE=" << args.config_file
                << " MODE=apply CONFIRM=YES\n";
    }
    return 0;
  }
  require_confirmation(
      config, args, plan.describe(), plan.to_json(),
      "make restore-config BACKUP_FILE=" + args.config_file + " MODE=apply CONFIRM=YES");
  return bookkeeping(config, "restore config", "restore", [&](Journal& journal) {
    auto progress = make_progress(args.out);
    ConfigApplyReport report = apply_config(config, plan, journal, *progress);
    if (args.out.json) {
      print_json({{"ok", true},
                  {"safety_backup", report.safety_backup.string()},
                  {"changed", report.applied.size()}});
    } else {
      std::cout << report.describe();
    }
    return Outcome{};
  });
}

// restore all of a set in BACKUP_DIR; its database dump is `incoming` when that is set (read
// from the remote as it downloads).
int restore_all(const Config& config, const Args& args, IncomingBackup* incoming) {
  PgTarget target = PgTarget::from_environment();
  nlohmann::json set = find_set(config, args.set, set_scope(config, target));
  auto part = [&](const char* kind) -> std::string {
    auto p = set_part_path(config, set, kind);
    return p ? p->string() : "";
  };
  std::string db = part("db"), objects = part("objects"), conf = part("config");
  if (db.empty() && objects.empty()) {
    throw Error(
        ErrorCode::not_found,
        "set " + json_string(set, "set_id", "?") + " has neither a database nor an attachments backup",
        "pick another set");
  }
  auto progress = make_progress(args.out);
  std::optional<RestorePlan> db_plan;
  std::optional<ObjectsPlan> objects_plan;
  RestoreDbOptions db_options;
  db_options.allow_other_database = args.restore.allow_other_database;
  db_options.file = incoming ? incoming->file() : fs::path(db);
  db_options.incoming = incoming;
  RestoreObjectsOptions objects_options;
  objects_options.file = objects;
  std::unique_ptr<ObjectStore> store;
  if (!db.empty()) db_plan = plan_restore_db(config, target, db_options, *progress);
  if (!objects.empty()) {
    store = make_object_store(config);
    objects_plan = plan_restore_objects(config, *store, objects_options, *progress);
  }
  std::string text = fmt::format("restore of backup set {} (made {}):\n\n",
                                 json_string(set, "set_id", "?"), json_string(set, "created_at", "?"));
  if (db_plan) text += db_plan->describe() + "\n";
  if (objects_plan) text += objects_plan->describe() + "\n";
  if (!conf.empty())
    text +=
        "config: preview-first; after the restore run:\n  make restore-config BACKUP_FILE=" + conf +
        " MODE=preview\n";
  require_confirmation(config, args, text, {{"set", set}},
                       "CONFIRM=YES backupctl restore all --set " + json_string(set, "set_id", args.set));
  return bookkeeping(config, "restore all", "restore", [&](Journal& journal) {
    nlohmann::json out = {{"ok", true}, {"set_id", json_string(set, "set_id")}};
    if (db_plan) {
      RestoreReport r = run_restore_db(config, target, *db_plan, db_options, journal, *progress);
      out["db"] = r.to_json();
      if (!args.out.json) std::cout << r.describe();
    }
    if (objects_plan) {
      ObjectsReport r = run_restore_objects(config, *store, *objects_plan, journal, *progress);
      out["objects"] = r.to_json();
      if (!args.out.json) std::cout << r.describe();
    }
    if (!conf.empty()) {
      ConfigPlan preview = preview_config(config, conf, NoMeta::refuse);
      out["config_preview"] = preview.to_json();
      if (!args.out.json) {
        std::cout << "\n"
                  << preview.describe()
                  << "\nthe config was not changed; to apply it: make restore-config BACKUP_FILE="
                  << conf << " MODE=apply CONFIRM=YES\n";
      }
    }
    if (args.out.json) print_json(out);
    post_restore_checks(config, "to go back: CONFIRM=YES backupctl restore undo (and restore an earlier objects backup)");
    return Outcome{};
  });
}

int cmd_restore_all(const Config& config, const Args& args) {
  if (!args.remote) return restore_all(config, args, nullptr);
  // Recovery from nothing: the set file and its attachments and config backups from the remote;
  // its database dump is read as it downloads (unless a copy of it is here already).
  std::string streamed;
  Args local = with_set_fetched(config, args, [&](const std::string& name) {
    if (!name.starts_with("db/") || !streams_from_remote(config, name.substr(3), false)) return false;
    streamed = name;
    return true;
  });
  std::unique_ptr<IncomingBackup> db;
  if (!streamed.empty()) db = std::make_unique<IncomingBackup>(config, make_remote(config), streamed);
  return restore_all(config, local, db.get());
}

int cmd_prune(const Config& config, const Args& args) {
  // --wrong-clock: only the backups dated ahead of this host's clock, locally and on the remote;
  // they are a judgement call (each holds real data of a moment no one knows), so CONFIRM=YES.
  const PruneWhat what = args.wrong_clock ? PruneWhat::wrong_clock : PruneWhat::retention;
  auto run = [&](Journal* journal, DryRun mode) {
    const bool dry_run = mode == DryRun::yes;
    // The databases kept by restores live on the server: checked when one is configured.
    std::optional<PgTarget> pg;
    if (what == PruneWhat::retention && (env_value("DATABASE_URL") || env_value("PGHOST") || env_value("PGDATABASE"))) {
      try {
        pg = PgTarget::from_environment();
      } catch (const Error&) {
      }
    }
    PruneResult r = prune(config, mode, pg, Clock::now(), journal, what);
    // The remote's retention too, when there is one (BACKUP_REMOTE_RETENTION_DAYS).
    if (config.remote) {
      auto remote = make_remote(config);
      for (const auto& name : prune_remote(config, *remote, mode, what)) {
        if (name.ends_with(".meta")) continue;
        r.deleted.push_back({config.remote->url + "/" + name,
                             what == PruneWhat::wrong_clock
                                 ? std::string("dated ahead of this host's clock (--wrong-clock)")
                                 : fmt::format("older than BACKUP_REMOTE_RETENTION_DAYS={}", config.remote->retention_days)});
      }
    }
    if (args.out.json) {
      nlohmann::json d = nlohmann::json::array(), k = nlohmann::json::array();
      for (const auto& a : r.deleted) d.push_back({{"what", a.what}, {"reason", a.reason}});
      for (const auto& a : r.kept) k.push_back({{"what", a.what}, {"reason", a.reason}});
      print_json({{"ok", true}, {"dry_run", dry_run}, {"deleted", d}, {"kept", k}});
    } else {
      if (r.deleted.empty()) std::cout << "nothing to prune\n";
      for (const auto& a : r.deleted) {
        std::cout << fmt::format("{} {}  ({})\n", dry_run ? "would delete" : "deleted", a.what, a.reason);
      }
      for (const auto& a : r.kept) std::cout << fmt::format("kept {}  ({})\n", a.what, a.reason);
    }
    return r;
  };
  if (args.dry_run) return run(nullptr, DryRun::yes), 0;
  if (what == PruneWhat::wrong_clock && !config.confirmed && !args.confirm) {
    if (run(nullptr, DryRun::yes).deleted.empty()) return 0;
    throw Error(ErrorCode::confirmation_required, "not confirmed: nothing was deleted",
                "to delete them: CONFIRM=YES backupctl prune --wrong-clock");
  }
  return bookkeeping(config, "prune", "prune", [&](Journal& journal) {
    journal.step("prune.delete");
    run(&journal, DryRun::no);
    return Outcome{};
  });
}

int cmd_status(const Config& config, const Args& args) {
  StatusReport r = backup_status(config, Clock::now());
  // What the repair at start-up found (it ran before this command; status says what is left).
  std::vector<std::string> pending = args.repair.in_progress ? std::vector<std::string>{} : pending_repairs(config);
  r.json["repairs_pending"] = pending;
  r.json["run_in_progress"] = args.repair.in_progress;
  r.json["repaired"] = args.repair.lines;
  if (!pending.empty()) r.json["ok"] = false;
  if (args.out.json) {
    print_json(r.json);
  } else {
    std::cout << r.describe();
    if (args.repair.in_progress) std::cout << "  a backupctl run is in progress (it holds the lock)\n";
    for (const auto& l : args.repair.lines) std::cout << "  repaired: " << l << "\n";
    for (const auto& p : pending) {
      std::cout << "  REPAIR NEEDED: " << p << "\n";
    }
    if (!pending.empty()) {
      std::cout << "  resolve it: fix the cause named above, then `backupctl repair`; once repaired by hand, "
                   "`CONFIRM=YES backupctl repair --discard`\n";
    }
  }
  if (!pending.empty()) return exit_status(ErrorCode::repair_needed);
  if (r.wrong_clock) return exit_status(ErrorCode::wrong_clock);
  return r.stale ? exit_status(ErrorCode::stale) : 0;
}

int cmd_repair(const Config& config, const Args& args) {
  if (args.repair.in_progress) {
    throw Error(ErrorCode::locked, "a backupctl run is in progress: its journal is not a dead run's",
                "wait for it to finish; `backupctl status` shows it");
  }
  std::vector<JournalFile> left = read_journals(config.backup_dir);
  if (args.discard && !left.empty()) {
    std::string text = "these journals would be discarded (nothing is repaired or changed by that):\n";
    for (const auto& p : pending_repairs(config)) text += "  " + p + "\n";
    require_confirmation(config, args, text, {{"discard", pending_repairs(config)}},
                         "CONFIRM=YES backupctl repair --discard");
    BackupLock lock = BackupLock::acquire(config.backup_dir, "backupctl repair --discard");
    for (const auto& j : read_journals(config.backup_dir)) {
      remove_journal_file(j);
      std::cout << "discarded " << j.path.string() << "\n";
    }
    return 0;
  }
  std::vector<std::string> pending = pending_repairs(config);
  if (args.out.json) {
    print_json({{"ok", pending.empty()}, {"repaired", args.repair.lines}, {"pending", pending}});
  } else {
    if (args.repair.lines.empty() && pending.empty()) std::cout << "nothing to repair\n";
    for (const auto& l : args.repair.lines) std::cout << "repaired: " << l << "\n";
    for (const auto& p : pending) std::cout << "REPAIR NEEDED: " << p << "\n";
  }
  if (!pending.empty()) {
    throw Error(ErrorCode::repair_needed, fmt::format("{} interrupted run(s) could not be repaired", pending.size()),
                "fix the cause named above and run `backupctl repair` again; once repaired by hand: "
                "CONFIRM=YES backupctl repair --discard");
  }
  return 0;
}

int cmd_schedule(const Config& config, const Args& args) {
  if (args.cron == args.systemd) {
    throw Error(ErrorCode::usage, "schedule needs --cron or --systemd",
                "e.g. backupctl schedule --cron");
  }
  std::string env_file = args.env_file;
  if (env_file.empty() && fs::exists(config.app_root / "infra/env"))
    env_file = (config.app_root / "infra/env").string();
  std::cout << schedule_text(config, args.systemd, args.time, args.self, env_file);
  return 0;
}

int cmd_check(const Config& config, const Args& args) {
  std::error_code ec;
  if (!fs::exists(config.checks_file, ec)) {
    throw Error(ErrorCode::not_found, "no checklist at " + config.checks_file.string(),
                "write infra/backup-checks.toml (see README.md) or set CHECKS_FILE");
  }
  auto checks = load_checklist(config.checks_file);
  std::unique_ptr<ObjectStore> store;
  try {
    store = make_object_store(config);
  } catch (const Error&) {
  }
  auto results = run_checks(checks, {PgTarget::from_environment(), store.get(), nullptr, config.api_url});
  if (args.out.json) {
    nlohmann::json j = nlohmann::json::array();
    for (const auto& r : results) {
      j.push_back({{"name", r.name}, {"kind", r.kind}, {"status", r.status}, {"detail", r.detail}, {"seconds", r.seconds}});
    }
    print_json({{"ok", all_passed(results)}, {"checks", j}});
  } else {
    std::cout << checks_table(results);
  }
  return all_passed(results) ? 0 : exit_status(ErrorCode::check_failed);
}

int cmd_rehearse(const Config& config, const Args& args) {
  if (args.remote) {
    // The monthly proof from the off-site copy: the set fetched from the remote, then rehearsed.
    // What is here already is used only once the remote's bytes were read and matched the same
    // sha256: the proof is of the off-site copy.
    try {
      Args local = with_set_fetched(config, args, {}, FetchCheck::remote_bytes);
      int rc = cmd_rehearse(config, local);
      RunState state = RunState::load(config.backup_dir);
      state.record_success("remote_rehearsal", 0, 0, local.set);
      state.save();
      return rc;
    } catch (const Error& e) {
      if (e.code() != ErrorCode::interrupted) {
        RunState state = RunState::load(config.backup_dir);
        state.record_failure("remote_rehearsal", e.what());
        state.save();
      }
      throw;
    }
  }
  PgTarget live = PgTarget::from_environment();
  BackupLock lock = BackupLock::acquire(config.backup_dir, "backupctl rehearse");
  repair_interrupted_runs(config, LockHeld::yes);
  auto progress = make_progress(args.out);
  std::optional<RehearsalReport> report;
  {
    Journal journal(config.backup_dir, "rehearse", journal_undo(config));
    report = rehearse(config, live, args.set, journal, *progress);
  }
  RehearsalReport& r = *report;
  RunState state = RunState::load(config.backup_dir);
  state.record_rehearsal(r.ok, r.json_file.string());
  try {
    state.save();
  } catch (const std::exception& e) {
    spdlog::warn("cannot record the run state: {}", e.what());
  }
  write_metrics_file(config, state);
  notify(config, {{"command", "rehearse"}, {"ok", r.ok}, {"set_id", r.set_id}, {"report", r.json_file.string()},
                  {"error", r.json.value("reason", "")}, {"host", machine_hostname()}, {"at", iso8601(Clock::now())}});
  if (args.out.json) {
    print_json({{"ok", r.ok}, {"report", r.json_file.string()}, {"rehearsal", r.json}});
  } else {
    std::cout << r.markdown << "\nreport: " << r.json_file.string() << " and " << r.md_file.string() << "\n";
  }
  if (!r.ok) {
    throw Error(ErrorCode::check_failed, "the rehearsal of set " + r.set_id + " failed: " + r.json.value("reason", ""),
                "the report is " + r.md_file.string() + "; fix the cause and rehearse again");
  }
  return 0;
}

int cmd_push(const Config& config, const Args& args) {
  if (!config.remote) {
    throw Error(ErrorCode::usage, "push needs BACKUP_REMOTE_URL", "e.g. BACKUP_REMOTE_URL=s3://offsite/archive (see README: off-site copies)");
  }
  if (!args.push_set.empty() && args.all) throw Error(ErrorCode::usage, "push takes --set ID or --all, not both");
  auto remote = make_remote(config);
  return bookkeeping(config, "push", "remote", [&](Journal&) {
    std::vector<fs::path> files, sets;
    if (!args.push_set.empty()) {
      fs::path set_file;
      nlohmann::json set = find_set(config, args.push_set, set_scope(config, PgTarget::from_environment()), &set_file);
      for (const char* kind : {"db", "objects", "config"}) {
        if (auto p = set_part_path(config, set, kind)) files.push_back(*p);
      }
      sets.push_back(set_file);
    } else {
      every_local_backup(config, files, sets);
    }
    auto progress = make_progress(args.out);
    const auto start = std::chrono::steady_clock::now();
    PushReport r = push(config, *remote, files, sets, *progress, args.take_over ? TakeOver::yes : TakeOver::no);
    Outcome o;
    if (r.failed.empty()) {
      o.successes.emplace_back("remote", seconds_since(start), r.bytes, r.remote);
    } else {
      o.failures.emplace_back("remote", r.failed.front());
      o.exit = exit_status(ErrorCode::tool_failed);
    }
    if (r.failed.empty()) prune_remote(config, *remote, DryRun::no);
    if (args.out.json) {
      print_json({{"ok", r.failed.empty()}, {"remote", r.remote}, {"sent", r.sent}, {"present", r.present},
                  {"bytes", r.bytes}, {"failed", r.failed}, {"skipped", r.skipped}});
    } else {
      std::cout << fmt::format("push to {}: {} file(s) copied ({}), {} already there\n", r.remote, r.sent.size(),
                               human_bytes(r.bytes), r.present.size());
      for (const auto& f : r.failed) std::cout << "  NOT COPIED: " << f << "\n";
      for (const auto& f : r.skipped) std::cout << "  not sent: " << f << "\n";
    }
    if (!r.failed.empty()) spdlog::error("push: {} backup(s) not copied", r.failed.size());
    return o;
  });
}

}  // namespace backupctl
