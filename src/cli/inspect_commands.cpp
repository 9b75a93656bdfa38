// list, verify, status, check: the commands that look and judge. Only `verify --remote
// --read-data` writes into BACKUP_DIR (a scratch copy), inside a RunScope.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <iostream>
#include <memory>
#include <optional>

#include "catalog/naming.hpp"
#include "check/checklist.hpp"
#include "cli/command.hpp"
#include "command/list.hpp"
#include "command/remote.hpp"
#include "command/status.hpp"
#include "command/verify.hpp"
#include "command/verify_wal.hpp"
#include "pg/target.hpp"
#include "run/run.hpp"
#include "util/error.hpp"
#include "util/time.hpp"

namespace backupctl {

namespace {

struct ListArgs {
  std::string kind;     // --kind db|objects|config
  bool remote = false;  // what the off-site copy holds
};

struct VerifyArgs {
  std::vector<std::string> files;
  bool all = false;
  bool latest = false;
  bool quick = false;
  bool remote = false;
  bool read_data = false;  // with --remote: every byte
  bool wal = false;        // the WAL kept for point-in-time recovery
};

int list_cmd(const Invocation& in, const ListArgs& args) {
  const Config& config = in.config;
  std::optional<Kind> kind;
  if (!args.kind.empty()) {
    kind = parse_kind(args.kind);
    if (!kind) {
      throw Error(ErrorCode::usage, "unknown kind '" + args.kind + "'", "use db, objects or config");
    }
  }
  if (args.remote) {
    auto remote = make_remote(config);
    auto entries = remote_catalog(config, *remote);
    if (kind) std::erase_if(entries, [&](const RemoteEntry& e) { return e.kind != *kind; });
    if (in.out.json) {
      print_json(remote_json(entries, config.remote->url));
    } else {
      std::cout << "remote " << config.remote->url << ":\n" << remote_table(entries);
    }
    return 0;
  }
  auto entries = list_backups(config, kind);
  if (in.out.json) {
    print_json(backups_json(entries, config.backup_dir));
  } else {
    std::cout << backups_table(entries, config.backup_dir);
  }
  return 0;
}

int verify_remote_cmd(const Invocation& in, const VerifyArgs& args) {
  const Config& config = in.config;
  auto remote = make_remote(config);
  auto progress = make_progress(in.out);
  // --read-data writes into BACKUP_DIR (a scratch copy of each backup in turn): inside a RunScope,
  // as every run that writes there.
  std::optional<RunScope> scope;
  if (args.read_data) scope.emplace(config, "verify --remote --read-data");
  auto verdicts = verify_remote(config, *remote, args.read_data, *progress, scope ? &scope->journal() : nullptr);
  nlohmann::json results = nlohmann::json::array();
  bool all_ok = !verdicts.empty();
  for (const auto& v : verdicts) {
    all_ok = all_ok && v.ok;
    results.push_back({{"name", v.name}, {"ok", v.ok}, {"detail", v.detail}});
    if (!in.out.json) std::cout << fmt::format("{:<4}  {}  {}\n", v.ok ? "OK" : "FAIL", v.name, v.detail);
  }
  if (in.out.json) {
    print_json({{"ok", all_ok}, {"remote", config.remote->url}, {"read_data", args.read_data}, {"results", results}});
  }
  RunState state = RunState::load(config.backup_dir);
  const char* kind = args.read_data ? "remote_verify_data" : "remote_verify";
  if (all_ok) {
    state.record_success(kind, 0, verdicts.size(), config.remote->url);
  } else {
    state.record_failure(kind, verdicts.empty() ? "no backups on the remote" : "a copy failed its check");
  }
  record_state(config, state);
  if (verdicts.empty()) {
    throw Error(ErrorCode::not_found, "no backups on the remote " + config.remote->url, "`backupctl push --all` copies them");
  }
  if (!all_ok) {
    spdlog::error("verify --remote: {} of {} failed",
                  std::count_if(verdicts.begin(), verdicts.end(), [](const auto& v) { return !v.ok; }), verdicts.size());
  }
  return all_ok ? 0 : exit_status(ErrorCode::verification);
}

int verify_cmd(const Invocation& in, const VerifyArgs& args) {
  const Config& config = in.config;
  if (args.read_data && !args.remote) {
    throw Error(ErrorCode::usage, "--read-data goes with --remote", "a local verify reads every byte already: backupctl verify --all");
  }
  if (args.remote) return verify_remote_cmd(in, args);
  if (args.wal) {
    if (args.all || args.latest || !args.files.empty()) throw Error(ErrorCode::usage, "verify --wal takes no files", "backupctl verify --wal");
    WalVerifyReport r = verify_wal(config, !args.quick);
    if (in.out.json) {
      print_json(r.json);
    } else {
      std::cout << r.text;
    }
    if (!r.ok) throw Error(ErrorCode::verification, "verify --wal: the WAL kept does not reach from the newest base backup to the newest WAL",
                           "see the lines above; a base backup now starts a new window (`backupctl backup base`)");
    return 0;
  }
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
      throw Error(ErrorCode::usage, "verify needs a FILE, --all or --latest", "e.g. backupctl verify --latest");
    }
    for (const auto& f : args.files) files.emplace_back(f);
  }
  auto progress = make_progress(in.out);
  nlohmann::json results = nlohmann::json::array();
  bool all_ok = true;
  for (const fs::path& f : files) {
    VerifyVerdict v = verify_backup(config, f, *progress, args.quick ? VerifyDepth::quick : VerifyDepth::full);
    all_ok = all_ok && v.ok;
    results.push_back({{"file", v.file.string()}, {"kind", v.kind}, {"ok", v.ok}, {"detail", v.detail}});
    if (!in.out.json) {
      std::cout << fmt::format("{:<4}  {:<7}  {}  {}\n", v.ok ? "OK" : "FAIL", v.kind, v.file.string(), v.detail);
    }
  }
  if (in.out.json) print_json({{"ok", all_ok}, {"results", results}});
  RunState state = RunState::load(config.backup_dir);
  state.record_verify(all_ok);
  record_state(config, state);
  if (!all_ok) {
    spdlog::error("verify: {} of {} failed",
                  std::count_if(results.begin(), results.end(), [](const auto& r) { return !r["ok"]; }),
                  results.size());
  }
  return all_ok ? 0 : exit_status(ErrorCode::verification);
}

