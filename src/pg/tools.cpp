#include "pg/tools.hpp"

#include <sys/stat.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <regex>
#include <set>
#include <sstream>

#include "io/age.hpp"
#include "io/zstd.hpp"
#include "service/compose.hpp"
#include "util/env.hpp"
#include "util/error.hpp"
#include "util/fault.hpp"
#include "util/fs.hpp"
#include "util/process.hpp"
#include "util/signals.hpp"
#include "util/words.hpp"

namespace backupctl {

namespace fs = std::filesystem;

std::optional<PgTool> parse_tool_version(std::string_view text) {
  static const std::regex re(R"(\(PostgreSQL\)\s+(\d+)(\.\d+)?(\.\d+)?)");
  std::string s(text);
  std::smatch m;
  if (!std::regex_search(s, m, re)) return std::nullopt;
  PgTool t;
  t.major = std::stoi(m[1]);
  t.version = m[1].str() + m[2].str() + m[3].str();
  return t;
}

namespace {

PgTool probe(const std::string& path, std::string_view name) {
  RunResult r = run_command({.argv = {path, "--version"}});
  auto parsed = r.status.ok() ? parse_tool_version(r.out) : std::nullopt;
  if (!parsed) {
    throw Error(ErrorCode::tool_failed,
                fmt::format("cannot tell the version of {} ({}): {}", name, path,
                            first_line(r.err.empty() ? r.out : r.err)),
                "check that it is a PostgreSQL client program");
  }
  parsed->path = path;
  return *parsed;
}

bool executable(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec) && ::access(p.c_str(), X_OK) == 0;
}


PgTool find_host_tool(std::string_view name, int server_major, const Config& config) {
  std::string candidate;
  if (config.pg_bindir) {
    fs::path p = *config.pg_bindir / std::string(name);
    if (!executable(p)) {
      throw Error(ErrorCode::not_found, fmt::format("{} not found in PG_BINDIR={}", name,
                                                    config.pg_bindir->string()),
                  "point PG_BINDIR at the bin directory of a PostgreSQL client installation");
    }
    candidate = p.string();
  } else {
    const fs::path debian = "/usr/lib/postgresql";
    int best = 0;
    std::error_code ec;
    if (fs::is_directory(debian, ec)) {
      for (const auto& de : fs::directory_iterator(debian, ec)) {
        std::string v = de.path().filename().string();
        if (v.empty() || v.find_first_not_of("0123456789") != std::string::npos) continue;
        int major = std::stoi(v);
        if (!executable(de.path() / "bin" / std::string(name))) continue;
        if (major == server_major) {
          best = major;
          break;
        }
        if (major >= server_major && (best == 0 || major > best)) best = major;
      }
    }
    candidate = best > 0 ? (debian / std::to_string(best) / "bin" / std::string(name)).string()
                         : std::string(name);
  }
  PgTool tool = probe(candidate, name);
  if (server_major > 0 && tool.major < server_major) {
    throw Error(ErrorCode::usage,
                fmt::format("{} {} ({}) is older than the server (PostgreSQL {}) and cannot work "
                            "with it",
                            name, tool.version, tool.path, server_major),
                fmt::format("install the client of version {0} or newer (Debian: apt-get install "
                            "postgresql-client-{0}) or set PG_BINDIR to its bin directory",
                            server_major));
  }
  return tool;
}

// The connection settings a program in the service gets, by name: where the server is (PGHOST,
// PGPORT) is the container's own business.
constexpr const char* kServiceEnv[] = {"PGUSER", "PGPASSWORD", "PGDATABASE", "PGOPTIONS", "PGCONNECT_TIMEOUT", "PGAPPNAME"};

// `compose … exec -T -e PGUSER … <PG_SERVICE>`: how a program runs in the service.
std::vector<std::string> service_prefix(const Config& config) {
  std::vector<std::string> rest = {"exec", "-T"};
  for (const char* v : kServiceEnv) {
    rest.push_back("-e");
    rest.push_back(v);
  }
  rest.push_back(config.pg_service);
  return compose_argv(config, rest);
}

// Where ToolFiles records each folder it makes in the service before it makes it.
fs::path service_records(const Config& config) { return config.backup_dir / ".service-tmp"; }

PgTool find_service_tool(std::string_view name, int server_major, const Config& config) {
  PgTool tool;
  tool.prefix = service_prefix(config);
  tool.path = std::string(name);
  // Asked once per program and process (each ask is a compose exec, ~0.5 s).
  static std::mutex mutex;
  static std::map<std::string, PgTool> asked;
  std::lock_guard<std::mutex> lock(mutex);
  std::string key = join_words(tool.argv({}));
  if (auto it = asked.find(key); it != asked.end()) {
    tool = it->second;
  } else {
    RunResult r = run_command({.argv = tool.argv({"--version"})});
    auto parsed = r.status.ok() ? parse_tool_version(r.out) : std::nullopt;
    if (!parsed) {
      throw Error(ErrorCode::not_found,
                  fmt::format("cannot run {} in the compose service {}: {}", name, config.pg_service,
                              first_line(last_lines(r.err.empty() ? r.out : r.err, 1))),
                  "is the stack up (`" + join_words(compose_argv(config, {"ps"})) +
                      "`)? PG_SERVICE names the service that runs PostgreSQL");
    }
    tool.version = parsed->version;
    tool.major = parsed->major;
    asked[key] = tool;
  }
  tool.records = service_records(config);
  if (server_major > 0 && tool.major < server_major) {
    throw Error(ErrorCode::usage,
                fmt::format("{} {} in the compose service {} is older than the server (PostgreSQL {})", name,
                            tool.version, config.pg_service, server_major),
                "PG_SERVICE must name the service that runs the server");
  }
  return tool;
}

}  // namespace

