#include "fixture.hpp"

#include <cstdlib>

#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>
#include <random>

#include "support/loopback.hpp"

extern char** environ;

namespace backupctl::test {

namespace {

bool is_root() { return ::geteuid() == 0; }

fs::path find_bindir() {
  fs::path best;
  int best_v = 0;
  std::error_code ec;
  for (const auto& de : fs::directory_iterator("/usr/lib/postgresql", ec)) {
    std::string v = de.path().filename().string();
    if (v.find_first_not_of("0123456789") != std::string::npos) continue;
    if (fs::exists(de.path() / "bin/initdb") && std::stoi(v) > best_v) {
      best_v = std::stoi(v);
      best = de.path() / "bin";
    }
  }
  return best;
}

}  // namespace

int free_port() {
  int port = 0;
  ::close(listen_on_loopback(port));
  return port;
}

PgCluster::PgCluster(Listen listen) {
  if (listen == Listen::tcp) m_port = free_port();
  m_bindir = find_bindir();
  if (m_bindir.empty()) {
    ADD_FAILURE() << "no PostgreSQL server installed (/usr/lib/postgresql/*/bin/initdb); run "
                     "tools/install-deps.sh";
    return;
  }
  char tmpl[] = "/tmp/backupctl-pg.XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) {
    ADD_FAILURE() << "mkdtemp failed";
    return;
  }
  m_root = tmpl;
  // The socket directory is readable by everyone so tests can run backupctl as another user.
  ::chmod(m_root.c_str(), 0755);
  if (is_root()) {
    struct passwd* pw = ::getpwnam("postgres");
    if (pw == nullptr) {
      ADD_FAILURE() << "running as root needs the 'postgres' user (installed with postgresql)";
      return;
    }
    if (::chown(m_root.c_str(), pw->pw_uid, pw->pw_gid) != 0) {
      ADD_FAILURE() << "chown " << m_root;
      return;
    }
  }
  // A copy of one initdb's data directory (cp -a keeps the owner and the 0700 mode).
  const fs::path made = data_template();
  if (made.empty()) return;
  RunResult copy = run_command({.argv = {"cp", "-a", made.string(), (m_root / "data").string()}});
  if (!copy.status.ok()) {
    ADD_FAILURE() << "cannot copy " << made << ": " << copy.err;
    return;
  }
  // pwuser must give a password (scram); everyone else is trusted on the private socket, for
  // replication too (the WAL receiver and base backups of the point-in-time tests).
  std::ofstream(m_root / "data/pg_hba.conf")
      << "local all pwuser scram-sha-256\n"
         "local all all trust\n"
         "local replication all trust\n"
         "host all all 127.0.0.1/32 trust\n"
         "host all all ::1/128 trust\n";
  RunResult start = as_postgres(
      {tool("pg_ctl"), "-D", (m_root / "data").string(), "-l", log_file().string(), "-w", "-o",
       "-p " + std::to_string(m_port) + " -k " + m_root.string() +
           (listen == Listen::tcp ? " -c listen_addresses=localhost" : " -c listen_addresses=") +
           " -c fsync=off -c full_page_writes=off -c synchronous_commit=off",
       "start"});
  if (!start.status.ok()) {
    std::ifstream log(log_file());
    std::stringstream ss;
    ss << log.rdbuf();
    ADD_FAILURE() << "pg_ctl start failed: " << start.err << start.out << ss.str();
    return;
  }
  m_running = true;
}

PgCluster::~PgCluster() {
  if (m_running) {
    as_postgres({tool("pg_ctl"), "-D", (m_root / "data").string(), "-m", "immediate", "-w", "stop"});
  }
  if (!m_root.empty()) {
    std::error_code ec;
    fs::remove_all(m_root, ec);
  }
}

void PgCluster::restart() {
  RunResult r = as_postgres({tool("pg_ctl"), "-D", (m_root / "data").string(), "-l", log_file().string(), "-m", "fast",
                             "-w", "restart"});
  ASSERT_TRUE(r.status.ok()) << "pg_ctl restart failed: " << r.err << r.out;
}

