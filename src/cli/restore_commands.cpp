// restore db|objects|config|all|undo: the guarded restores (CONFIRM=YES), each followed by the
// post-restore checklist; with --remote, from the off-site copy.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <iostream>
#include <memory>
#include <optional>

#include "check/checklist.hpp"
#include "cli/command.hpp"
#include "command/remote.hpp"
#include "command/restore_config.hpp"
#include "command/restore_db.hpp"
#include "command/restore_pitr.hpp"
#include "command/wal_push.hpp"
#include "command/restore_objects.hpp"
#include "command/sets.hpp"
#include "pg/target.hpp"
#include "run/run.hpp"
#include "storage/disk/disk_store.hpp"
#include "util/error.hpp"
#include "util/json.hpp"
#include "util/signals.hpp"

namespace backupctl {

namespace {

struct RestoreDbArgs {
  RestoreDbOptions restore;
  std::string to_time, to_lsn;  // a point-in-time restore
  bool confirm = false;
  bool remote = false;  // --file names a backup on the remote
};

struct RestoreObjectsArgs {
  RestoreObjectsOptions restore;
  bool confirm = false;
  bool remote = false;
};

struct RestoreConfigArgs {
  std::string file;
  std::string mode = "preview";
  bool confirm = false;
  bool remote = false;
};

struct RestoreAllArgs {
  std::string set = "latest";
  bool allow_other_database = false;
  bool confirm = false;
  bool remote = false;  // the set on the remote (recovery from nothing)
};

struct RestoreUndoArgs {
  std::string target_db;
  bool confirm = false;
};

// Whether the app's api (API_URL) answers now, before a restore stops it.
enum class ApiBefore { answered, silent };
ApiBefore probe_api(const Config& config) {
  if (config.api_url.empty()) return ApiBefore::silent;
  return wait_until_http_answers(config.api_url, 0).empty() ? ApiBefore::answered : ApiBefore::silent;
}

// After a restore, with the services running again: the checklist (plan §4.5). Throws
// Error(check_failed) naming the failed checks, with `undo` as the hint. An api that answered
// before the restore stopped it is given a minute to come back first: a container still starting
// is not a failed check.
void post_restore_checks(const Config& config, const std::string& undo, ApiBefore api = ApiBefore::silent) {
  std::error_code ec;
  if (!fs::exists(config.checks_file, ec)) {
    spdlog::info("restore: no checklist at {} (CHECKS_FILE); nothing checked", config.checks_file.string());
    return;
  }
  if (api == ApiBefore::answered) {
    if (std::string why = wait_until_http_answers(config.api_url, 60); !why.empty()) {
      spdlog::warn("restore: the api at {} answered before the restore and not for a minute since ({})",
                   config.api_url, why);
    }
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

// --remote: the base backup the target needs and the WAL after it, from the remote into BACKUP_DIR
// (what `fetch` does: nothing live changes), so the plan below finds them as if made here: a
// host rebuilt with nothing but the remote's address and the key.
void fetch_pitr(const Invocation& in, const PgTarget& target, const PitrOptions& options) {
  const Config& config = in.config;
  auto remote = make_remote(config);
  std::vector<BaseBackup> bases;
  for (const auto& e : remote_catalog(config, *remote)) {
    if (e.kind != Kind::base || !e.meta || e.state() != "ok") continue;
    try {
      bases.push_back(base_backup_of(*e.meta, e.name));
    } catch (const Error& err) {
      spdlog::warn("restore: {} on the remote passed over: {}", e.name, err.what());
    }
  }
  if (bases.empty()) {
    throw Error(ErrorCode::not_found, "no base backup on " + config.remote->url,
                "point-in-time recovery from the remote needs one there: `backupctl push` copies them");
  }
  const RecoveryTarget wanted = parse_recovery_target(options.to_time, options.to_lsn);
  const BaseBackup& base = pick_base_backup(bases, live_system_identifier(target), wanted);
  auto progress = make_progress(in.out);
  fetch_file(config, "base", base.file.filename().string(), *progress);
  const std::size_t n = fetch_wal(config, *remote, base.sysid, base.first_segment(), *progress);
  spdlog::info("restore: {} and {} WAL file(s) fetched from {}", base.file.filename().string(), n, config.remote->url);
}

// restore db --to-time / --to-lsn: the guarded restore of the database as recovered to a moment
// (command/restore_pitr.hpp).
int restore_pitr_cmd(const Invocation& in, const RestoreDbArgs& args) {
  const Config& config = in.config;
  if (!args.restore.file.empty()) {
    throw Error(ErrorCode::usage, "--file and --to-time/--to-lsn name two sources", "give a dump file, or a moment");
  }
  PgTarget target = PgTarget::from_environment();
  PitrOptions options{args.to_time, args.to_lsn, args.restore};
  options.check_base_in_plan = !(config.confirmed || args.confirm);  // a run checks it as it unpacks
  if (args.remote) fetch_pitr(in, target, options);
  PitrPlan plan = plan_pitr(config, target, options);
  require_confirmation(in, args.confirm, plan.describe(), plan.to_json(),
                       "CONFIRM=YES backupctl restore db " +
                           (args.to_lsn.empty() ? "--to-time " + args.to_time : "--to-lsn " + args.to_lsn));
  return run_recorded(config, "restore db", "restore", [&](Journal& journal) {
    auto progress = make_progress(in.out);
    const ApiBefore api = args.restore.target_db.empty() ? probe_api(config) : ApiBefore::silent;
    RestoreReport report = run_pitr(config, target, plan, options, journal, *progress);
    if (in.out.json) {
      print_json(report.to_json());
    } else {
      std::cout << report.describe();
    }
    if (!args.restore.target_db.empty()) return Outcome{};
    post_restore_checks(config,
                        report.previous_kept ? "to go back: CONFIRM=YES backupctl restore undo"
                                             : "to go back: restore an earlier moment or backup (`backupctl list --kind db`)",
                        api);
    return Outcome{};
  });
}

int restore_db_cmd(const Invocation& in, const RestoreDbArgs& args) {
  const Config& config = in.config;
  if (!args.to_time.empty() || !args.to_lsn.empty()) return restore_pitr_cmd(in, args);
  if (args.remote && !args.restore.file.empty()) {
    RestoreDbArgs local = args;
    local.remote = false;
    const std::string name = args.restore.file.filename().string();
    if (streams_from_remote(config, name, args.restore.in_place)) {
      IncomingBackup incoming(config, make_remote(config), "db/" + name);
      local.restore.file = incoming.file();
      local.restore.incoming = &incoming;
      return restore_db_cmd(in, local);
    }
    local.restore.file = fetch_file(config, "db", args.restore.file.string(), *make_progress(in.out));
    return restore_db_cmd(in, local);
  }
  if (args.restore.file.empty()) {
    throw Error(
        ErrorCode::usage, "no backup file given",
        "make restore-db BACKUP_FILE=infra/data/backup/db/archive_<db>_<ts>.dump CONFIRM=YES "
        "(`backupctl list` shows the backups)");
  }
  PgTarget target = PgTarget::from_environment();
  auto progress = make_progress(in.out);
  RestorePlan plan = plan_restore_db(config, target, args.restore, *progress);
  require_confirmation(in, args.confirm, plan.describe(), plan.to_json(),
                       args.restore.incoming ? "CONFIRM=YES backupctl restore db --remote --file " + args.restore.file.filename().string()
                                             : "make restore-db BACKUP_FILE=" + args.restore.file.string() +
                                                   " CONFIRM=YES (or backupctl restore db --confirm)");
  return run_recorded(config, "restore db", "restore", [&](Journal& journal) {
    const ApiBefore api = plan.stops_services ? probe_api(config) : ApiBefore::silent;
    RestoreReport report = run_restore_db(config, target, plan, args.restore, journal, *progress);
    if (in.out.json) {
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
                                                       : "to go back: restore an earlier backup (`backupctl list --kind db`)",
                        api);
    return Outcome{};
  });
}

int restore_objects_cmd(const Invocation& in, const RestoreObjectsArgs& args) {
  const Config& config = in.config;
  if (args.remote && !args.restore.file.empty()) {
    RestoreObjectsArgs local = args;
    local.remote = false;
    local.restore.file = fetch_file(config, "objects", args.restore.file.string(), *make_progress(in.out));
    return restore_objects_cmd(in, local);
  }
  const RestoreObjectsOptions& options = args.restore;
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
  auto progress = make_progress(in.out);
  ObjectsPlan plan = plan_restore_objects(config, *store, options, *progress);
  require_confirmation(in, args.confirm, plan.describe(), plan.to_json(),
                       "make restore-objects BACKUP_FILE=" + options.file.string() +
                           " CONFIRM=YES (or backupctl restore objects --confirm)");
  return run_recorded(config, "restore objects", "restore", [&](Journal& journal) {
    ObjectsReport report = run_restore_objects(config, *store, plan, journal, *progress);
    if (in.out.json) {
      print_json(report.to_json());
    } else {
      std::cout << report.describe();
    }
    post_restore_checks(config, "to go back: restore an earlier objects backup (backupctl list --kind objects)");
    return Outcome{};
  });
}

int restore_undo_cmd(const Invocation& in, const RestoreUndoArgs& args) {
  const Config& config = in.config;
  PgTarget target = PgTarget::from_environment();
  UndoPlan plan = plan_restore_undo(config, target, args.target_db);
  require_confirmation(in, args.confirm, plan.describe(),
                       {{"target", plan.target}, {"previous", plan.previous}, {"keep_as", plan.keep_as}},
                       "CONFIRM=YES backupctl restore undo (or --confirm)");
  return run_recorded(config, "restore undo", "restore", [&](Journal& journal) {
    RestoreReport report = run_restore_undo(config, target, plan, journal);
    if (in.out.json) {
      print_json(report.to_json());
    } else {
      std::cout << fmt::format("{} is back as {}; the database it replaced is kept as {}\n",
                               plan.previous, plan.target, plan.keep_as);
    }
    return Outcome{};
  });
}

int restore_config_cmd(const Invocation& in, const RestoreConfigArgs& args) {
  const Config& config = in.config;
  if (args.remote && !args.file.empty()) {
    RestoreConfigArgs local = args;
    local.remote = false;
    local.file = fetch_file(config, "config", args.file, *make_progress(in.out)).string();
    return restore_config_cmd(in, local);
  }
  if (args.file.empty()) {
    throw Error(
        ErrorCode::usage, "no backup file given",
        "make restore-config BACKUP_FILE=infra/data/backup/config/config_<ts>.tar.gz MODE=preview");
  }
  if (args.mode != "preview" && args.mode != "apply") {
    throw Error(ErrorCode::usage, "unknown MODE '" + args.mode + "'",
                "MODE=preview shows what would change; MODE=apply CONFIRM=YES writes it");
  }
  ConfigPlan plan = preview_config(config, args.file, NoMeta::refuse);
  if (args.mode == "preview") {
    if (in.out.json) {
      print_json(plan.to_json());
    } else {
      std::cout << plan.describe();
      std::cout << "\nto apply: make restore-config BACKUP_FILE=" << args.file << " MODE=apply CONFIRM=YES\n";
    }
    return 0;
  }
  require_confirmation(in, args.confirm, plan.describe(), plan.to_json(),
                       "make restore-config BACKUP_FILE=" + args.file + " MODE=apply CONFIRM=YES");
  return run_recorded(config, "restore config", "restore", [&](Journal& journal) {
    auto progress = make_progress(in.out);
    ConfigApplyReport report = apply_config(config, plan, journal, *progress);
    if (in.out.json) {
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
int restore_set(const Invocation& in, const RestoreAllArgs& args, IncomingBackup* incoming) {
  const Config& config = in.config;
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
  auto progress = make_progress(in.out);
  std::optional<RestorePlan> db_plan;
  std::optional<ObjectsPlan> objects_plan;
  RestoreDbOptions db_options;
  db_options.allow_other_database = args.allow_other_database;
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
  if (!conf.empty()) {
    text += "config: preview-first; after the restore run:\n  make restore-config BACKUP_FILE=" + conf +
            " MODE=preview\n";
  }
  require_confirmation(in, args.confirm, text, {{"set", set}},
                       "CONFIRM=YES backupctl restore all --set " + json_string(set, "set_id", args.set));
  return run_recorded(config, "restore all", "restore", [&](Journal& journal) {
    const ApiBefore api = db_plan && db_plan->stops_services ? probe_api(config) : ApiBefore::silent;
    nlohmann::json out = {{"ok", true}, {"set_id", json_string(set, "set_id")}};
    if (db_plan) {
      RestoreReport r = run_restore_db(config, target, *db_plan, db_options, journal, *progress);
      out["db"] = r.to_json();
      if (!in.out.json) std::cout << r.describe();
    }
    if (objects_plan) {
      ObjectsReport r = run_restore_objects(config, *store, *objects_plan, journal, *progress);
      out["objects"] = r.to_json();
      if (!in.out.json) std::cout << r.describe();
    }
    if (!conf.empty()) {
      ConfigPlan preview = preview_config(config, conf, NoMeta::refuse);
      out["config_preview"] = preview.to_json();
      if (!in.out.json) {
        std::cout << "\n"
                  << preview.describe()
                  << "\nthe config was not changed; to apply it: make restore-config BACKUP_FILE="
                  << conf << " MODE=apply CONFIRM=YES\n";
      }
    }
    if (in.out.json) print_json(out);
    post_restore_checks(config, "to go back: CONFIRM=YES backupctl restore undo (and restore an earlier objects backup)",
                        api);
    return Outcome{};
  });
}

int restore_all_cmd(const Invocation& in, const RestoreAllArgs& args) {
  if (!args.remote) return restore_set(in, args, nullptr);
  const Config& config = in.config;
  // Recovery from nothing: the set file and its attachments and config backups from the remote;
  // its database dump is read as it downloads (unless a copy of it is here already).
  std::string streamed;
  RestoreAllArgs local = args;
  local.remote = false;
  local.set = fetch_set_here(config, args.set, *make_progress(in.out), [&](const std::string& name) {
    if (!name.starts_with("db/") || !streams_from_remote(config, name.substr(3), false)) return false;
    streamed = name;
    return true;
  });
  std::unique_ptr<IncomingBackup> db;
  if (!streamed.empty()) db = std::make_unique<IncomingBackup>(config, make_remote(config), streamed);
  return restore_set(in, local, db.get());
}

const char* const kConfirmHelp = "the same as CONFIRM=YES";
const char* const kRemoteFileHelp = "--file names a backup on BACKUP_REMOTE_URL: fetched first";

}  // namespace

void add_restore_commands(CLI::App& app, CommandTable& table) {
  auto* restore = app.add_subcommand("restore", "restore from a backup (guarded: needs CONFIRM=YES)");
  restore->require_subcommand(1);

  auto db_args = std::make_shared<RestoreDbArgs>();
  auto* db = restore->add_subcommand("db", "restore the database from a dump");
  db->add_option("--file,file", db_args->restore.file, "the backup file (.dump, .dump.zst, .sql, .sql.gz)");
  db->add_option("--target-db", db_args->restore.target_db,
                 "restore into this database (default: PGDATABASE / DATABASE_URL)");
  db->add_flag("--in-place", db_args->restore.in_place,
               "drop and recreate instead of swapping (a safety dump is taken first)");
  db->add_flag("--online", db_args->restore.online, "keep services running until the swap (seconds of downtime)");
  db->add_flag("--allow-no-meta", db_args->restore.allow_no_meta, "accept a dump without .meta (made elsewhere)");
  db->add_flag("--allow-other-database", db_args->restore.allow_other_database,
               "restore a dump of another database than PGDATABASE over it");
  db->add_option("--to-time", db_args->to_time,
                 "point-in-time: the database as it was then (2026-12-06T14:01:59Z, or latest)");
  db->add_option("--to-lsn", db_args->to_lsn, "point-in-time: the database as it was at this WAL position");
  db->add_flag("--confirm", db_args->confirm, kConfirmHelp);
  db->add_flag("--remote", db_args->remote, kRemoteFileHelp);
  table.add(db, [db_args](const Invocation& in) { return restore_db_cmd(in, *db_args); });

  auto objects_args = std::make_shared<RestoreObjectsArgs>();
  auto* objects = restore->add_subcommand("objects", "restore attachments from an archive");
  objects->add_option("--file,file", objects_args->restore.file, "the objects_*.tar.gz backup");
  objects->add_option("--mode", objects_args->restore.mode,
                      "merge (default): put every object; exact: also delete the others");
  objects->add_option("--target", objects_args->restore.target,
                      "elsewhere: a folder (disk) or BUCKET[/PREFIX] (S3)");
  objects->add_flag("--allow-no-meta", objects_args->restore.allow_no_meta, "accept an archive without .meta");
  objects->add_flag("--confirm", objects_args->confirm, kConfirmHelp);
  objects->add_flag("--remote", objects_args->remote, kRemoteFileHelp);
  table.add(objects, [objects_args](const Invocation& in) { return restore_objects_cmd(in, *objects_args); });

  auto config_args = std::make_shared<RestoreConfigArgs>();
  auto* config = restore->add_subcommand("config", "preview or apply a config backup");
  config->add_option("--file,file", config_args->file, "the config_*.tar.gz backup");
  config->add_option("--mode", config_args->mode, "preview (default) or apply (needs CONFIRM=YES)");
  config->add_flag("--confirm", config_args->confirm, kConfirmHelp);
  config->add_flag("--remote", config_args->remote, kRemoteFileHelp);
  table.add(config, [config_args](const Invocation& in) { return restore_config_cmd(in, *config_args); });

  auto all_args = std::make_shared<RestoreAllArgs>();
  auto* all = restore->add_subcommand("all", "restore the db and attachments of a backup set");
  all->add_option("--set", all_args->set, "a set id, or latest (default)");
  all->add_flag("--allow-other-database", all_args->allow_other_database,
                "the set's dump may be of another database than PGDATABASE (with --set ID)");
  all->add_flag("--confirm", all_args->confirm, kConfirmHelp);
  all->add_flag("--remote", all_args->remote, "the set on BACKUP_REMOTE_URL (recovery from nothing)");
  table.add(all, [all_args](const Invocation& in) { return restore_all_cmd(in, *all_args); });

  auto undo_args = std::make_shared<RestoreUndoArgs>();
  auto* undo = restore->add_subcommand("undo", "put back the database a restore replaced");
  undo->add_option("--target-db", undo_args->target_db, "the database (default: PGDATABASE)");
  undo->add_flag("--confirm", undo_args->confirm, kConfirmHelp);
  table.add(undo, [undo_args](const Invocation& in) { return restore_undo_cmd(in, *undo_args); });
}

}  // namespace backupctl
