// prune, repair, rehearse, schedule: retention, the repair of dead runs, the monthly rehearsal
// and the schedule that runs the backups.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <iostream>
#include <memory>
#include <optional>

#include "cli/command.hpp"
#include "command/prune.hpp"
#include "command/rehearse.hpp"
#include "command/remote.hpp"
#include "command/status.hpp"
#include "pg/target.hpp"
#include "run/run.hpp"
#include "util/env.hpp"
#include "util/error.hpp"
#include "util/process.hpp"
#include "util/time.hpp"

namespace backupctl {

namespace {

struct PruneArgs {
  bool dry_run = false;
  bool wrong_clock = false;  // only the backups dated ahead of this host's clock
  bool confirm = false;
};

struct RepairArgs {
  bool discard = false;  // forget the journals that cannot be repaired
  bool confirm = false;
};

struct RehearseArgs {
  std::string set = "latest";
  bool remote = false;  // the off-site copy of the set
  std::string to_time;  // a moment (point-in-time recovery), or random
};

struct ScheduleArgs {
  bool cron = false;
  bool systemd = false;
  std::string time = "03:15";
};

void print_prune(const OutputOptions& out, const PruneResult& r, DryRun mode) {
  const bool dry_run = mode == DryRun::yes;
  if (out.json) {
    nlohmann::json d = nlohmann::json::array(), k = nlohmann::json::array();
    for (const auto& a : r.deleted) d.push_back({{"what", a.what}, {"reason", a.reason}});
    for (const auto& a : r.kept) k.push_back({{"what", a.what}, {"reason", a.reason}});
    print_json({{"ok", true}, {"dry_run", dry_run}, {"deleted", d}, {"kept", k}});
    return;
  }
  if (r.deleted.empty()) std::cout << "nothing to prune\n";
  for (const auto& a : r.deleted) {
    std::cout << fmt::format("{} {}  ({})\n", dry_run ? "would delete" : "deleted", a.what, a.reason);
  }
  for (const auto& a : r.kept) std::cout << fmt::format("kept {}  ({})\n", a.what, a.reason);
}

// The local retention, and the remote's when there is one (BACKUP_REMOTE_RETENTION_DAYS).
PruneResult prune_here_and_remote(const Config& config, PruneWhat what, Journal* journal, DryRun mode) {
  // The databases kept by restores live on the server: checked when one is configured.
  std::optional<PgTarget> pg;
  if (what == PruneWhat::retention && (env_value("DATABASE_URL") || env_value("PGHOST") || env_value("PGDATABASE"))) {
    try {
      pg = PgTarget::from_environment();
    } catch (const Error&) {
    }
  }
  PruneResult r = prune(config, mode, pg, Clock::now(), journal, what);
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
  return r;
}

int prune_cmd(const Invocation& in, const PruneArgs& args) {
  const Config& config = in.config;
  // --wrong-clock: only the backups dated ahead of this host's clock, locally and on the remote;
  // they are a judgement call (each holds real data of a moment no one knows), so CONFIRM=YES.
  const PruneWhat what = args.wrong_clock ? PruneWhat::wrong_clock : PruneWhat::retention;
  auto dry_run = [&] {
    PruneResult r = prune_here_and_remote(config, what, nullptr, DryRun::yes);
    print_prune(in.out, r, DryRun::yes);
    return r;
  };
  if (args.dry_run) return dry_run(), 0;
  if (what == PruneWhat::wrong_clock && !config.confirmed && !args.confirm) {
    if (dry_run().deleted.empty()) return 0;
    throw Error(ErrorCode::confirmation_required, "not confirmed: nothing was deleted",
                "to delete them: CONFIRM=YES backupctl prune --wrong-clock");
  }
  return run_recorded(config, "prune", "prune", [&](Journal& journal) {
    journal.step("prune.delete");
    print_prune(in.out, prune_here_and_remote(config, what, &journal, DryRun::no), DryRun::no);
    return Outcome{};
  });
}

int repair_cmd(const Invocation& in, const RepairArgs& args) {
  const Config& config = in.config;
  if (in.repair.in_progress) {
    throw Error(ErrorCode::locked, "a backupctl run is in progress: its journal is not a dead run's",
                "wait for it to finish; `backupctl status` shows it");
  }
  std::vector<JournalFile> left = read_journals(config.backup_dir);
  if (args.discard && !left.empty()) {
    std::string text = "these journals would be discarded (nothing is repaired or changed by that):\n";
    for (const auto& p : pending_repairs(config)) text += "  " + p + "\n";
    require_confirmation(in, args.confirm, text, {{"discard", pending_repairs(config)}},
                         "CONFIRM=YES backupctl repair --discard");
    BackupLock lock = BackupLock::acquire(config.backup_dir, "backupctl repair --discard");
    for (const auto& j : read_journals(config.backup_dir)) {
      remove_journal_file(j);
      std::cout << "discarded " << j.path.string() << "\n";
    }
    return 0;
  }
  std::vector<std::string> pending = pending_repairs(config);
  if (in.out.json) {
    print_json({{"ok", pending.empty()}, {"repaired", in.repair.lines}, {"pending", pending}});
  } else {
    if (in.repair.lines.empty() && pending.empty()) std::cout << "nothing to repair\n";
    for (const auto& l : in.repair.lines) std::cout << "repaired: " << l << "\n";
    for (const auto& p : pending) std::cout << "REPAIR NEEDED: " << p << "\n";
  }
  if (!pending.empty()) {
    throw Error(ErrorCode::repair_needed, fmt::format("{} interrupted run(s) could not be repaired", pending.size()),
                "fix the cause named above and run `backupctl repair` again; once repaired by hand: "
                "CONFIRM=YES backupctl repair --discard");
  }
  return 0;
}

int rehearse_cmd(const Invocation& in, const RehearseArgs& args);

// The monthly proof from the off-site copy: the set fetched from the remote, then rehearsed. What
// is here already is used only once the remote's bytes were read and matched the same sha256: the
// proof is of the off-site copy.
int rehearse_remote(const Invocation& in, const RehearseArgs& args) {
  const Config& config = in.config;
  try {
    RehearseArgs local = args;
    local.remote = false;
    local.set = fetch_set_here(config, args.set, *make_progress(in.out), {}, FetchCheck::remote_bytes);
    int rc = rehearse_cmd(in, local);
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

int rehearse_cmd(const Invocation& in, const RehearseArgs& args) {
  if (args.remote) return rehearse_remote(in, args);
  const Config& config = in.config;
  PgTarget live = PgTarget::from_environment();
  // The rehearsal's journal ends with it; its verdict is recorded under the lock still.
  RunScope scope(config, "rehearse");
  auto progress = make_progress(in.out);
  if (!args.to_time.empty() && args.remote) {
    throw Error(ErrorCode::usage, "rehearse --to-time reads BACKUP_DIR", "fetch from the remote with `restore db --to-time … --remote --target-db`");
  }
  RehearsalReport r = rehearse(config, live, args.set, scope.journal(), *progress, args.to_time);
  scope.close_journal();
  RunState state = RunState::load(config.backup_dir);
  state.record_rehearsal(r.ok, r.json_file.string());
  record_state(config, state);
  notify(config, {{"command", "rehearse"}, {"ok", r.ok}, {"set_id", r.set_id}, {"report", r.json_file.string()},
                  {"error", r.json.value("reason", "")}, {"host", machine_hostname()}, {"at", iso8601(Clock::now())}});
  if (in.out.json) {
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

int schedule_cmd(const Invocation& in, const ScheduleArgs& args) {
  const Config& config = in.config;
  if (args.cron == args.systemd) {
    throw Error(ErrorCode::usage, "schedule needs --cron or --systemd", "e.g. backupctl schedule --cron");
  }
  std::string env_file = in.env_file;
  if (env_file.empty() && fs::exists(config.app_root / "infra/env")) env_file = (config.app_root / "infra/env").string();
  std::cout << schedule_text(config, args.systemd, args.time, in.self, env_file);
  return 0;
}

}  // namespace

void add_maintain_commands(CLI::App& app, CommandTable& table) {
  auto rehearse_args = std::make_shared<RehearseArgs>();
  auto* rehearse = app.add_subcommand("rehearse", "restore a set into staging, check it, remove it");
  rehearse->add_option("--set", rehearse_args->set, "a set id, or latest (default)");
  rehearse->add_flag("--remote", rehearse_args->remote, "rehearse the off-site copy of the set (fetched first)");
  rehearse->add_option("--to-time", rehearse_args->to_time,
                       "point-in-time: the database recovered to this moment (ISO 8601), or random (inside the window)");
  table.add(rehearse, [rehearse_args](const Invocation& in) { return rehearse_cmd(in, *rehearse_args); });

  auto prune_args = std::make_shared<PruneArgs>();
  auto* prune = app.add_subcommand("prune", "delete backups past retention (also after each backup)");
  prune->add_flag("--dry-run", prune_args->dry_run, "say what would be deleted, delete nothing");
  prune->add_flag("--wrong-clock", prune_args->wrong_clock,
                  "delete only the backups dated ahead of this host's clock, here and on the remote (CONFIRM=YES)");
  prune->add_flag("--confirm", prune_args->confirm, "the same as CONFIRM=YES");
  table.add(prune, [prune_args](const Invocation& in) { return prune_cmd(in, *prune_args); });

  auto repair_args = std::make_shared<RepairArgs>();
  auto* repair = app.add_subcommand(
      "repair", "repair what an interrupted run left (every command does this first; this one says so)");
  repair->add_flag("--discard", repair_args->discard,
                   "forget the journals that cannot be repaired (after repairing by hand; CONFIRM=YES)");
  repair->add_flag("--confirm", repair_args->confirm, "the same as CONFIRM=YES");
  table.add(repair, [repair_args](const Invocation& in) { return repair_cmd(in, *repair_args); });

  auto schedule_args = std::make_shared<ScheduleArgs>();
  auto* schedule = app.add_subcommand("schedule", "print a crontab line or a systemd timer");
  schedule->add_flag("--cron", schedule_args->cron, "a crontab line");
  schedule->add_flag("--systemd", schedule_args->systemd, "a service and a timer");
  schedule->add_option("--time", schedule_args->time, "HH:MM, local time (default 03:15)");
  table.add(schedule, [schedule_args](const Invocation& in) { return schedule_cmd(in, *schedule_args); });
  table.without_repair.push_back(schedule);
}

}  // namespace backupctl