std::vector<std::string> PgTool::argv(const std::vector<std::string>& args) const {
  std::vector<std::string> out = prefix;
  out.push_back(path);
  out.insert(out.end(), args.begin(), args.end());
  return out;
}

std::string PgTool::name() const { return path.substr(path.rfind('/') + 1); }

std::string PgTool::describe() const {
  if (!in_service()) return fmt::format("{} {} ({})", name(), version, path);
  return fmt::format("{} {} (in the compose service {})", name(), version, prefix.back());
}

PgTool find_pg_tool(std::string_view name, int server_major, const Config& config) {
  if (config.pg_tools == PgTools::compose) return find_service_tool(name, server_major, config);
  try {
    return find_host_tool(name, server_major, config);
  } catch (const Error& host) {
    if (host.code() != ErrorCode::not_found && host.code() != ErrorCode::usage) throw;
    std::string hint = host.hint() + "; or PG_TOOLS=compose, to run it inside the stack's " + config.pg_service + " service";
    if (config.pg_tools == PgTools::host || config.service_control != ServiceControl::compose) {
      throw Error(host.code(), host.what(), hint);
    }
    try {
      PgTool tool = find_service_tool(name, server_major, config);
      spdlog::info("{}; using {} instead", host.what(), tool.describe());
      return tool;
    } catch (const Error& service) {
      throw Error(host.code(), std::string(host.what()) + "; in the compose service: " + service.what(), hint);
    }
  }
}

namespace {

// Another program in the service's container (mktemp, tee, rm), run like the tool.
std::vector<std::string> in_container(const PgTool& tool, std::vector<std::string> args) {
  std::vector<std::string> out = tool.prefix;
  out.insert(out.end(), args.begin(), args.end());
  return out;
}

}  // namespace

// The folders of runs that died (SIGKILL: their ToolFiles never removed them). Each is named
// after its run (run_tag: boot, pid namespace and pid), so one whose run is gone is known; those
// of live runs stay, and those of runs elsewhere (another container or machine) until two days old.
// Once per process, before its first folder.
// False when the service could not be asked (its folders are then left for another time).
bool remove_dead_runs_folders(const PgTool& tool) {
  static std::atomic<bool> done{false};
  if (done.exchange(true)) return true;
  bool asked = true;
  auto find = [&](std::vector<std::string> more) {
    std::vector<std::string> argv = {"find", "/tmp", "-maxdepth", "1", "-type", "d", "-name", "backupctl.*"};
    argv.insert(argv.end(), more.begin(), more.end());
    RunResult r = run_command({.argv = in_container(tool, argv)});
    asked = asked && r.status.ok();
    std::set<std::string> out;
    std::istringstream lines(r.out);
    for (std::string dir; r.status.ok() && std::getline(lines, dir);) out.insert(dir);
    return out;  // a failure is not worth failing the restore for
  };
  std::vector<std::string> doomed, elsewhere;
  for (const std::string& dir : find({})) {
    // "/tmp/backupctl.<run tag>.<random>" (or "<pid>.<random>" of older versions): anything else
    // is not ours to judge.
    static const std::regex ours(R"(/tmp/backupctl\.(([0-9a-f]{8}\.[0-9]{1,20}\.)?[0-9]{1,9})\.[A-Za-z0-9]{6})");
    std::smatch m;
    if (!std::regex_match(dir, m, ours)) continue;
    const std::string tag = m[1].str();
    if (!run_is_here(tag)) {
      elsewhere.push_back(dir);
    } else if (run_is_gone(tag)) {
      doomed.push_back(dir);
    }
  }
  if (!elsewhere.empty()) {
    // Two days old: whatever run made it (in another container, or before run tags) is done.
    const std::set<std::string> old = find({"-mmin", "+2880"});
    for (const std::string& dir : elsewhere) {
      if (old.count(dir)) doomed.push_back(dir);
    }
  }
  for (const std::string& dir : doomed) {
    RunResult rm = run_command({.argv = in_container(tool, {"rm", "-rf", dir})});
    if (rm.status.ok()) spdlog::info("removed {} in the compose service, left by a run that was killed", dir);
    asked = asked && rm.status.ok();
  }
  return asked;
}

