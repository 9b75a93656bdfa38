#include "pg/tools.hpp"

#include <fmt/format.h>

#include <filesystem>
#include <unistd.h>

#include <regex>

#include <spdlog/spdlog.h>

#include "util/env.hpp"
#include "util/error.hpp"
#include "util/fs.hpp"
#include "util/process.hpp"

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

}  // namespace

PgTool find_pg_tool(std::string_view name, int server_major, const Config& config) {
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

void run_pg_program(std::vector<std::string> argv, const PgTarget& target,
                    const std::function<void(io::Sink&)>& feed, std::string_view what_was_lost,
                    const std::string& pgoptions) {
  MemFile err("stderr");
  SpawnOptions spawn{.argv = std::move(argv), .env = target.child_env()};
  if (!pgoptions.empty()) {
    auto inherited = env_value("PGOPTIONS");
    spawn.env.emplace_back("PGOPTIONS", inherited && !inherited->empty() ? *inherited + " " + pgoptions : pgoptions);
  }
  spawn.in = feed ? Stdio::pipe : Stdio::null;
  spawn.out = Stdio::null;
  spawn.err_fd = err.fd();
  std::string tool = spawn.argv[0].substr(spawn.argv[0].rfind('/') + 1);
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

}  // namespace backupctl
