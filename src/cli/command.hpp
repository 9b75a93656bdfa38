// What the command groups share. Each group (backup_commands.cpp, restore_commands.cpp,
// inspect_commands.cpp, maintain_commands.cpp) adds its subcommands to the CLI11 app with options
// of its own, and a handler for each: a new option touches one file. app.cpp parses, loads the
// configuration, runs the repair at start-up and calls the handler of the command given.
// Handlers parse nothing and change nothing themselves: the work is command/'s, run inside the
// run policy (run/run.hpp); they print its result (human or --json) and return the exit status.
#pragma once

#include <nlohmann/json.hpp>
#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <vector>

#include "cli/output.hpp"
#include "command/repair.hpp"
#include "config/config.hpp"

namespace backupctl {

// What every handler gets besides its own options.
struct Invocation {
  const Config& config;
  const OutputOptions& out;
  const RepairOutcome& repair;  // what the repair at start-up found and did
  std::string self;             // this program, resolved (for `schedule`)
  std::string env_file;         // --env-file (for `schedule`)
};

using Handler = std::function<int(const Invocation&)>;

struct CommandTable {
  std::vector<std::pair<CLI::App*, Handler>> commands;
  std::vector<CLI::App*> without_repair;  // commands that touch no BACKUP_DIR (schedule)
  void add(CLI::App* cmd, Handler handler) { commands.emplace_back(cmd, std::move(handler)); }
};

void add_backup_commands(CLI::App& app, CommandTable& table);    // backup db|objects|config|all, push
void add_restore_commands(CLI::App& app, CommandTable& table);   // restore db|objects|config|all|undo
void add_inspect_commands(CLI::App& app, CommandTable& table);   // list, verify, status, check
void add_maintain_commands(CLI::App& app, CommandTable& table);  // prune, repair, rehearse, schedule
void add_wal_commands(CLI::App& app, CommandTable& table);       // wal check|stream

// Without CONFIRM=YES (or --confirm) a command that changes live state prints its plan and stops,
// having changed nothing: Error(confirmation_required) with `how` to go ahead as the hint.
void require_confirmation(const Invocation& in, bool confirm_flag, const std::string& plan,
                          const nlohmann::json& plan_json, const std::string& how);

}  // namespace backupctl
