// Point-in-time recovery against a real PostgreSQL: the receiver (`wal stream`, pg_receivewal
// into BACKUP_DIR), a base backup, and `restore db --to-time` through a temporary cluster and the
// guarded dump restore. What a user sees: the rows as they were at the moment, the exit codes, the
// folders left (none), the servers left (none).
#include <gtest/gtest.h>
#include <signal.h>

#include <nlohmann/json.hpp>

#include "fixture.hpp"
#include "util/fs.hpp"
#include "util/process.hpp"

namespace backupctl::test {

namespace {

// Processes whose working directory is under `dir` (a temporary cluster's postmaster chdirs into
// its data directory).
std::vector<std::string> processes_in(const fs::path& dir) {
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
    EXPECT_TRUE(s.ok()) << "wal stream did not stop cleanly on SIGTERM: " << s.describe();
    receiver.reset();
  }

  // Waits until the receiver has flushed everything the server wrote so far.
  void wait_received() {
    const std::string lsn = pg.psql("postgres", "SELECT pg_current_wal_lsn()");
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

TEST_F(PitrTest, AMistakenDeleteIsUndoneToTheMomentThroughTheGuardedRestore) {
  pg.psql("archive", "INSERT INTO t SELECT g, 'before' FROM generate_series(501, 1500) g");
  const std::string moment = now();
  pg.psql("archive", "INSERT INTO t SELECT g, 'after' FROM generate_series(1501, 1510) g");
  pg.psql("archive", "DELETE FROM t WHERE id > 100");
  wait_received();
  ASSERT_EQ(rows(), "base:100 ");

  // Without CONFIRM=YES: the plan, nothing changed.
  CliResult plan = run_backupctl({"restore", "db", "--to-time", moment}, env());
  EXPECT_EQ(plan.exit_code, 9) << plan.err;
  EXPECT_NE(plan.out.find("base backup:"), std::string::npos) << plan.out;
  EXPECT_EQ(rows(), "base:100 ");
  EXPECT_TRUE(list_dir(work.path()).empty());

  CliResult r = run_backupctl({"restore", "db", "--to-time", moment}, confirmed());
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  EXPECT_EQ(rows(), "base:500 before:1000 ") << "every row committed before the moment, none after";
  EXPECT_NE(r.out.find("recovered to"), std::string::npos) << r.out;
  EXPECT_TRUE(list_dir(work.path()).empty()) << "the temporary cluster's folder is left: " << list_dir(work.path())[0];
  EXPECT_TRUE(processes_in(work.path()).empty()) << processes_in(work.path())[0];

  // The database the restore replaced is kept: `restore undo` brings the mistake back.
  CliResult undo = run_backupctl({"restore", "undo"}, confirmed());
  ASSERT_EQ(undo.exit_code, 0) << undo.err;
  EXPECT_EQ(rows(), "base:100 ");
}

TEST_F(PitrTest, LatestHasEveryCommittedRowTheUnfinishedSegmentIncluded) {
  pg.psql("archive", "INSERT INTO t SELECT g, 'last' FROM generate_series(501, 520) g");
  wait_received();
  // The rows are in the segment pg_receivewal is still writing (.partial): nothing finished it.
  bool partial = false;
  for (const auto& e : fs::recursive_directory_iterator(dir.path() / "wal")) partial = partial || e.path().extension() == ".partial";
  ASSERT_TRUE(partial);
  pg.psql("archive", "UPDATE t SET v = 'lost' WHERE id <= 10");
  wait_received();
  CliResult r = run_backupctl({"restore", "db", "--to-time", "latest", "--target-db", "copy"}, confirmed());
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  EXPECT_EQ(pg.psql("copy", "SELECT v || ':' || count(*) FROM t GROUP BY v ORDER BY v"), "base:490\nlast:20\nlost:10\n");
  EXPECT_TRUE(list_dir(work.path()).empty());
}

TEST_F(PitrTest, MomentsThatCannotBeRestoredAreRefusedBeforeAnythingChanges) {
  struct Case {
    std::vector<std::string> args;
    int exit;
    std::string says;
  };
  const std::vector<Case> cases = {
      {{"--to-time", "2020-01-01T00:00:00Z"}, 4, "no base backup"},
      {{"--to-time", "2100-01-01T00:00:00Z"}, 2, "in the future"},
      {{"--to-time", "2999-01-01T00:00:00Z"}, 2, "not a moment"},
      {{"--to-time", "yesterday"}, 2, "not a moment"},
      {{"--to-time", "2026-12-06 14:01:59"}, 2, "not a moment"},
      {{"--to-lsn", "zz"}, 2, "not a WAL position"},
      {{"--to-time", "latest", "--to-lsn", "0/1"}, 2, "two targets"},
      {{"--to-time", "latest", "--file", "x.dump"}, 2, "two sources"},
  };
  for (const auto& c : cases) {
    std::vector<std::string> args = {"restore", "db"};
    args.insert(args.end(), c.args.begin(), c.args.end());
    CliResult r = run_backupctl(args, confirmed());
    EXPECT_EQ(r.exit_code, c.exit) << c.args[1] << ": " << r.err;
    EXPECT_NE(r.err.find(c.says), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("hint:"), std::string::npos) << r.err;
  }
  // A base backup whose bytes are not its meta's.
  for (const auto& e : fs::directory_iterator(dir.path() / "base")) {
    if (e.path().extension() == ".zst") {
      std::string data = read_file(e.path());
      data[data.size() / 2] ^= 1;
      write_file_atomic(e.path(), data);
    }
  }
  // Run as root, a work folder the postgres user cannot reach is said in the plan.
  if (::geteuid() == 0) {
    TempDir closed;  // 0700, root's
    EnvList e = confirmed();
    e.emplace_back("PITR_WORK_DIR", (closed.path() / "pitr").string());
    CliResult refused = run_backupctl({"restore", "db", "--to-time", "latest"}, e);
    EXPECT_EQ(refused.exit_code, 2) << refused.err;
    EXPECT_NE(refused.err.find("cannot reach PITR_WORK_DIR"), std::string::npos) << refused.err;
    EXPECT_FALSE(fs::exists(closed.path() / "pitr"));
  }
  CliResult r = run_backupctl({"restore", "db", "--to-time", "latest"}, confirmed());
  EXPECT_EQ(r.exit_code, 5) << r.err;

  EXPECT_NE(r.err.find("does not match its meta"), std::string::npos) << r.err;
  EXPECT_EQ(rows(), "base:500 ");
  EXPECT_TRUE(list_dir(work.path()).empty());
}

TEST_F(PitrTest, KilledOrSignalledAtEveryStepNothingIsLeftAndTheLiveDatabaseIsWhole) {
  pg.psql("archive", "DELETE FROM t WHERE id > 250");
  wait_received();
  for (const char* point : {"restore-pitr.unpack", "restore-pitr.wal", "restore-pitr.replay", "restore-pitr.dump"}) {
    EnvList e = confirmed();
    e.emplace_back("BACKUPCTL_FAULT", point);
    CliResult r = run_backupctl({"restore", "db", "--to-time", "latest"}, e);
    EXPECT_EQ(r.exit_code, 128 + SIGKILL) << "did not die at " << point << ": " << r.err;
    CliResult next = run_backupctl({"list"}, env());
    EXPECT_EQ(next.exit_code, 0) << point << ": " << next.err;
    EXPECT_TRUE(list_dir(work.path()).empty()) << point << ": left " << list_dir(work.path())[0];
    EXPECT_TRUE(processes_in(work.path()).empty()) << point << ": still running " << processes_in(work.path())[0];
    EXPECT_TRUE(list_dir(dir.path() / "journal").empty()) << point;
    EXPECT_EQ(rows(), "base:250 ") << point << ": the live database changed";
  }
  // SIGTERM and SIGHUP (a dropped SSH session) at each step: the run ends itself, says so, and
  // leaves nothing; the next command finds nothing to repair.
  for (auto [sig, number] : {std::pair<const char*, int>{"TERM", SIGTERM}, {"HUP", SIGHUP}}) {
    for (const char* point : {"restore-pitr.unpack", "restore-pitr.wal", "restore-pitr.replay", "restore-pitr.dump"}) {
      const std::string at = std::string(sig) + " at " + point;
      EnvList e = confirmed();
      e.insert(e.end(), {{"BACKUPCTL_FAULT", point}, {"BACKUPCTL_FAULT_SIGNAL", sig}});
      CliResult r = run_backupctl({"restore", "db", "--to-time", "latest"}, e);
      EXPECT_EQ(r.exit_code, 128 + number) << at << ": " << r.err;
      EXPECT_TRUE(list_dir(work.path()).empty()) << at << ": left " << list_dir(work.path())[0];
      EXPECT_TRUE(processes_in(work.path()).empty()) << at << ": still running " << processes_in(work.path())[0];
      EXPECT_TRUE(list_dir(dir.path() / "journal").empty()) << at;
      CliResult next = run_backupctl({"list"}, env());
      EXPECT_EQ(next.exit_code, 0) << at << ": " << next.err;
      EXPECT_EQ(next.err.find("repaired"), std::string::npos) << at << ": the run left something: " << next.err;
      EXPECT_EQ(rows(), "base:250 ") << at << ": the live database changed";
    }
  }
}

TEST_F(PitrTest, TheReceiverKilledAndStartedAgainLeavesNoGap) {
  pg.psql("archive", "INSERT INTO t SELECT g, 'one' FROM generate_series(501, 600) g; SELECT pg_switch_wal()");
  wait_received();
  receiver->kill(SIGKILL);
  receiver->wait();
  receiver.reset();
  pg.psql("archive", "INSERT INTO t SELECT g, 'two' FROM generate_series(601, 700) g; SELECT pg_switch_wal()");
  pg.psql("archive", "INSERT INTO t SELECT g, 'three' FROM generate_series(701, 800) g");
  start_receiver();
  wait_received();
  CliResult r = run_backupctl({"restore", "db", "--to-time", "latest", "--target-db", "copy"}, confirmed());
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  EXPECT_EQ(pg.psql("copy", "SELECT v || ':' || count(*) FROM t GROUP BY v ORDER BY v"), "base:500\none:100\nthree:100\ntwo:100\n");
  EXPECT_EQ(r.out.find("gap"), std::string::npos) << r.out;
}

TEST_F(PitrTest, StatusShowsTheReceiverAndTheWindowAndFailsWhenTheReceiverStops) {
  pg.psql("archive", "INSERT INTO t VALUES (1000, 'x')");
  wait_received();
  CliResult r = run_backupctl({"status", "--json"}, env());
  nlohmann::json j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j["wal"]["clusters"].size(), 1u) << r.out;
  EXPECT_EQ(j["wal"]["clusters"][0]["receiver"], "running");
  EXPECT_TRUE(j["wal"]["ok"].get<bool>());
  EXPECT_FALSE(j["wal"]["clusters"][0]["window_from"].is_null());
  EXPECT_LT(j["wal"]["clusters"][0]["newest_wal_age_seconds"].get<double>(), 30.0);
  CliResult text = run_backupctl({"status"}, env());
  EXPECT_NE(text.out.find("receiver running"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("restorable from"), std::string::npos) << text.out;

  stop_receiver();
  r = run_backupctl({"status", "--json"}, env());
  EXPECT_EQ(r.exit_code, 10) << r.err;
  j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["wal"]["clusters"][0]["receiver"], "not running");
  EXPECT_FALSE(j["wal"]["ok"].get<bool>());
}

TEST(PitrReceiver, AnUnboundedSlotIsRefusedAndWalCheckSaysWhatToSet) {
  PgCluster pg;
  TempDir dir;
  EnvList e = backup_env(pg, "postgres", dir.path());
  e.emplace_back("BACKUP_WAL", "stream");
  CliResult check = run_backupctl({"wal", "check"}, e);
  EXPECT_EQ(check.exit_code, 11) << check.err;
  EXPECT_NE(check.out.find("FAIL max_slot_wal_keep_size"), std::string::npos) << check.out;
  CliResult r = run_backupctl({"wal", "stream"}, e);
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("max_slot_wal_keep_size"), std::string::npos) << r.err;
  EXPECT_EQ(pg.psql("postgres", "SELECT count(*) FROM pg_replication_slots"), "0\n") << "no slot was made";

  EnvList off = backup_env(pg, "postgres", dir.path());
  CliResult not_on = run_backupctl({"wal", "stream"}, off);
  EXPECT_EQ(not_on.exit_code, 2) << not_on.err;
  EXPECT_NE(not_on.err.find("BACKUP_WAL=stream"), std::string::npos) << not_on.err;
}

}  // namespace
}  // namespace backupctl::test
