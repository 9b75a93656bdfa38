// Integration-test fixture: a real, throwaway PostgreSQL cluster (initdb into a temp dir, unix
// socket only in a private directory, fsync off) and helpers to run the backupctl binary the way an
// operator does, then look at what a user would see: exit code, output, files, restored rows.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "util/fs.hpp"
#include "util/process.hpp"

namespace backupctl::test {

namespace fs = std::filesystem;

using EnvList = std::vector<std::pair<std::string, std::optional<std::string>>>;

class PgCluster {
 public:
  enum class Listen { socket, tcp };
  // Starts a cluster; FAILs the test (fatal) when initdb or the start fail. Listen::socket: a
  // private Unix socket only, port 5432; Listen::tcp: also localhost, on a free port of its own.
  explicit PgCluster(Listen listen = Listen::socket);
  ~PgCluster();
  PgCluster(const PgCluster&) = delete;
  PgCluster& operator=(const PgCluster&) = delete;

  const fs::path& socket_dir() const { return m_root; }
  int port() const { return m_port; }
  const fs::path& bindir() const { return m_bindir; }
  fs::path log_file() const { return m_root / "server.log"; }

  // PGHOST/PGPORT/PGUSER(/PGDATABASE) for this cluster as superuser "postgres".
  EnvList env(const std::string& dbname = "postgres") const;

  // Runs SQL through psql (ON_ERROR_STOP); ASSERTs success and returns psql's unaligned output.
  std::string psql(const std::string& db, const std::string& sql) const;
  // Runs a SQL file through psql, ON_ERROR_STOP.
  void psql_file(const std::string& db, const fs::path& file) const;
  // Runs psql and returns the result without asserting (for expected failures).
  RunResult psql_raw(const std::string& db, const std::string& sql, bool stop_on_error) const;

  void create_database(const std::string& name, const std::string& extra = "") const;

  // The server killed with SIGKILL and its data directory deleted: a lost host.
  void crash_and_lose();
  // The server stopped (fast: sessions are ended) and started again with its options.
  void restart();

  // The tools of this cluster's version, e.g. tool("pg_restore").
  std::string tool(const std::string& name) const { return (m_bindir / name).string(); }

 private:
  RunResult as_postgres(std::vector<std::string> argv) const;
  // The data directory of a fresh initdb, made once and copied by every cluster; empty on failure.
  fs::path data_template() const;
  fs::path m_root;
  fs::path m_bindir;
  int m_port = 5432;
  bool m_running = false;
};

struct CliResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// A free TCP port on 127.0.0.1 (bound and released: free a moment ago).
int free_port();

// Runs the backupctl binary with a clean environment: only PATH, HOME, TZ, LANG and `env`.
CliResult run_backupctl(const std::vector<std::string>& args, const EnvList& env);

// The backupctl the tests run: this build's, BACKUPCTL_TEST_BIN (another build's: does a new test
// fail without its fix?), or the one of the build BACKUPCTL_TEST_BUILD names (a docker test run
// against the release build by hand).
std::string backupctl_binary();
// The sample app the tests run: this build's, or the one of BACKUPCTL_TEST_BUILD (the app's
// containers mount it).
std::string archive_app_binary();

// Starts backupctl without waiting, for tests that interrupt it.
Child spawn_backupctl(const std::vector<std::string>& args, const EnvList& env);

// EnvList for backupctl against `cluster`/`db`, writing to `backup_dir`.
EnvList backup_env(const PgCluster& cluster, const std::string& db, const fs::path& backup_dir);

// The non-empty lines of `text` (psql's unaligned output, a log).
std::vector<std::string> split_lines(const std::string& text);

// Files directly inside `dir` (names only, sorted); empty when it does not exist.
std::vector<std::string> list_dir(const fs::path& dir);

// `sha256sum FILE`, the stock tool, as the independent check.
std::string sha256sum(const fs::path& file);

// Path of a file in tests/integration/sql.
fs::path sql_file(const std::string& name);

// Waits up to `seconds` for pred() to become true, polling every 5 ms.
bool wait_for(const std::function<bool()>& pred, double seconds);

// `n` bytes of a seeded pseudo-random stream (the same seed, the same bytes).
std::string random_bytes(std::size_t n, unsigned seed);

// The state letter of process `pid` in /proc ("R", "S", "T" for stopped, ...); "" when gone.
std::string process_state(pid_t pid);

// The pids of processes whose parent is `parent` and whose command name is `comm`.
std::vector<pid_t> child_pids(pid_t parent, const std::string& comm);

}  // namespace backupctl::test
