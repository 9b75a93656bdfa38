// backup db|objects|config|all, and push: the runs that make backups and copy them off-site.
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>

#include <iostream>
#include <memory>

#include "cli/command.hpp"
#include "command/backup_config.hpp"
#include "command/backup_base.hpp"
#include "command/backup_db.hpp"
#include "command/backup_objects.hpp"
#include "command/remote.hpp"
#include "command/sets.hpp"
#include "command/wal_push.hpp"
#include "pg/target.hpp"
#include "run/run.hpp"
#include "util/error.hpp"
#include "util/format.hpp"
#include "util/time.hpp"

namespace backupctl {

namespace {

struct BackupOptions {
  bool no_remote = false;  // --no-remote: no off-site copy this time
};

struct PushOptions {
  std::string set;         // --set ID
  bool all = false;        // --all (the default)
  bool take_over = false;  // --take-over: this BACKUP_DIR writes to the remote from now on
};

// Peak resident memory of this process (all threads, not its children), for the benchmarks.
long peak_rss_kib() {
  struct rusage ru {};
  ::getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;
}

void show_backup(const OutputOptions& out, const BackupResult& r) {
  if (out.json) {
    print_json({{"ok", true},
                {"kind", r.meta.kind},
                {"path", r.file.string()},
                {"meta", r.meta.to_json()},
                {"stats", {{"peak_rss_kib", peak_rss_kib()}}}});
  } else if (!out.quiet) {
    double rate = r.meta.duration_seconds > 0 ? static_cast<double>(r.meta.size) / r.meta.duration_seconds : 0;
    std::cout << fmt::format("{} backup: {}\n  size {}, sha256 {}, {}, {} ({}/s), set {}\n", r.meta.kind,
                             r.file.string(), human_bytes(r.meta.size), r.meta.sha256, r.meta.compression,
                             human_duration(r.meta.duration_seconds), human_bytes(static_cast<std::uint64_t>(rate)),
                             r.meta.set_id);
  }
}

// One backup of one kind, as a journaled run: retention after it, and its off-site copy.
int run_backup(const Invocation& in, const BackupOptions& o, const std::string& kind,
               const std::function<BackupResult(Progress&)>& make) {
  return run_recorded(in.config, "backup " + kind, kind, [&](Journal& journal) {
    auto progress = make_progress(in.out);
    Journal::Entry unfinished = journal.add("backup", nlohmann::json::object());
    BackupResult r = make(*progress);
    unfinished.settle();
    show_backup(in.out, r);
    Outcome outcome;
    outcome.prune_after = true;
    outcome.copy_off_site = !o.no_remote;
    outcome.push_files.push_back(r.file);
    outcome.successes.emplace_back(r.meta.kind, r.meta.duration_seconds, r.meta.size, r.file.string());
    return outcome;
  });
}

std::string joined_or_none(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s.empty() ? std::string("none") : s;
}

int backup_all_cmd(const Invocation& in, const BackupOptions& opts) {
  const Config& config = in.config;
  PgTarget target = PgTarget::from_environment();
  return run_recorded(config, "backup all", "set", [&](Journal& journal) {
    auto progress = make_progress(in.out);
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
    if (in.out.json) {
      print_json({{"ok", set.ok}, {"set_file", set.file.string()}, {"set", set.json}});
    } else if (!in.out.quiet) {
      std::cout << fmt::format("backup set {}: {}\n", set.set_id, set.file.string());
      for (auto it = set.json["parts"].begin(); it != set.json["parts"].end(); ++it) {
        std::cout << fmt::format("  {:<8} {}\n", it.key(),
                                 it.value().contains("error")
                                     ? "FAILED: " + it.value()["error"].get<std::string>()
                                     : (config.backup_dir / it.value()["path"].get<std::string>()).string());
      }
    }
    if (!set.ok) {
      throw Error(ErrorCode::tool_failed,
                  fmt::format("backup set {} is incomplete: {} failed; kept: {}", set.set_id,
                              joined_or_none(failed), joined_or_none(kept)),
                  "fix the failing part (see the errors above) and run `make backup-all` again");
    }
    o.prune_after = true;
    o.copy_off_site = !opts.no_remote;
    for (const auto& [k, secs, size, file] : o.successes) o.push_files.emplace_back(file);
    o.push_sets.push_back(set.file);
    o.event_file = set.file.string();  // the set, not its first part
    return o;
  });
}

int push_cmd(const Invocation& in, const PushOptions& opts) {
  const Config& config = in.config;
  if (!config.remote) {
    throw Error(ErrorCode::usage, "push needs BACKUP_REMOTE_URL", "e.g. BACKUP_REMOTE_URL=s3://offsite/archive (see README: off-site copies)");
  }
  if (!opts.set.empty() && opts.all) throw Error(ErrorCode::usage, "push takes --set ID or --all, not both");
  auto remote = make_remote(config);
  return run_recorded(config, "push", "remote", [&](Journal&) {
    std::vector<fs::path> files, sets;
    if (!opts.set.empty()) {
      fs::path set_file;
      nlohmann::json set = find_set(config, opts.set, set_scope(config, PgTarget::from_environment()), &set_file);
      for (const char* kind : {"db", "objects", "config"}) {
        if (auto p = set_part_path(config, set, kind)) files.push_back(*p);
      }
      sets.push_back(set_file);
    } else {
      every_local_backup(config, files, sets);
    }
    auto progress = make_progress(in.out);
    const auto start = std::chrono::steady_clock::now();
    PushReport r = push(config, *remote, files, sets, *progress, opts.take_over ? TakeOver::yes : TakeOver::no);
    // The WAL the receiver could not copy (the remote was down, or it runs without one).
    if (opts.set.empty()) {
      for (auto& name : push_wal(config, *remote, r.failed)) r.sent.push_back(std::move(name));
    }
    Outcome o;
    if (r.failed.empty()) {
      o.successes.emplace_back("remote", seconds_since(start), r.bytes, r.remote);
    } else {
      o.failures.emplace_back("remote", r.failed.front());
      o.exit = exit_status(ErrorCode::tool_failed);
    }
    if (r.failed.empty()) prune_remote(config, *remote, DryRun::no);
    if (in.out.json) {
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

}  // namespace

void add_backup_commands(CLI::App& app, CommandTable& table) {
  auto backup_opts = std::make_shared<BackupOptions>();
  auto* backup = app.add_subcommand("backup", "make a backup");
  backup->require_subcommand(1);
  auto* db = backup->add_subcommand("db", "dump the PostgreSQL database");
  auto* objects = backup->add_subcommand("objects", "archive the attachments (S3 or disk)");
  auto* config = backup->add_subcommand("config", "archive the config files (CONFIG_PATHS)");
  auto* all = backup->add_subcommand("all", "db, objects and config as one backup set");
  auto* base = backup->add_subcommand("base", "a base backup for point-in-time recovery (pg_basebackup)");
  for (auto* b : {db, objects, config, all, base}) {
    b->add_flag("--no-remote", backup_opts->no_remote, "no off-site copy this time (BACKUP_REMOTE_URL)");
  }
  table.add(db, [backup_opts](const Invocation& in) {
    PgTarget target = PgTarget::from_environment();  // bad settings fail before anything is touched
    return run_backup(in, *backup_opts, "db", [&](Progress& p) { return backup_db(in.config, target, p); });
  });
  table.add(objects, [backup_opts](const Invocation& in) {
    auto store = make_object_store(in.config);
    return run_backup(in, *backup_opts, "objects", [&](Progress& p) { return backup_objects(in.config, *store, p); });
  });
  table.add(config, [backup_opts](const Invocation& in) {
    return run_backup(in, *backup_opts, "config", [&](Progress& p) { return backup_config(in.config, p); });
  });
  table.add(all, [backup_opts](const Invocation& in) { return backup_all_cmd(in, *backup_opts); });
  table.add(base, [backup_opts](const Invocation& in) {
    PgTarget target = PgTarget::from_environment();
    // Like any backup: retention after it (the WAL before the oldest base backup kept goes with
    // it), and its off-site copy.
    return run_backup(in, *backup_opts, "base", [&](Progress& p) { return backup_base(in.config, target, p); });
  });

  auto push_opts = std::make_shared<PushOptions>();
  auto* push = app.add_subcommand("push", "copy to BACKUP_REMOTE_URL what it lacks (resumes a copy cut short)");
  push->add_option("--set", push_opts->set, "only this backup set (an id, or latest)");
  push->add_flag("--all", push_opts->all, "every backup and set (the default)");
  push->add_flag("--take-over", push_opts->take_over,
                 "this BACKUP_DIR replaces the one that wrote to the remote (a host rebuilt from it)");
  table.add(push, [push_opts](const Invocation& in) { return push_cmd(in, *push_opts); });
}

}  // namespace backupctl
