#include "cli/app.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdlib>
#include <iostream>

#include "cli/command.hpp"
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

// Reports a command's failure and returns its exit status. After a signal, a failure of reading,
// writing or a child is its doing (a child it stopped ended its output early, say): the run was
// interrupted, and says so with the signal's exit status. Verdicts of their own (a repair needed,
// a failed check) keep theirs.
int report_failure(const Error& e, const OutputOptions& out) {
  const bool caused_by_signal = e.code() == ErrorCode::verification || e.code() == ErrorCode::io ||
                                e.code() == ErrorCode::tool_failed || e.code() == ErrorCode::connection ||
                                e.code() == ErrorCode::internal;
  if (caused_by_signal && interrupt_signal() != 0) {
    report_error(Error(ErrorCode::interrupted, "interrupted by " + signal_name(interrupt_signal()) + " (" + e.what() + ")",
                       e.hint()),
                 out);
    return 128 + interrupt_signal();
  }
  report_error(e, out);
  if (e.code() == ErrorCode::interrupted && interrupt_signal() != 0) return 128 + interrupt_signal();
  return exit_status(e.code());
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
  OutputOptions out;
  std::string env_file, backup_dir, profile;
  CLI::App app{
      "backupctl: backup and restore for the document-archive stack (PostgreSQL, "
      "attachments, config)"};
  app.set_version_flag("--version", kVersion);
  app.fallthrough();
  app.require_subcommand(1);
  app.add_option("--env-file", env_file, "read KEY=VALUE settings from this file (the environment wins)");
  app.add_option("--backup-dir", backup_dir, "overrides BACKUP_DIR");
  app.add_option("--profile", profile, "overrides BACKUP_PROFILE");
  app.add_flag("--json", out.json, "machine-readable output on stdout");
  app.add_flag("-q,--quiet", out.quiet, "only warnings and errors");
  app.add_flag("-v,--verbose", out.verbose, "debug logging");
  CommandTable table;
  add_backup_commands(app, table);
  add_restore_commands(app, table);
  add_inspect_commands(app, table);
  add_maintain_commands(app, table);
  add_wal_commands(app, table);

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
    OutputOptions parse_out;
    parse_out.json = json;
    report_error(err, parse_out);
    return exit_status(ErrorCode::usage);
  }

  setup_logging(out);
  try {
    if (!env_file.empty()) load_env_file(env_file);
    if (!backup_dir.empty()) ::setenv("BACKUP_DIR", backup_dir.c_str(), 1);
    if (!profile.empty()) ::setenv("BACKUP_PROFILE", profile.c_str(), 1);
    Config config = Config::from_environment();
    auto given = std::find_if(table.commands.begin(), table.commands.end(), [](const auto& c) { return c.first->parsed(); });
    if (given == table.commands.end()) throw Error(ErrorCode::usage, "no command given", "run `backupctl --help`");
    // Before anything else: what a run that died (kill -9, power loss) left is repaired, and said.
    RepairOutcome repair;
    if (std::find(table.without_repair.begin(), table.without_repair.end(), given->first) == table.without_repair.end()) {
      repair = repair_interrupted_runs(config, LockHeld::no);
      best_effort("cannot remove what a killed run left in the compose service",
                  [&] { remove_dead_service_folders(config); });
    }
    std::error_code ec;
    std::string self = std::filesystem::canonical("/proc/self/exe", ec).string();
    if (self.empty()) self = argv[0];
    return given->second(Invocation{config, out, repair, self, env_file});
  } catch (const Error& e) {
    return report_failure(e, out);
  }
}

}  // namespace backupctl