void PgCluster::crash_and_lose() {
  const fs::path data = m_root / "data";
  std::string pid_text = read_file(data / "postmaster.pid");
  const pid_t pid = static_cast<pid_t>(std::stol(pid_text.substr(0, pid_text.find('\n'))));
  ::kill(pid, SIGKILL);
  for (int i = 0; i < 200 && ::kill(pid, 0) == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  m_running = false;
  std::error_code ec;
  fs::remove_all(data, ec);
}

// initdb costs a second of CPU, a copy of its result a twentieth of that, and the suite starts
// clusters hundreds of times on two cores: the first cluster of a run (of this server version and
// user) runs initdb into a folder of its own and renames it into place; every cluster copies it.
fs::path PgCluster::data_template() const {
  const fs::path made = fs::temp_directory_path() /
                        ("backupctl-pgdata-" + m_bindir.parent_path().filename().string() + "-" +
                         std::to_string(::geteuid()));
  if (fs::exists(made / "PG_VERSION")) return made;
  const fs::path fresh = made.string() + ".new." + std::to_string(::getpid());
  std::error_code ec;
  fs::remove_all(fresh, ec);
  RunResult init = as_postgres({tool("initdb"), "-D", fresh.string(), "-U", "postgres", "-A", "trust",
                                "-E", "UTF8", "--locale=C.UTF-8", "--no-sync", "--no-instructions"});
  if (!init.status.ok()) {
    ADD_FAILURE() << "initdb failed: " << init.err << init.out;
    fs::remove_all(fresh, ec);
    return {};
  }
  // Another test's rename may have come first: then its folder is the template, and ours goes.
  if (::rename(fresh.c_str(), made.c_str()) != 0) fs::remove_all(fresh, ec);
  if (!fs::exists(made / "PG_VERSION")) {
    ADD_FAILURE() << "no PostgreSQL data directory at " << made;
    return {};
  }
  return made;
}

RunResult PgCluster::as_postgres(std::vector<std::string> argv) const {
  if (is_root()) argv.insert(argv.begin(), {"runuser", "-u", "postgres", "--"});
  return run_command({.argv = argv, .env = {{"LC_ALL", "C.UTF-8"}}});
}

EnvList PgCluster::env(const std::string& dbname) const {
  return {{"PGHOST", m_root.string()},
          {"PGPORT", std::to_string(port())},
          {"PGUSER", "postgres"},
          {"PGDATABASE", dbname}};
}

RunResult PgCluster::psql_raw(const std::string& db, const std::string& sql,
                              bool stop_on_error) const {
  EnvList e = env(db);
  e.emplace_back("PGPASSWORD", std::nullopt);
  return run_command({.argv = {tool("psql"), "-X", "-q", "-A", "-t", "-v",
                               stop_on_error ? "ON_ERROR_STOP=1" : "ON_ERROR_STOP=0", "-c", sql},
                      .env = e});
}

std::string PgCluster::psql(const std::string& db, const std::string& sql) const {
  RunResult r = psql_raw(db, sql, true);
  EXPECT_TRUE(r.status.ok()) << "psql failed on " << db << ": " << r.err << "\nSQL: " << sql;
  return r.out;
}

void PgCluster::psql_file(const std::string& db, const fs::path& file) const {
  RunResult r = run_command({.argv = {tool("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f",
                                      file.string()},
                             .env = env(db)});
  ASSERT_TRUE(r.status.ok()) << "psql -f " << file << " failed: " << r.err;
}

void PgCluster::create_database(const std::string& name, const std::string& extra) const {
  psql("postgres", "CREATE DATABASE \"" + name + "\" " + extra);
}

CliResult run_backupctl(const std::vector<std::string>& args, const EnvList& env) {
  Child c = spawn_backupctl(args, env);
  CliResult r;
  r.out = c.drain();
  ExitStatus s = c.wait();
  r.err = c.stderr_tail();
  r.exit_code = s.signal ? 128 + s.signal : s.code;
  return r;
}

namespace {

std::string from_environment(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

}  // namespace

std::string backupctl_binary() {
  if (std::string bin = from_environment("BACKUPCTL_TEST_BIN"); !bin.empty()) return bin;
  if (std::string build = from_environment("BACKUPCTL_TEST_BUILD"); !build.empty()) return build + "/backupctl";
  return BACKUPCTL_BIN;
}

std::string archive_app_binary() {
  if (std::string build = from_environment("BACKUPCTL_TEST_BUILD"); !build.empty()) {
    return build + "/examples/archive-app/archive-app";
  }
  return ARCHIVE_APP_BIN;
}

Child spawn_backupctl(const std::vector<std::string>& args, const EnvList& env) {
  std::vector<std::string> argv = {backupctl_binary()};
  argv.insert(argv.end(), args.begin(), args.end());
  // Start from an empty environment: nothing of the developer's shell (PG*, BACKUP_*) leaks in.
  EnvList full;
  for (char** e = environ; *e; ++e) {
    std::string s(*e);
    full.emplace_back(s.substr(0, s.find('=')), std::nullopt);
  }
  for (const char* keep : {"PATH", "HOME", "TZ", "LANG", "ASAN_OPTIONS", "UBSAN_OPTIONS", "TMPDIR"}) {
    if (const char* v = std::getenv(keep)) full.emplace_back(keep, v);
  }
  // APP_ROOT defaults to the working directory: an empty one, so that neither the tree the tests
  // run from (its infra/backup-checks.toml) nor anything else changes what a test sees.
  static const TempDir empty_app_root("backupctl-no-app");
  full.emplace_back("APP_ROOT", empty_app_root.path().string());
  full.insert(full.end(), env.begin(), env.end());
  return Child::spawn({.argv = argv, .env = full});
}

EnvList backup_env(const PgCluster& cluster, const std::string& db, const fs::path& backup_dir) {
  EnvList e = cluster.env(db);
  e.emplace_back("BACKUP_DIR", backup_dir.string());
  e.emplace_back("BACKUP_PROFILE", "test");
  // The default is the number of cores; fixed so that restores take the parallel loader on any
  // machine (tests that want pg_restore's own loading set 1).
  e.emplace_back("RESTORE_JOBS", "2");
  return e;
}

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) out.push_back(line);
  }
  return out;
}

