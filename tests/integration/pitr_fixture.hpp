// The fixture of the point-in-time recovery tests: a real PostgreSQL with a table, the receiver
// (`wal stream`) running into BACKUP_DIR, and a base backup taken.
#pragma once

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <vector>

#include "fixture.hpp"
#include "util/fs.hpp"
#include "util/process.hpp"

namespace backupctl::test {

// Processes whose working directory is under `dir` (a temporary cluster's postmaster chdirs into
// its data directory).
inline std::vector<std::string> processes_in(const fs::path& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& de : fs::directory_iterator("/proc", ec)) {
    const std::string pid = de.path().filename();
    if (pid.find_first_not_of("0123456789") != std::string::npos) continue;
    std::error_code e2;
    fs::path cwd = fs::read_symlink(de.path() / "cwd", e2);
    if (!e2 && cwd.string().starts_with(dir.string())) out.push_back(pid + " in " + cwd.string());
  }
  return out;
}

class PitrTest : public ::testing::Test {
 protected:
  PgCluster pg;
  TempDir dir;
  TempDir work;  // PITR_WORK_DIR: the postgres user must reach it when the tests run as root
  std::optional<Child> receiver;
  EnvList extra;  // settings a derived fixture adds (set in its constructor, before SetUp)

  void SetUp() override {
    ::chmod(work.path().c_str(), 0755);
    pg.psql("postgres", "ALTER SYSTEM SET max_slot_wal_keep_size = '1GB'");
    pg.psql("postgres", "SELECT pg_reload_conf()");
    pg.create_database("archive");
    pg.psql("archive", "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'base' FROM generate_series(1, 500) g");
    start_receiver();
    CliResult r = run_backupctl({"backup", "base", "--json"}, env());
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }

  void TearDown() override { stop_receiver(); }

  EnvList env() const {
    EnvList e = backup_env(pg, "archive", dir.path());
    e.emplace_back("BACKUP_WAL", "stream");
    e.emplace_back("PITR_WORK_DIR", work.path().string());
    e.emplace_back("SERVICE_CONTROL", "none");
    e.insert(e.end(), extra.begin(), extra.end());
    return e;
  }
  EnvList confirmed() const {
    EnvList e = env();
    e.emplace_back("CONFIRM", "YES");
    return e;
  }

  void start_receiver() {
    receiver.emplace(spawn_backupctl({"wal", "stream"}, env()));
    ASSERT_TRUE(wait_for([&] { return pg.psql("postgres", "SELECT count(*) FROM pg_stat_replication") == "1\n"; }, 30))
        << "the receiver did not connect";
  }
  void stop_receiver() {
    if (!receiver) return;
    receiver->kill(SIGTERM);
    ExitStatus s = receiver->wait();
    EXPECT_TRUE(s.ok()) << "wal stream did not stop cleanly on SIGTERM: " << s.describe() << "\n" << receiver->stderr_tail();
    receiver.reset();
  }

  // Waits until the receiver has flushed everything the server wrote so far. The insert position:
  // the test cluster commits asynchronously, so the write position may not have reached the last
  // commit yet (the WAL writer writes it within 200 ms).
  void wait_received() {
    const std::string lsn = pg.psql("postgres", "SELECT pg_current_wal_insert_lsn()");
    ASSERT_TRUE(wait_for(
        [&] {
          return pg.psql("postgres", "SELECT coalesce(bool_and(flush_lsn >= '" + lsn.substr(0, lsn.size() - 1) +
                                         "'::pg_lsn), false) FROM pg_stat_replication") == "t\n";
        },
        10))
        << "the receiver did not flush up to " << lsn;
  }

  // The server's clock now, as ISO 8601 UTC with microseconds.
  std::string now() const {
    std::string s = pg.psql("postgres", "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')");
    return s.substr(0, s.size() - 1);
  }

  std::string rows() const {
    std::string s = pg.psql("archive", "SELECT v || ':' || count(*) FROM t GROUP BY v ORDER BY v");
    for (char& c : s) c = c == '\n' ? ' ' : c;
    return s;
  }
};

}  // namespace backupctl::test