std::string ToolFiles::place(const fs::path& file) {
  if (!m_tool.in_service()) return file.string();
  if (m_dir.empty()) {
    remove_dead_runs_folders(m_tool);
    // Recorded before it is made: a run killed from here on leaves a record, and the next command
    // removes the folder (remove_dead_service_folders).
    if (!m_tool.records.empty()) {
      static std::atomic<int> count{0};
      make_dirs(m_tool.records);
      m_record = m_tool.records / (run_tag() + "." + std::to_string(++count));
      write_file_atomic(m_record, "", 0600);
    }
    const std::string prefix = "/tmp/backupctl." + run_tag() + ".";
    RunResult r = run_command({.argv = in_container(m_tool, {"mktemp", "-d", prefix + "XXXXXX"})});
    std::string dir = r.out.substr(0, r.out.find('\n'));
    if (!r.status.ok() || dir.rfind(prefix, 0) != 0) {
      throw Error(ErrorCode::tool_failed, "cannot make a temporary folder in the compose service: " + first_line(r.err),
                  "the service's container needs mktemp and a writable /tmp");
    }
    m_dir = dir;
    fault_point("service.folder-made");
  }
  std::string inside = m_dir + "/" + file.filename().string();
  Fd in = open_read(file);
  SpawnOptions spawn{.argv = in_container(m_tool, {"tee", inside})};
  spawn.in_fd = in.get();
  spawn.out = Stdio::null;
  RunResult r = run_command(std::move(spawn));
  if (!r.status.ok()) {
    throw Error(ErrorCode::tool_failed, "cannot copy " + file.filename().string() + " into the compose service: " + first_line(r.err),
                "the service's /tmp must be writable");
  }
  return inside;
}

ToolFiles::~ToolFiles() {
  InterruptShield shield;  // also after a signal: the copies must go
  bool removed = m_dir.empty();
  try {
    if (!m_dir.empty()) {
      RunResult r = run_command({.argv = in_container(m_tool, {"rm", "-rf", m_dir})});
      removed = r.status.ok();
      if (!removed) spdlog::warn("cannot remove {} in the compose service: {}", m_dir, first_line(r.err));
    }
  } catch (const std::exception& e) {
    spdlog::warn("cannot remove {} in the compose service: {}", m_dir, e.what());
  }
  std::error_code ec;
  if (removed && !m_record.empty()) fs::remove(m_record, ec);
}

void remove_dead_service_folders(const Config& config) {
  const fs::path records = service_records(config);
  std::vector<fs::path> dead;
  std::error_code ec;
  struct stat st {};
  if (::lstat(records.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) return;  // none, or not ours to follow
  for (const auto& de : fs::directory_iterator(records, ec)) {
    // "<run tag>.<n>": a record of a run of this machine and pid namespace that is gone.
    const std::string name = de.path().filename().string();
    const std::string tag = name.substr(0, name.rfind('.'));
    if (de.is_regular_file(ec) && run_is_here(tag) && run_is_gone(tag)) dead.push_back(de.path());
  }
  if (dead.empty()) return;
  PgTool tool;
  tool.prefix = service_prefix(config);
  if (!remove_dead_runs_folders(tool)) {
    spdlog::warn("cannot ask the compose service {} for the folders of a killed run; the next command tries again",
                 config.pg_service);
    return;
  }
  for (const auto& p : dead) fs::remove(p, ec);
}

}  // namespace backupctl