std::vector<std::string> list_dir(const fs::path& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& de : fs::directory_iterator(dir, ec)) names.push_back(de.path().filename());
  std::sort(names.begin(), names.end());
  return names;
}

std::string sha256sum(const fs::path& file) {
  RunResult r = run_command({.argv = {"sha256sum", file.string()}});
  EXPECT_TRUE(r.status.ok()) << r.err;
  return r.out.substr(0, 64);
}

fs::path sql_file(const std::string& name) {
  return fs::path(BACKUPCTL_SOURCE_DIR) / "tests/integration/sql" / name;
}

std::string random_bytes(std::size_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(gen() & 0xff);
  return s;
}

bool wait_for(const std::function<bool()>& pred, double seconds) {
  auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return pred();
}

std::vector<pid_t> child_pids(pid_t parent, const std::string& comm) {
  std::vector<pid_t> out;
  std::error_code ec;
  for (const auto& de : fs::directory_iterator("/proc", ec)) {
    std::string name = de.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream stat(de.path() / "stat");
    std::string line;
    if (!std::getline(stat, line)) continue;
    // pid (comm) state ppid ...
    auto open = line.find('('), close = line.rfind(')');
    if (open == std::string::npos || close == std::string::npos) continue;
    std::string c = line.substr(open + 1, close - open - 1);
    std::istringstream rest(line.substr(close + 2));
    char state;
    pid_t ppid;
    rest >> state >> ppid;
    if (ppid == parent && c == comm) out.push_back(std::stoi(name));
  }
  return out;
}

std::string process_state(pid_t pid) {
  std::string stat;
  try {
    stat = read_file(fs::path("/proc") / std::to_string(pid) / "stat");
  } catch (const std::exception&) {
    return "";
  }
  auto close = stat.rfind(')');
  return close != std::string::npos && close + 2 < stat.size() ? std::string(1, stat[close + 2]) : "";
}

}  // namespace backupctl::test
