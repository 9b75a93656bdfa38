#include "cli/app.hpp"

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <sys/resource.h>

#include <cstdlib>
#include <iostream>

#include "catalog/naming.hpp"
#include "cli/output.hpp"
#include "command/backup_db.hpp"
#include "command/backup_objects.hpp"
#include "command/restore_objects.hpp"
#include "storage/disk/disk_store.hpp"
#include "command/list.hpp"
#include "command/restore_db.hpp"
#include "command/verify.hpp"
#include "config/config.hpp"
#include "pg/target.hpp"
#include "util/env.hpp"
#include "util/error.hpp"
#include "util/format.hpp"
#include "util/fs.hpp"
#include "util/signals.hpp"
#include "version.hpp"

namespace backupctl {
namespace {

struct Args {
  OutputOptions out;
  std::string env_file;
  std::string backup_dir;
  std::string profile;
  // verify
  std::vector<std::string> files;
  bool all = false;
  bool latest = false;
  // list
  std::string kind;
  // restore
  RestoreDbOptions restore;
  RestoreObjectsOptions restore_objects;
  bool confirm = false;
};

// Peak resident memory of this process (all threads, not its children), for the benchmarks.
long peak_rss_kib() {
  struct rusage ru{};
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
  double rate = r.meta.duration_seconds > 0
                    ? static_cast<double>(r.meta.size) / r.meta.duration_seconds
                    : 0;
  std::cout << fmt::format("{} backup: {}\n  size {}, sha256 {}, {}, {} ({}/s), set {}\n",
                           r.meta.kind, r.file.string(), human_bytes(r.meta.size), r.meta.sha256,
                           r.meta.compression, human_duration(r.meta.duration_seconds),
                           human_bytes(static_cast<std::uint64_t>(rate)), r.meta.set_id);
}

int cmd_backup_db(const Config& config, const Args& args) {
  PgTarget target = PgTarget::from_environment();
  auto progress = make_progress(args.out);
  BackupResult r = backup_db(config, target, *progress);
  if (args.out.json) {
    print_json(backup_json(r));
  } else if (!args.out.quiet) {
    print_backup(r);
  }
  return 0;
}

int cmd_verify(const Config& config, const Args& args) {
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
    VerifyVerdict v = verify_backup(config, f, *progress);
    all_ok = all_ok && v.ok;
    results.push_back({{"file", v.file.string()}, {"kind", v.kind}, {"ok", v.ok}, {"detail", v.detail}});
    if (!args.out.json) {
      std::cout << fmt::format("{:<4}  {:<7}  {}  {}\n", v.ok ? "OK" : "FAIL", v.kind,
                               v.file.string(), v.detail);
    }
  }
  if (args.out.json) print_json({{"ok", all_ok}, {"results", results}});
  if (!all_ok) {
    spdlog::error("verify: {} of {} failed", std::count_if(results.begin(), results.end(),
                                                          [](const auto& r) { return !r["ok"]; }),
                  results.size());
  }
  return all_ok ? 0 : exit_status(ErrorCode::verification);
}

int cmd_list(const Config& config, const Args& args) {
  std::optional<Kind> kind;
  if (!args.kind.empty()) {
    kind = parse_kind(args.kind);
    if (!kind) {
      throw Error(ErrorCode::usage, "unknown kind '" + args.kind + "'", "use db, objects or config");
    }
  }
  auto entries = list_backups(config, kind);
  if (args.out.json) {
    print_json(backups_json(entries));
  } else {
    std::cout << backups_table(entries, config.backup_dir);
  }
  return 0;
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

int cmd_restore_db(const Config& config, const Args& args) {
  if (args.restore.file.empty()) {
    throw Error(ErrorCode::usage, "no backup file given",
                "make restore-db BACKUP_FILE=infra/data/backup/db/archive_<db>_<ts>.dump CONFIRM=YES "
                "(`backupctl list` shows the backups)");
  }
  PgTarget target = PgTarget::from_environment();
  auto progress = make_progress(args.out);
  RestorePlan plan = plan_restore_db(config, target, args.restore, *progress);
  require_confirmation(config, args, plan.describe(), plan.to_json(),
                       "make restore-db BACKUP_FILE=" + args.restore.file.string() +
                           " CONFIRM=YES (or backupctl restore db --confirm)");
  RestoreReport report = run_restore_db(config, target, plan, args.restore, *progress);
  if (args.out.json) {
    print_json(report.to_json());
  } else {
    std::cout << report.describe();
  }
  return 0;
}

int cmd_backup_objects(const Config& config, const Args& args) {
  auto store = make_object_store(config);
  auto progress = make_progress(args.out);
  BackupResult r = backup_objects(config, *store, *progress);
  if (args.out.json) {
    print_json(backup_json(r));
  } else if (!args.out.quiet) {
    print_backup(r);
  }
  return 0;
}

int cmd_restore_objects(const Config& config, const Args& args) {
  const RestoreObjectsOptions& options = args.restore_objects;
  if (options.file.empty()) {
    throw Error(ErrorCode::usage, "no backup file given",
                "make restore-objects BACKUP_FILE=infra/data/backup/objects/objects_<label>_<ts>.tar.gz CONFIRM=YES");
  }
  // For the disk store, --target is another folder (a rehearsal copy).
  std::unique_ptr<ObjectStore> store;
  if (config.object_storage == ObjectStorage::disk && !options.target.empty()) {
    make_dirs(options.target, 0755);
    store = std::make_unique<DiskStore>(options.target);
  } else {
    store = make_object_store(config);
  }
  auto progress = make_progress(args.out);
  ObjectsPlan plan = plan_restore_objects(config, *store, options, *progress);
  require_confirmation(config, args, plan.describe(), plan.to_json(),
                       "make restore-objects BACKUP_FILE=" + options.file.string() +
                           " CONFIRM=YES (or backupctl restore objects --confirm)");
  ObjectsReport report = run_restore_objects(config, *store, plan, *progress);
  if (args.out.json) {
    print_json(report.to_json());
  } else {
    std::cout << report.describe();
  }
  return 0;
}

int cmd_restore_undo(const Config& config, const Args& args) {
  PgTarget target = PgTarget::from_environment();
  UndoPlan plan = plan_restore_undo(config, target, args.restore.target_db);
  require_confirmation(config, args, plan.describe(),
                       {{"target", plan.target}, {"previous", plan.previous}, {"keep_as", plan.keep_as}},
                       "CONFIRM=YES backupctl restore undo (or --confirm)");
  RestoreReport report = run_restore_undo(config, target, plan);
  if (args.out.json) {
    print_json(report.to_json());
  } else {
    std::cout << fmt::format("{} is back as {}; the database it replaced is kept as {}\n",
                             plan.previous, plan.target, plan.keep_as);
  }
  return 0;
}

}  // namespace

int run_cli(int argc, char** argv) {
  Args args;
  CLI::App app{"backupctl: backup and restore for the document-archive stack (PostgreSQL, "
               "attachments, config)"};
  app.set_version_flag("--version", kVersion);
  app.fallthrough();
  app.require_subcommand(1);
  app.add_option("--env-file", args.env_file,
                 "read KEY=VALUE settings from this file (the environment wins)");
  app.add_option("--backup-dir", args.backup_dir, "overrides BACKUP_DIR");
  app.add_option("--profile", args.profile, "overrides BACKUP_PROFILE");
  app.add_flag("--json", args.out.json, "machine-readable output on stdout");
  app.add_flag("-q,--quiet", args.out.quiet, "only warnings and errors");
  app.add_flag("-v,--verbose", args.out.verbose, "debug logging");

  auto* backup = app.add_subcommand("backup", "make a backup");
  backup->require_subcommand(1);
  auto* backup_db_cmd = backup->add_subcommand("db", "dump the PostgreSQL database");
  auto* backup_objects_cmd = backup->add_subcommand("objects", "archive the attachments (S3 or disk)");

  auto* verify = app.add_subcommand("verify", "check backups against their metas");
  verify->add_option("files", args.files, "backup files to check");
  verify->add_flag("--all", args.all, "every backup in BACKUP_DIR");
  verify->add_flag("--latest", args.latest, "the newest backup of each kind");

  auto* list = app.add_subcommand("list", "list backups, newest first");
  list->add_option("--kind", args.kind, "only db, objects or config");

  auto* restore = app.add_subcommand("restore", "restore from a backup (guarded: needs CONFIRM=YES)");
  restore->require_subcommand(1);
  auto* restore_db_cmd = restore->add_subcommand("db", "restore the database from a dump");
  restore_db_cmd->add_option("--file,file", args.restore.file, "the backup file (.dump, .dump.zst, .sql, .sql.gz)");
  restore_db_cmd->add_option("--target-db", args.restore.target_db,
                             "restore into this database (default: PGDATABASE / DATABASE_URL)");
  restore_db_cmd->add_flag("--in-place", args.restore.in_place,
                           "drop and recreate instead of swapping (a safety dump is taken first)");
  restore_db_cmd->add_flag("--online", args.restore.online,
                           "keep services running until the swap (seconds of downtime)");
  restore_db_cmd->add_flag("--allow-no-meta", args.restore.allow_no_meta,
                           "accept a dump without .meta (made elsewhere)");
  restore_db_cmd->add_flag("--confirm", args.confirm, "the same as CONFIRM=YES");
  auto* restore_objects_cmd = restore->add_subcommand("objects", "restore attachments from an archive");
  restore_objects_cmd->add_option("--file,file", args.restore_objects.file, "the objects_*.tar.gz backup");
  restore_objects_cmd->add_option("--mode", args.restore_objects.mode,
                                  "merge (default): put every object; exact: also delete the others");
  restore_objects_cmd->add_option("--target", args.restore_objects.target,
                                  "elsewhere: a folder (disk) or BUCKET[/PREFIX] (S3)");
  restore_objects_cmd->add_flag("--allow-no-meta", args.restore_objects.allow_no_meta,
                                "accept an archive without .meta");
  restore_objects_cmd->add_flag("--confirm", args.confirm, "the same as CONFIRM=YES");
  auto* restore_undo_cmd = restore->add_subcommand("undo", "put back the database a restore replaced");
  restore_undo_cmd->add_option("--target-db", args.restore.target_db, "the database (default: PGDATABASE)");
  restore_undo_cmd->add_flag("--confirm", args.confirm, "the same as CONFIRM=YES");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "backupctl: error: %s\nhint: run `backupctl --help`\n", e.what());
    return exit_status(ErrorCode::usage);
  }

  setup_logging(args.out);
  try {
    install_signal_handlers();
    if (!args.env_file.empty()) load_env_file(args.env_file);
    if (!args.backup_dir.empty()) ::setenv("BACKUP_DIR", args.backup_dir.c_str(), 1);
    if (!args.profile.empty()) ::setenv("BACKUP_PROFILE", args.profile.c_str(), 1);
    Config config = Config::from_environment();
    if (backup_db_cmd->parsed()) return cmd_backup_db(config, args);
    if (backup_objects_cmd->parsed()) return cmd_backup_objects(config, args);
    if (restore_objects_cmd->parsed()) return cmd_restore_objects(config, args);
    if (verify->parsed()) return cmd_verify(config, args);
    if (list->parsed()) return cmd_list(config, args);
    if (restore_db_cmd->parsed()) return cmd_restore_db(config, args);
    if (restore_undo_cmd->parsed()) return cmd_restore_undo(config, args);
    throw Error(ErrorCode::usage, "no command given", "run `backupctl --help`");
  } catch (const Error& e) {
    report_error(e, args.out);
    if (e.code() == ErrorCode::interrupted && interrupt_signal() != 0) {
      return 128 + interrupt_signal();
    }
    return exit_status(e.code());
  }
}

}  // namespace backupctl