int status_cmd(const Invocation& in) {
  const Config& config = in.config;
  StatusReport r = backup_status(config, Clock::now());
  // What the repair at start-up found (it ran before this command; status says what is left).
  std::vector<std::string> pending = in.repair.in_progress ? std::vector<std::string>{} : pending_repairs(config);
  r.json["repairs_pending"] = pending;
  r.json["run_in_progress"] = in.repair.in_progress;
  r.json["repaired"] = in.repair.lines;
  if (!pending.empty()) r.json["ok"] = false;
  if (in.out.json) {
    print_json(r.json);
  } else {
    std::cout << r.describe();
    if (in.repair.in_progress) std::cout << "  a backupctl run is in progress (it holds the lock)\n";
    for (const auto& l : in.repair.lines) std::cout << "  repaired: " << l << "\n";
    for (const auto& p : pending) std::cout << "  REPAIR NEEDED: " << p << "\n";
    if (!pending.empty()) {
      std::cout << "  resolve it: fix the cause named above, then `backupctl repair`; once repaired by hand, "
                   "`CONFIRM=YES backupctl repair --discard`\n";
    }
  }
  if (!pending.empty()) return exit_status(ErrorCode::repair_needed);
  if (r.wrong_clock) return exit_status(ErrorCode::wrong_clock);
  return r.stale ? exit_status(ErrorCode::stale) : 0;
}

int check_cmd(const Invocation& in) {
  const Config& config = in.config;
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
  if (in.out.json) {
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

}  // namespace

void add_inspect_commands(CLI::App& app, CommandTable& table) {
  auto verify_args = std::make_shared<VerifyArgs>();
  auto* verify = app.add_subcommand("verify", "check backups against their metas");
  verify->add_option("files", verify_args->files, "backup files to check");
  verify->add_flag("--all", verify_args->all, "every backup in BACKUP_DIR");
  verify->add_flag("--latest", verify_args->latest, "the newest backup of each kind");
  verify->add_flag("--quick", verify_args->quick, "database dumps: the table of contents only, not every data block");
  verify->add_flag("--remote", verify_args->remote, "the off-site copies (BACKUP_REMOTE_URL): sizes and digests");
  verify->add_flag("--wal", verify_args->wal,
                   "point-in-time recovery: the WAL kept reaches from every base backup to the newest WAL, each segment read");
  verify->add_flag("--read-data", verify_args->read_data, "with --remote: download every copy and check every byte");
  table.add(verify, [verify_args](const Invocation& in) { return verify_cmd(in, *verify_args); });

  auto list_args = std::make_shared<ListArgs>();
  auto* list = app.add_subcommand("list", "list backups, newest first");
  list->add_option("--kind", list_args->kind, "only db, objects or config");
  list->add_flag("--remote", list_args->remote, "what the off-site copy (BACKUP_REMOTE_URL) holds, from its metas");
  table.add(list, [list_args](const Invocation& in) { return list_cmd(in, *list_args); });

  table.add(app.add_subcommand("status", "the newest good backups; exit 10 when one is too old"), status_cmd);
  table.add(app.add_subcommand("check", "run the post-restore checklist against the live system"), check_cmd);
}

}  // namespace backupctl
