#include "cli/app.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include <cstdlib>
#include <iostream>

#include "cli/commands.hpp"
#include "cli/output.hpp"
#include "config/config.hpp"
#include "pg/tools.hpp"
#include "util/env.hpp"
#include "util/error.hpp"
#include "util/format.hpp"
#include "util/fs.hpp"
#include "util/signals.hpp"
#include "version.hpp"

namespace backupctl {

namespace {

// CLI11's parse errors as ours: one line naming the argument, and a hint. An unknown word after a
// command with subcommands ("restore foo") is named as an unknown command of that one.
Error parse_error(CLI::App& app, const CLI::ParseError& e, int argc, char** argv) {
  // The deepest command that was given, and the first word after it that is not an option.
  CLI::App* at = &app;
  std::string path;
  int i = 1;
  for (; i < argc; ++i) {
    std::string word = argv[i];
    if (word.starts_with("-")) continue;
    CLI::App* sub = nullptr;
    try {
      sub = at->get_subcommand(word);
    } catch (const CLI::OptionNotFound&) {
    }
    if (sub == nullptr) break;
    at = sub;
    path += (path.empty() ? "" : " ") + word;
  }
  if (!at->get_subcommands({}).empty()) {
    std::string names;
    for (const CLI::App* s : at->get_subcommands({})) names += (names.empty() ? "" : ", ") + s->get_name();
    std::string help = " (`backupctl " + path + (path.empty() ? "" : " ") + "--help`)";
    if (i < argc) {
      return Error(ErrorCode::usage, "unknown command '" + (path.empty() ? "" : path + " ") + argv[i] + "'",
                   (path.empty() ? "the commands are: " : "`" + path + "` takes: ") + names + help);
    }
    return Error(ErrorCode::usage, (path.empty() ? std::string("no command given") : "`" + path + "` needs a command"),
                 "one of: " + names + help);
  }
  return Error(ErrorCode::usage, e.what(), "run `backupctl " + path + (path.empty() ? "" : " ") + "--help`");
}

}  // namespace

int run_cli(int argc, char** argv) {
  // First: a signal from now on stops the run cleanly instead of killing it.
  try {
    install_signal_handlers();
  } catch (const Error& e) {
    std::fprintf(stderr, "backupctl: error: %s\n", e.what());
    return exit_status(e.code());
  }
  Args args;
  CLI::App app{
      "backupctl: backup and restore for the document-archive stack (PostgreSQL, "
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
  auto* backup_objects_cmd =
      backup->add_subcommand("objects", "archive the attachments (S3 or disk)");
  auto* backup_config_cmd =
      backup->add_subcommand("config", "archive the config files (CONFIG_PATHS)");
  auto* backup_all_cmd = backup->add_subcommand("all", "db, objects and config as one backup set");
  for (auto* b : {backup_db_cmd, backup_objects_cmd, backup_config_cmd, backup_all_cmd}) {
    b->add_flag("--no-remote", args.no_remote, "no off-site copy this time (BACKUP_REMOTE_URL)");
  }
  auto* push_cmd = app.add_subcommand("push", "copy to BACKUP_REMOTE_URL what it lacks (resumes a copy cut short)");
  push_cmd->add_option("--set", args.push_set, "only this backup set (an id, or latest)");
  push_cmd->add_flag("--all", args.all, "every backup and set (the default)");
  push_cmd->add_flag("--take-over", args.take_over,
                     "this BACKUP_DIR replaces the one that wrote to the remote (a host rebuilt from it)");

  auto* verify = app.add_subcommand("verify", "check backups against their metas");
  verify->add_option("files", args.files, "backup files to check");
  verify->add_flag("--all", args.all, "every backup in BACKUP_DIR");
  verify->add_flag("--latest", args.latest, "the newest backup of each kind");
  verify->add_flag("--quick", args.quick, "database dumps: the table of contents only, not every data block");
  verify->add_flag("--remote", args.remote, "the off-site copies (BACKUP_REMOTE_URL): sizes and digests");
  verify->add_flag("--read-data", args.read_data, "with --remote: download every copy and check every byte");

  auto* list = app.add_subcommand("list", "list backups, newest first");
  list->add_option("--kind", args.kind, "only db, objects or config");
  list->add_flag("--remote", args.remote, "what the off-site copy (BACKUP_REMOTE_URL) holds, from its metas");

  auto* restore =
      app.add_subcommand("restore", "restore from a backup (guarded: needs CONFIRM=YES)");
  restore->require_subcommand(1);
  auto* restore_db_cmd = restore->add_subcommand("db", "restore the database from a dump");
  restore_db_cmd->add_option("--file,file", args.restore.file,
                             "the backup file (.dump, .dump.zst, .sql, .sql.gz)");
  restore_db_cmd->add_option("--target-db", args.restore.target_db,
                             "restore into this database (default: PGDATABASE / DATABASE_URL)");
  restore_db_cmd->add_flag("--in-place", args.restore.in_place,
                           "drop and recreate instead of swapping (a safety dump is taken first)");
  restore_db_cmd->add_flag("--online", args.restore.online,
                           "keep services running until the swap (seconds of downtime)");
  restore_db_cmd->add_flag("--allow-no-meta", args.restore.allow_no_meta,
                           "accept a dump without .meta (made elsewhere)");
  restore_db_cmd->add_flag("--allow-other-database", args.restore.allow_other_database,
                           "restore a dump of another database than PGDATABASE over it");
  restore_db_cmd->add_flag("--confirm", args.confirm, "the same as CONFIRM=YES");
  restore_db_cmd->add_flag("--remote", args.remote, "--file names a backup on BACKUP_REMOTE_URL: fetched first");
  auto* restore_objects_cmd =
      restore->add_subcommand("objects", "restore attachments from an archive");
  restore_objects_cmd->add_option("--file,file", args.restore_objects.file,
                                  "the objects_*.tar.gz backup");
  restore_objects_cmd->add_option(
      "--mode", args.restore_objects.mode,
      "merge (default): put every object; exact: also delete the others");
  restore_objects_cmd->add_option("--target", args.restore_objects.target,
                                  "elsewhere: a folder (disk) or BUCKET[/PREFIX] (S3)");
  restore_objects_cmd->add_flag("--allow-no-meta", args.restore_objects.allow_no_meta,
                                "accept an archive without .meta");
  restore_objects_cmd->add_flag("--confirm", args.confirm, "the same as CONFIRM=YES");
  restore_objects_cmd->add_flag("--remote", args.remote, "--file names a backup on BACKUP_REMOTE_URL: fetched first");
  auto* restore_config_cmd = restore->add_subcommand("config", "preview or apply a config backup");
  restore_config_cmd->add_option("--file,file", args.config_file, "the config_*.tar.gz backup");
  restore_config_cmd->add_option("--mode", args.config_mode,
                                 "preview (default) or apply (needs CONFIRM=YES)");
  restore_config_cmd->add_flag("--confirm", args.confirm, "the same as CONFIRM=YES");
  restore_config_cmd->add_flag("--remote", args.remote, "--file names a backup on BACKUP_REMOTE_URL: fetched first");
  auto* restore_all_cmd =
      restore->add_subcommand("all", "restore the db and attachments of a backup set");
  restore_all_cmd->add_option("--set", args.set, "a set id, or latest (default)");
  restore_all_cmd->add_flag("--allow-other-database", args.restore.allow_other_database,
                            "the set's dump may be of another database than PGDATABASE (with --set ID)");
  restore_all_cmd->add_flag("--confirm", args.confirm, "the same as CONFIRM=YES");
  restore_all_cmd->add_flag("--remote", args.remote, "the set on BACKUP_REMOTE_URL (recovery from nothing)");
  auto* restore_undo_cmd =
      restore->add_subcommand("undo", "put back the database a restore replaced");
  restore_undo_cmd->add_option("--target-db", args.restore.target_db,
                               "the database (default: PGDATABASE)");
  restore_undo_cmd->add_flag("--confirm", args.confirm, "the same as CONFIRM=YES");

  auto* check_cmd = app.add_subcommand("check", "run the post-restore checklist against the live system");
  auto* rehearse_cmd = app.add_subcommand("rehearse", "restore a set into staging, check it, remove it");
  rehearse_cmd->add_option("--set", args.set, "a set id, or latest (default)");
  rehearse_cmd->add_flag("--remote", args.remote, "rehearse the off-site copy of the set (fetched first)");
  auto* prune_cmd =
      app.add_subcommand("prune", "delete backups past retention (also after each backup)");
  prune_cmd->add_flag("--dry-run", args.dry_run, "say what would be deleted, delete nothing");
  prune_cmd->add_flag("--wrong-clock", args.wrong_clock,
                      "delete only the backups dated ahead of this host's clock, here and on the remote (CONFIRM=YES)");
  prune_cmd->add_flag("--confirm", args.confirm, "the same as CONFIRM=YES");
  auto* status_cmd =
      app.add_subcommand("status", "the newest good backups; exit 10 when one is too old");
  auto* repair_cmd = app.add_subcommand(
      "repair", "repair what an interrupted run left (every command does this first; this one says so)");
  repair_cmd->add_flag("--discard", args.discard,
                       "forget the journals that cannot be repaired (after repairing by hand; CONFIRM=YES)");
  repair_cmd->add_flag("--confirm", args.confirm, "the same as CONFIRM=YES");
  auto* schedule_cmd = app.add_subcommand("schedule", "print a crontab line or a systemd timer");
  schedule_cmd->add_flag("--cron", args.cron, "a crontab line");
  schedule_cmd->add_flag("--systemd", args.systemd, "a service and a timer");
  schedule_cmd->add_option("--time", args.time, "HH:MM, local time (default 03:15)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    Error err = parse_error(app, e, argc, argv);
    bool json = false;
    for (int i = 1; i < argc; ++i) json = json || std::string_view(argv[i]) == "--json";
    OutputOptions out;
    out.json = json;
    report_error(err, out);
    return exit_status(ErrorCode::usage);
  }

  setup_logging(args.out);
  try {
    if (!args.env_file.empty()) load_env_file(args.env_file);
    if (!args.backup_dir.empty()) ::setenv("BACKUP_DIR", args.backup_dir.c_str(), 1);
    if (!args.profile.empty()) ::setenv("BACKUP_PROFILE", args.profile.c_str(), 1);
    Config config = Config::from_environment();
    // Before anything else: what a run that died (kill -9, power loss) left is repaired, and said.
    if (!schedule_cmd->parsed()) {
      args.repair = repair_interrupted_runs(config, LockHeld::no);
      best_effort("cannot remove what a killed run left in the compose service",
                  [&] { remove_dead_service_folders(config); });
    }
    std::error_code ec;
    args.self = std::filesystem::canonical("/proc/self/exe", ec).string();
    if (args.self.empty()) args.self = argv[0];
    if (backup_db_cmd->parsed()) return cmd_backup_db(config, args);
    if (backup_objects_cmd->parsed()) return cmd_backup_objects(config, args);
    if (backup_config_cmd->parsed()) return cmd_backup_config(config, args);
    if (backup_all_cmd->parsed()) return cmd_backup_all(config, args);
    if (restore_objects_cmd->parsed()) return cmd_restore_objects(config, args);
    if (restore_config_cmd->parsed()) return cmd_restore_config(config, args);
    if (restore_all_cmd->parsed()) return cmd_restore_all(config, args);
    if (verify->parsed()) return cmd_verify(config, args);
    if (list->parsed()) return cmd_list(config, args);
    if (restore_db_cmd->parsed()) return cmd_restore_db(config, args);
    if (restore_undo_cmd->parsed()) return cmd_restore_undo(config, args);
    if (prune_cmd->parsed()) return cmd_prune(config, args);
    if (status_cmd->parsed()) return cmd_status(config, args);
    if (schedule_cmd->parsed()) return cmd_schedule(config, args);
    if (check_cmd->parsed()) return cmd_check(config, args);
    if (rehearse_cmd->parsed()) return cmd_rehearse(config, args);
    if (repair_cmd->parsed()) return cmd_repair(config, args);
    if (push_cmd->parsed()) return cmd_push(config, args);
    throw Error(ErrorCode::usage, "no command given", "run `backupctl --help`");
  } catch (const Error& e) {
    // After a signal, a failure of reading, writing or a child is its doing (a child it stopped
    // ended its output early, say): the run was interrupted, and says so with the signal's exit
    // status. Verdicts of their own (a repair needed, a failed check) keep theirs.
    const bool caused_by_signal = e.code() == ErrorCode::verification || e.code() == ErrorCode::io ||
                                  e.code() == ErrorCode::tool_failed || e.code() == ErrorCode::connection ||
                                  e.code() == ErrorCode::internal;
    if (caused_by_signal && interrupt_signal() != 0) {
      report_error(Error(ErrorCode::interrupted, "interrupted by " + signal_name(interrupt_signal()) + " (" + e.what() + ")",
                         e.hint()),
                   args.out);
      return 128 + interrupt_signal();
    }
    report_error(e, args.out);
    if (e.code() == ErrorCode::interrupted && interrupt_signal() != 0) {
      return 128 + interrupt_signal();
    }
    return exit_status(e.code());
  }
}

}  // namespace backupctl
