// wal check, wal stream: continuous protection's receiving side (command/wal_stream.hpp).
#include <fmt/format.h>

#include <iostream>

#include "cli/command.hpp"
#include "cli/output.hpp"
#include "command/wal_stream.hpp"
#include "command/wal_sync_guard.hpp"
#include "pg/target.hpp"
#include "util/error.hpp"

namespace backupctl {

namespace {

int wal_check_cmd(const Invocation& in) {
  const auto items = wal_check(in.config, PgTarget::from_environment());
  bool ok = true;
  nlohmann::json j = nlohmann::json::array();
  for (const auto& i : items) {
    ok = ok && i.ok;
    j.push_back({{"name", i.name}, {"ok", i.ok}, {"detail", i.detail}});
    if (!in.out.json) std::cout << fmt::format("{:<4} {:<24} {}\n", i.ok ? "ok" : "FAIL", i.name, i.detail);
  }
  if (in.out.json) print_json({{"ok", ok}, {"checks", j}});
  if (!ok) {
    throw Error(ErrorCode::check_failed, "the server is not ready for continuous protection",
                "set what the FAIL lines name, then run `backupctl wal check` again");
  }
  return 0;
}

}  // namespace

void add_wal_commands(CLI::App& app, CommandTable& table) {
  auto* wal = app.add_subcommand("wal", "continuous protection: the WAL receiver (BACKUP_WAL=stream)");
  wal->require_subcommand(1);
  auto* check = wal->add_subcommand("check", "say what the server must allow for the receiver");
  table.add(check, [](const Invocation& in) { return wal_check_cmd(in); });
  auto* stream = wal->add_subcommand("stream", "receive the WAL into BACKUP_DIR until SIGTERM (foreground)");
  table.add(stream, [](const Invocation& in) { return wal_stream(in.config, PgTarget::from_environment()); });
  // Started by `wal stream` with WAL_SYNCHRONOUS=yes (command/wal_sync_guard.hpp); not for people.
  auto* guard = wal->add_subcommand("sync-guard", "");
  guard->group("");
  table.add(guard, [](const Invocation& in) { return wal_sync_guard(in.config, PgTarget::from_environment()); });
}

}  // namespace backupctl