namespace backupctl {

Error pg_tool_failure(std::string_view tool, const ExitStatus& status,
                      const std::string& stderr_text, std::string_view what_was_lost) {
  if (status.signal != 0) {
    return Error(ErrorCode::tool_failed,
                 fmt::format("{} was {}", tool, status.describe()),
                 fmt::format("{}; check the system log (OOM killer?) and run again",
                             what_was_lost));
  }
  // pg_dump/pg_restore print "pg_dump: error: ..." lines, psql "psql:file:3: ERROR:  ...", the
  // server "FATAL:  ..."; detail lines (LINE 1:, ^, DETAIL:) follow.
  std::string line = error_line(stderr_text);
  if (line.empty()) line = "no error message";
  std::string hint = std::string(what_was_lost);
  if (line.find("permission denied") != std::string::npos) {
    hint += "; the role needs read access to every object (GRANT pg_read_all_data TO <role> on "
            "PostgreSQL 14+, or use the database owner)";
  } else if (line.find("server closed the connection") != std::string::npos ||
             line.find("terminating connection") != std::string::npos ||
             line.find("connection to server") != std::string::npos) {
    hint += "; the server went away: check its log and run again";
  } else if (line.find("lock") != std::string::npos) {
    hint += "; another session holds a conflicting lock";
  } else {
    hint += "; the lines above are the program's own output";
  }
  return Error(ErrorCode::tool_failed, fmt::format("{} failed ({}): {}", tool, status.describe(), line),
               hint);
}

void run_pg_program(const PgTool& pg_tool, const std::vector<std::string>& args, const PgTarget& target,
                    const std::function<void(io::Sink&)>& feed, std::string_view what_was_lost,
                    const std::string& pgoptions) {
  MemFile err("stderr");
  SpawnOptions spawn{.argv = pg_tool.argv(args), .env = target.child_env()};
  if (!pgoptions.empty()) {
    auto inherited = env_value("PGOPTIONS");
    spawn.env.emplace_back("PGOPTIONS", inherited && !inherited->empty() ? *inherited + " " + pgoptions : pgoptions);
  }
  spawn.in = feed ? Stdio::pipe : Stdio::null;
  spawn.out = Stdio::null;
  spawn.err_fd = err.fd();
  std::string tool = pg_tool.name();
  Child child = Child::spawn(spawn);
  if (feed) {
    io::ChildStdinSink sink(child.stdin_pipe(), tool);
    feed(sink);
  }
  ExitStatus status = child.wait();
  if (!status.ok()) {
    std::string text = err.read_all();
    std::string tail = last_lines(text, 8);
    if (!tail.empty()) {
      spdlog::error("{} said (last lines):", tool);
      for (std::string_view rest = tail; !rest.empty();) {
        auto nl = rest.find('\n');
        spdlog::error("  {}", rest.substr(0, nl));
        rest = nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
      }
    }
    throw pg_tool_failure(tool, status, text, what_was_lost);
  }
}

StreamResult stream_pg_program(const std::string& tool, SpawnOptions spawn, io::Sink& sink,
                               const DbCompression* zstd, int zstd_threads,
                               const std::vector<std::string>& age_recipients, Progress& progress,
                               std::string_view what_was_lost) {
  io::StoredChain stored(sink, age_recipients);
  std::unique_ptr<io::ZstdCompressSink> compress;
  io::Sink* head = &stored.head();
  if (zstd != nullptr) {
    compress = std::make_unique<io::ZstdCompressSink>(stored.head(), zstd->level, zstd_threads);
    head = compress.get();
  }
  spawn.in = Stdio::null;
  spawn.out = Stdio::pipe;
  spawn.err = Stdio::pipe;

  Child child = Child::spawn(spawn);
  io::ChildSource source(child);
  io::copy(source, *head, [&](std::uint64_t n) { progress.update(n); });
  ExitStatus status = child.wait();
  if (!status.ok()) throw pg_tool_failure(tool, status, child.stderr_tail(), what_was_lost);
  return {stored.size(), stored.sha256(), child.stderr_tail()};
}

void warn_lines(std::string_view rest) {
  while (!rest.empty()) {
    auto nl = rest.find('\n');
    std::string line(rest.substr(0, nl));
    if (!line.empty()) spdlog::warn("{}", line);
    rest = nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
  }
}

}  // namespace backupctl
