// Point-in-time recovery against a real PostgreSQL: the receiver (`wal stream`, our own client
// into BACKUP_DIR), a base backup, and `restore db --to-time` through a temporary cluster and the
// guarded dump restore. What a user sees: the rows as they were at the moment, the exit codes, the
// folders left (none), the servers left (none).
#include <gtest/gtest.h>
#include <signal.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "pitr_fixture.hpp"
#include "util/fs.hpp"
#include "util/process.hpp"

namespace backupctl::test {

namespace {

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
  // The rows are in the segment the receiver is still writing (.partial): nothing finished it.
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
  // The plan reads the whole file to say so; a confirmed run finds it as it unpacks, before any
  // server starts on it.
  CliResult plan = run_backupctl({"restore", "db", "--to-time", "latest"}, env());
  EXPECT_EQ(plan.exit_code, 5) << plan.err;
  EXPECT_NE(plan.err.find("does not match its meta"), std::string::npos) << plan.err;
  CliResult r = run_backupctl({"restore", "db", "--to-time", "latest"}, confirmed());
  EXPECT_EQ(r.exit_code, 5) << r.err;
  EXPECT_NE(r.err.find("does not match its meta"), std::string::npos) << r.err;
  EXPECT_EQ(rows(), "base:500 ");
  EXPECT_TRUE(list_dir(work.path()).empty());
}

TEST_F(PitrTest, CraftedBaseMetasArePassedOverAndAnotherClustersNeverChosen) {
  fs::path real;
  for (const auto& e : fs::directory_iterator(dir.path() / "base")) {
    if (e.path().extension() == ".zst") real = e.path();
  }
  ASSERT_FALSE(real.empty());
  const nlohmann::json meta = nlohmann::json::parse(read_file(real.string() + ".meta"));
  auto plant = [&](const std::string& name, nlohmann::json m) {
    fs::copy_file(real, dir.path() / "base" / name);
    write_file_atomic(dir.path() / "base" / (name + ".meta"), m.dump(2));
  };
  // Another cluster's base backup, newer: never chosen for this server.
  nlohmann::json other = meta;
  other["file"] = "base_42_20991231_000000.tar.zst";
  other["source"]["system_identifier"] = "42";
  plant("base_42_20991231_000000.tar.zst", other);
  // A meta that names another file, one with a malformed position, one that is not JSON.
  nlohmann::json elsewhere = meta;
  elsewhere["file"] = "../../etc/passwd";
  plant("base_1_20260101_000000.tar.zst", elsewhere);
  nlohmann::json bad_lsn = meta;
  bad_lsn["file"] = "base_1_20260102_000000.tar.zst";
  bad_lsn["source"]["stop_lsn"] = "zz";
  plant("base_1_20260102_000000.tar.zst", bad_lsn);
  fs::copy_file(real, dir.path() / "base/base_1_20260103_000000.tar.zst");
  write_file_atomic(dir.path() / "base/base_1_20260103_000000.tar.zst.meta", "{not json");

  CliResult plan = run_backupctl({"restore", "db", "--to-time", "latest", "--json"}, env());
  EXPECT_EQ(plan.exit_code, 9) << plan.err;
  EXPECT_NE(plan.out.find(real.filename().string()), std::string::npos) << plan.out;
  EXPECT_EQ(plan.out.find("base_42_"), std::string::npos) << plan.out;
  for (const char* n : {"base_1_20260101_000000", "base_1_20260102_000000", "base_1_20260103_000000"}) {
    EXPECT_NE(plan.err.find(std::string(n) + ".tar.zst.meta passed over"), std::string::npos) << n << ": " << plan.err;
  }
  EXPECT_EQ(rows(), "base:500 ");
}

// Only the restored database's files are unpacked; the other databases' are sparse zeroes (the
// replay still runs through their WAL). When the database of that name at the moment is not the
// one in the base backup (made again since, here as a file copy of one that is zeroes in the
// temporary cluster), the restore starts over with the whole base backup and the rows are right.
TEST_F(PitrTest, OnlyTheRestoredDatabaseIsUnpackedAndOneMadeSinceIsRestoredWhole) {
  pg.create_database("other");
  pg.psql("other", "CREATE TABLE o (id int PRIMARY KEY, v text); INSERT INTO o SELECT g, 'other' FROM generate_series(1, 300) g");
  pg.create_database("third");
  pg.psql("third", "CREATE TABLE o (id int PRIMARY KEY, v text); INSERT INTO o SELECT g, 'third' FROM generate_series(1, 200) g");
  CliResult base = run_backupctl({"backup", "base", "--json"}, env());
  ASSERT_EQ(base.exit_code, 0) << base.err;
  fs::path newest;
  for (const auto& e : fs::directory_iterator(dir.path() / "base")) {
    if (e.path().extension() == ".zst" && e.path() > newest) newest = e.path();
  }
  const auto meta = nlohmann::json::parse(read_file(newest.string() + ".meta"));
  const std::string archive_oid = pg.psql("postgres", "SELECT oid FROM pg_database WHERE datname = 'archive'");
  ASSERT_EQ(meta["source"]["databases"]["archive"].dump() + "\n", archive_oid) << meta.dump();

  // WAL for the databases after the base backup: updates (full-page images first), and a VACUUM
  // that marks pages all-visible (records that touch a page of zeroes without an image).
  pg.psql("other", "UPDATE o SET v = 'changed' WHERE id <= 100");
  pg.psql("other", "VACUUM o");
  pg.psql("third", "UPDATE o SET v = 'changed' WHERE id <= 50");
  pg.psql("archive", "INSERT INTO t SELECT g, 'new' FROM generate_series(501, 600) g");
  const std::string moment = now();
  pg.psql("archive", "DELETE FROM t");
  wait_received();

  CliResult r = run_backupctl({"-v", "restore", "db", "--to-time", moment, "--target-db", "copy"}, confirmed());
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  EXPECT_EQ(pg.psql("copy", "SELECT v || ':' || count(*) FROM t GROUP BY v ORDER BY v"), "base:500\nnew:100\n");
  EXPECT_NE(r.err.find("(2 other database(s) as sparse zeroes)"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("again with the whole base backup"), std::string::npos) << r.err;
  EXPECT_TRUE(list_dir(work.path()).empty());

  // `other` made again since the base backup, as a file copy of `third`, whose files are zeroes
  // in a temporary cluster that unpacks only the old `other`.
  pg.psql("postgres", "ALTER DATABASE other RENAME TO other_old");
  pg.psql("postgres", "CREATE DATABASE other TEMPLATE third STRATEGY FILE_COPY");
  const std::string later = now();
  pg.psql("other", "DELETE FROM o");
  wait_received();
  EnvList of_other = backup_env(pg, "other", dir.path());
  for (const auto& kv : confirmed()) {
    if (kv.first != "PGDATABASE" && kv.first != "DATABASE_URL" && !kv.first.starts_with("PG")) of_other.push_back(kv);
  }
  r = run_backupctl({"-v", "restore", "db", "--to-time", later, "--target-db", "copy2"}, of_other);
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  EXPECT_EQ(pg.psql("copy2", "SELECT v || ':' || count(*) FROM o GROUP BY v ORDER BY v"), "changed:50\nthird:150\n");
  EXPECT_NE(r.err.find("again with the whole base backup"), std::string::npos) << r.err;
  EXPECT_TRUE(list_dir(work.path()).empty());
  EXPECT_TRUE(processes_in(work.path()).empty());
}

// The restore's steps, and the dump restore's load, which runs while pg_dump writes (the
// temporary server still up).
constexpr const char* kPitrPoints[] = {"restore-pitr.unpack", "restore-pitr.wal", "restore-pitr.replay",
                                       "restore-pitr.dump", "restore-db.load"};

TEST_F(PitrTest, KilledOrSignalledAtEveryStepNothingIsLeftAndTheLiveDatabaseIsWhole) {
  pg.psql("archive", "DELETE FROM t WHERE id > 250");
  wait_received();
  for (const char* point : kPitrPoints) {
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
    for (const char* point : kPitrPoints) {
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

// The operator's SSH session drops under a receiver run in the foreground: it stops as on SIGTERM
// (what it received is durable, the unfinished segment kept), and started again it leaves no gap.
TEST_F(PitrTest, TheReceiverHungUpStopsCleanlyAndStartedAgainLeavesNoGap) {
  pg.psql("archive", "INSERT INTO t SELECT g, 'one' FROM generate_series(501, 600) g; SELECT pg_switch_wal()");
  pg.psql("archive", "INSERT INTO t SELECT g, 'two' FROM generate_series(601, 650) g");
  wait_received();
  receiver->kill(SIGHUP);
  const ExitStatus s = receiver->wait();
  const std::string said = receiver->stderr_tail();
  receiver.reset();
  EXPECT_TRUE(s.ok()) << s.describe() << "\n" << said;
  EXPECT_NE(said.find("SIGHUP"), std::string::npos) << said;
  pg.psql("archive", "INSERT INTO t SELECT g, 'three' FROM generate_series(651, 750) g");
  start_receiver();
  wait_received();
  CliResult verify = run_backupctl({"verify", "--wal"}, env());
  EXPECT_EQ(verify.exit_code, 0) << verify.out << verify.err;
  CliResult r = run_backupctl({"restore", "db", "--to-time", "latest", "--target-db", "copy"}, confirmed());
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  EXPECT_EQ(pg.psql("copy", "SELECT v || ':' || count(*) FROM t GROUP BY v ORDER BY v"), "base:500\none:100\nthree:100\ntwo:50\n");
}

TEST_F(PitrTest, AnUnfinishedSegmentReplacedByASymlinkIsPutAsideNeverWrittenThrough) {
  pg.psql("archive", "INSERT INTO t SELECT g, 'one' FROM generate_series(501, 600) g");
  wait_received();
  receiver->kill(SIGKILL);
  receiver->wait();
  receiver.reset();
  fs::path partial;
  // The receiver's own file, in incoming/: a killed off-site push can leave a <seg>.zst.partial of
  // its own beside the archive, which is not the file this test is about.
  for (const auto& e : fs::recursive_directory_iterator(dir.path() / "wal")) {
    if (e.path().extension() == ".partial" && e.path().parent_path().filename() == "incoming") partial = e.path();
  }
  ASSERT_FALSE(partial.empty());
  // Someone who can write BACKUP_DIR points the unfinished segment at a file of theirs.
  TempDir elsewhere;
  const fs::path victim = elsewhere.path() / "victim";
  write_file_atomic(victim, "keep me");
  fs::remove(partial);
  fs::create_symlink(victim, partial);
  start_receiver();
  pg.psql("archive", "INSERT INTO t SELECT g, 'two' FROM generate_series(601, 700) g");
  wait_received();
  EXPECT_EQ(read_file(victim), "keep me");
  auto listing = [&] {
    std::string out;
    for (const auto& n : list_dir(partial.parent_path())) out += n + " ";
    return out + "\n" + receiver->stderr_tail();
  };
  EXPECT_TRUE(fs::is_regular_file(fs::symlink_status(partial))) << listing();
  EXPECT_TRUE(fs::is_symlink(fs::symlink_status(fs::path(partial.string() + ".rejected")))) << listing();
  CliResult r = run_backupctl({"restore", "db", "--to-time", "latest", "--target-db", "copy"}, confirmed());
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  EXPECT_EQ(pg.psql("copy", "SELECT v || ':' || count(*) FROM t GROUP BY v ORDER BY v"), "base:500\none:100\ntwo:100\n");
}

// WAL_SYNCHRONOUS=yes: a commit returns once the receiver has it on disk (killed right after, the
// row is restorable), and a receiver that is killed, stuck or stopped holds commits at most a few
// seconds, never for ever. (The test cluster commits asynchronously: these sessions ask for it.)
TEST_F(PitrTest, SynchronousCommitsWaitForTheReceiverAndNeverHangWhenItGoes) {
  stop_receiver();
  auto standby = [&] { return pg.psql("postgres", "SHOW synchronous_standby_names"); };
  auto timed_commit = [&](int id) {
    const auto t0 = std::chrono::steady_clock::now();
    pg.psql("archive", "SET synchronous_commit = on; INSERT INTO t VALUES (" + std::to_string(id) + ", 'sync')");
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  // Another list of synchronous standbys is the operator's: refused, never replaced.
  pg.psql("postgres", "ALTER SYSTEM SET synchronous_standby_names = 'theirs'");
  pg.psql("postgres", "SELECT pg_reload_conf()");
  ASSERT_TRUE(wait_for([&] { return standby() == "theirs\n"; }, 10));
  extra.emplace_back("WAL_SYNCHRONOUS", "yes");
  CliResult refused = run_backupctl({"wal", "stream"}, env());
  EXPECT_EQ(refused.exit_code, 2) << refused.err;
  EXPECT_NE(refused.err.find("synchronous_standby_names is 'theirs'"), std::string::npos) << refused.err;
  EXPECT_EQ(standby(), "theirs\n");
  pg.psql("postgres", "ALTER SYSTEM RESET synchronous_standby_names");
  pg.psql("postgres", "SELECT pg_reload_conf()");
  ASSERT_TRUE(wait_for([&] { return standby() == "\n"; }, 10));
  CliResult check = run_backupctl({"wal", "check"}, env());
  EXPECT_EQ(check.exit_code, 0) << check.out << check.err;
  EXPECT_NE(check.out.find("WAL_SYNCHRONOUS"), std::string::npos) << check.out;

  // Killed right after a commit returned: the row is in what it received.
  start_receiver();
  ASSERT_TRUE(wait_for([&] { return standby() == "\"backupctl\"\n"; }, 20)) << standby();
  // A second receiver started by mistake is refused, and leaves the first one's setting alone.
  CliResult second = run_backupctl({"wal", "stream"}, env());
  EXPECT_EQ(second.exit_code, 2) << second.err;
  EXPECT_NE(second.err.find("another `backupctl wal stream`"), std::string::npos) << second.err;
  EXPECT_EQ(standby(), "\"backupctl\"\n");
  timed_commit(501);
  receiver->kill(SIGKILL);
  receiver->wait();
  receiver.reset();
  ASSERT_TRUE(wait_for([&] { return standby() == "\n"; }, 5)) << "the guard did not clear the setting";
  EXPECT_LT(timed_commit(502), 2.0) << "a commit waited for a receiver that is gone";

  // Stuck (SIGSTOP): commits wait, then go on; going on again, commits wait for it again.
  start_receiver();
  ASSERT_TRUE(wait_for([&] { return standby() == "\"backupctl\"\n"; }, 20)) << standby();
  receiver->kill(SIGSTOP);
  const double held = timed_commit(503);
  EXPECT_GE(held, 3.0) << "the commit did not wait for the receiver";
  EXPECT_LT(held, 15.0) << "the commit waited too long for a stuck receiver";
  EXPECT_EQ(standby(), "\n");
  // Still stuck, it is not waited for again (its stream still says 'streaming').
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  EXPECT_EQ(standby(), "\n");
  receiver->kill(SIGCONT);
  ASSERT_TRUE(wait_for([&] { return standby() == "\"backupctl\"\n"; }, 20)) << standby();

  // The receiver and its guard both killed (a kill of the whole group): commits would wait for
  // nothing that comes; `status` fails and says what to do, and the next receiver's guard takes
  // the setting over.
  pid_t guard = 0;
  for (const auto& e : fs::directory_iterator("/proc")) {
    std::ifstream in(e.path() / "stat");
    std::string stat;
    std::getline(in, stat);
    const auto close = stat.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(stat.substr(close + 2));
    std::string state;
    pid_t parent = 0;
    rest >> state >> parent;
    if (parent == receiver->pid()) guard = std::stoi(e.path().filename().string());
  }
  ASSERT_GT(guard, 0) << "no guard process under the receiver";
  ::kill(guard, SIGSTOP);  // so that it neither clears the setting nor is started again
  receiver->kill(SIGKILL);
  ::kill(guard, SIGKILL);  // before the wait: the guard shares the receiver's stderr
  receiver->wait();
  receiver.reset();
  EXPECT_EQ(standby(), "\"backupctl\"\n");
  CliResult waiting = run_backupctl({"status"}, env());
  EXPECT_NE(waiting.exit_code, 0) << waiting.out;
  EXPECT_NE(waiting.out.find("it is not streaming"), std::string::npos) << waiting.out;
  start_receiver();
  EXPECT_TRUE(wait_for([&] { return run_backupctl({"status"}, env()).out.find("commits wait for the receiver's fsync") != std::string::npos; }, 20));

  // Stopped (SIGTERM): the setting goes first; commits do not wait.
  stop_receiver();
  EXPECT_EQ(standby(), "\n");
  EXPECT_LT(timed_commit(504), 2.0);

  CliResult r = run_backupctl({"restore", "db", "--to-time", "latest", "--target-db", "copy"}, confirmed());
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  EXPECT_EQ(pg.psql("copy", "SELECT count(*) FROM t WHERE id = 501"), "1\n") << "a commit that returned is not in the WAL received";
}

TEST_F(PitrTest, TheServerRestartedUnderTheReceiverLeavesNoGap) {
  pg.psql("archive", "INSERT INTO t SELECT g, 'one' FROM generate_series(501, 600) g");
  wait_received();
  pg.restart();  // pg_ctl restart keeps the options it was started with
  pg.psql("archive", "INSERT INTO t SELECT g, 'two' FROM generate_series(601, 700) g; SELECT pg_switch_wal()");
  pg.psql("archive", "INSERT INTO t SELECT g, 'three' FROM generate_series(701, 800) g");
  ASSERT_TRUE(wait_for([&] { return pg.psql("postgres", "SELECT count(*) FROM pg_stat_replication") == "1\n"; }, 30))
      << "the receiver did not come back";
  wait_received();
  CliResult verify = run_backupctl({"verify", "--wal"}, env());
  EXPECT_EQ(verify.exit_code, 0) << verify.out << verify.err;
  CliResult r = run_backupctl({"restore", "db", "--to-time", "latest", "--target-db", "copy"}, confirmed());
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  EXPECT_EQ(pg.psql("copy", "SELECT v || ':' || count(*) FROM t GROUP BY v ORDER BY v"), "base:500\none:100\nthree:100\ntwo:100\n");
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

// The archived segments of the cluster's folder (wal/<id>/<segment>.zst), sorted.
std::vector<fs::path> archived_segments(const fs::path& backup_dir) {
  std::vector<fs::path> out;
  for (const auto& c : fs::directory_iterator(backup_dir / "wal")) {
    for (const auto& e : fs::directory_iterator(c.path())) {
      const std::string name = e.path().filename().string();
      if (name.size() == 28 && name.ends_with(".zst")) out.push_back(e.path());
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

// The server replays while the WAL is still being staged: a segment found damaged then stops the
// restore (the server waiting for it included) before the live database is touched.
TEST_F(PitrTest, ASegmentDamagedInTheArchiveStopsTheRestoreWhileItReplaysAndNothingChanges) {
  for (int i = 0; i < 4; ++i) pg.psql("archive", "INSERT INTO t VALUES (" + std::to_string(4000 + i) + ", 'x'); SELECT pg_switch_wal()");
  wait_received();
  ASSERT_TRUE(wait_for([&] { return archived_segments(dir.path()).size() >= 4; }, 20));
  pg.psql("archive", "DELETE FROM t WHERE id >= 4000");
  const std::vector<fs::path> segments = archived_segments(dir.path());
  const fs::path damaged = segments[segments.size() - 2];
  write_file_atomic(damaged, "not zstd");
  CliResult r = run_backupctl({"restore", "db", "--to-time", "latest"}, confirmed());
  EXPECT_EQ(r.exit_code, 5) << r.err;
  EXPECT_NE(r.err.find(damaged.filename().string().substr(0, 24) + " is not what its name says"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("hint:"), std::string::npos) << r.err;
  EXPECT_TRUE(list_dir(work.path()).empty()) << "left " << list_dir(work.path())[0];
  EXPECT_TRUE(processes_in(work.path()).empty()) << "still running " << processes_in(work.path())[0];
  EXPECT_TRUE(list_dir(dir.path() / "journal").empty());
  EXPECT_EQ(rows(), "base:500 ");
}

// The segments up to the base backup's end may be in its tar only (-X fetch): the server asks for
// them first, and must get "not staged" at once, not wait for them while the stager, 16 segments
// ahead, waits for the server.
TEST_F(PitrTest, SegmentsOnlyTheBaseBackupCarriesAreNeverWaitedFor) {
  for (int i = 0; i < 20; ++i) pg.psql("archive", "INSERT INTO t VALUES (" + std::to_string(5000 + i) + ", 'x'); SELECT pg_switch_wal()");
  wait_received();
  ASSERT_TRUE(wait_for([&] { return archived_segments(dir.path()).size() >= 20; }, 30));
  nlohmann::json meta;
  for (const auto& e : fs::directory_iterator(dir.path() / "base")) {
    if (e.path().extension() == ".meta") meta = nlohmann::json::parse(read_file(e.path()));
  }
  const std::string stop = meta["source"]["stop_lsn"];
  const std::uint64_t lsn = (std::stoull(stop.substr(0, stop.find('/')), nullptr, 16) << 32) |
                            std::stoull(stop.substr(stop.find('/') + 1), nullptr, 16);
  const std::uint64_t last_in_tar = lsn / (16u << 20);
  std::size_t removed = 0;
  for (const auto& f : archived_segments(dir.path())) {
    const std::string name = f.filename().string();
    const std::uint64_t segno = std::stoull(name.substr(8, 8), nullptr, 16) * 256 + std::stoull(name.substr(16, 8), nullptr, 16);
    if (segno <= last_in_tar) removed += fs::remove(f);
  }
  ASSERT_GT(removed, 0u);
  CliResult r = run_backupctl({"restore", "db", "--to-time", "latest", "--target-db", "copy"}, confirmed());
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  EXPECT_EQ(pg.psql("copy", "SELECT v || ':' || count(*) FROM t GROUP BY v ORDER BY v"), "base:500\nx:20\n");
  EXPECT_TRUE(list_dir(work.path()).empty());
}

TEST_F(PitrTest, VerifyWalNamesAGapAndTheNextBaseBackupClosesIt) {
  for (int i = 0; i < 3; ++i) pg.psql("archive", "INSERT INTO t VALUES (" + std::to_string(3000 + i) + ", 'x'); SELECT pg_switch_wal()");
  wait_received();
  // Archived, and gone from incoming/ (a segment archived is removed there next: deleted from the
  // archive before that, it would still be read from incoming/, no gap).
  auto finished_in_incoming = [&] {
    std::size_t n = 0;
    for (const auto& c : fs::directory_iterator(dir.path() / "wal")) {
      std::error_code ec;
      for (const auto& e : fs::directory_iterator(c.path() / "incoming", ec)) n += e.path().filename().string().size() == 24;
    }
    return n;
  };
  ASSERT_TRUE(wait_for([&] { return archived_segments(dir.path()).size() >= 3 && finished_in_incoming() == 0; }, 20));
  CliResult ok = run_backupctl({"verify", "--wal"}, env());
  EXPECT_EQ(ok.exit_code, 0) << ok.out << ok.err;
  EXPECT_NE(ok.out.find("WAL continuous from"), std::string::npos) << ok.out;

  // A segment after the base backup's start goes missing (deleted by hand, a disk error).
  const std::vector<fs::path> segments = archived_segments(dir.path());
  const fs::path lost = segments[segments.size() - 2];
  const std::string lost_name = lost.filename().string().substr(0, 24);
  fs::remove(lost);
  CliResult gap = run_backupctl({"verify", "--wal"}, env());
  EXPECT_EQ(gap.exit_code, 5) << gap.out << gap.err;
  EXPECT_NE(gap.out.find("FAIL"), std::string::npos) << gap.out;
  EXPECT_NE(gap.out.find(lost_name + " is missing"), std::string::npos) << gap.out;
  CliResult status = run_backupctl({"status", "--json"}, env());
  EXPECT_EQ(status.exit_code, 10) << status.err;
  EXPECT_EQ(nlohmann::json::parse(status.out)["wal"]["clusters"][0]["gap"], lost_name) << status.out;

  // A damaged segment is named too.
  const fs::path damaged = segments.front();
  write_file_atomic(damaged, "not zstd");
  CliResult bad = run_backupctl({"verify", "--wal"}, env());
  EXPECT_EQ(bad.exit_code, 5);
  EXPECT_NE(bad.out.find(damaged.filename().string().substr(0, 24) + ":"), std::string::npos) << bad.out;
  fs::remove(damaged);

  // A base backup now: the window starts again at its end; the hole is still named.
  CliResult base = run_backupctl({"backup", "base"}, env());
  ASSERT_EQ(base.exit_code, 0) << base.err;
  CliResult closed = run_backupctl({"verify", "--wal"}, env());
  EXPECT_EQ(closed.exit_code, 0) << closed.out << closed.err;
  EXPECT_NE(closed.out.find("gap"), std::string::npos) << closed.out;
  status = run_backupctl({"status", "--json"}, env());
  EXPECT_EQ(nlohmann::json::parse(status.out)["wal"]["clusters"][0]["gap"], "") << status.out;
}

TEST_F(PitrTest, ASlotThatLostWalNeverStopsThePrimaryAndTheReceiverClosesTheGap) {
  stop_receiver();
  pg.psql("postgres", "ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'");
  pg.psql("postgres", "SELECT pg_reload_conf()");
  for (int i = 0; i < 4; ++i) {
    pg.psql("archive", "INSERT INTO t SELECT g, 'more' FROM generate_series(" + std::to_string(10000 + i * 1000) + ", " +
                           std::to_string(10999 + i * 1000) + ") g; SELECT pg_switch_wal()");
  }
  pg.psql("postgres", "CHECKPOINT");
  ASSERT_TRUE(wait_for([&] { return pg.psql("postgres", "SELECT wal_status FROM pg_replication_slots") == "lost\n"; }, 20))
      << pg.psql("postgres", "SELECT wal_status, restart_lsn, pg_current_wal_lsn() FROM pg_replication_slots");
  // The primary runs on: commits do not wait for the receiver.
  pg.psql("archive", "INSERT INTO t VALUES (99999, 'still')");
  CliResult status = run_backupctl({"status"}, env());
  EXPECT_EQ(status.exit_code, 10) << status.out;
  EXPECT_NE(status.out.find("lost"), std::string::npos) << status.out;

  // The receiver makes the slot again and takes a base backup by itself to close the gap.
  start_receiver();
  ASSERT_TRUE(wait_for([&] { return list_dir(dir.path() / "base").size() >= 4; }, 120)) << list_dir(dir.path() / "base").size();
  auto wal_ok = [&] {
    auto j = nlohmann::json::parse(run_backupctl({"status", "--json"}, env()).out, nullptr, false);
    return !j.is_discarded() && j["wal"]["ok"] == true;
  };
  ASSERT_TRUE(wait_for(wal_ok, 30)) << run_backupctl({"status"}, env()).out;
  CliResult verify = run_backupctl({"verify", "--wal"}, env());
  EXPECT_EQ(verify.exit_code, 0) << verify.out << verify.err;
}

TEST_F(PitrTest, TheShippedAlertRulesPassTheirTestsAndNameOnlyMetricsBackupctlWrites) {
  const fs::path rules = fs::path(BACKUPCTL_SOURCE_DIR) / "examples/monitoring";
  RunResult promtool = run_command({.argv = {"promtool", "test", "rules", (rules / "backupctl.rules.test.yml").string()}});
  ASSERT_TRUE(promtool.status.ok()) << "promtool (Debian's prometheus package; tools/install-deps.sh): " << promtool.out << promtool.err;

  // The metrics file a run writes with continuous protection on: every family the rules use.
  TempDir metrics;
  EnvList e = env();
  e.emplace_back("BACKUP_METRICS_FILE", (metrics.path() / "backupctl.prom").string());
  CliResult r = run_backupctl({"backup", "base"}, e);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string written = read_file(metrics.path() / "backupctl.prom");
  const std::string text = read_file(rules / "backupctl.rules.yml");
  std::set<std::string> named;
  for (std::size_t at = text.find("backupctl_"); at != std::string::npos; at = text.find("backupctl_", at + 1)) {
    std::size_t end = at;
    while (end < text.size() && (std::isalnum(static_cast<unsigned char>(text[end])) || text[end] == '_')) ++end;
    named.insert(text.substr(at, end - at));
  }
  EXPECT_GE(named.size(), 10u);
  for (const auto& n : named) {
    if (n == "backupctl_remote_newest_copy_timestamp_seconds") continue;  // with BACKUP_REMOTE_URL only
    EXPECT_NE(written.find("# TYPE " + n + " gauge"), std::string::npos) << n << " is not in\n" << written;
  }
  std::string cluster = pg.psql("postgres", "SELECT system_identifier FROM pg_control_system()");
  cluster.pop_back();  // psql's newline
  EXPECT_NE(written.find("\",cluster=\"" + cluster + "\"}"), std::string::npos) << written;
  EXPECT_NE(written.find("backupctl_wal_receiver_up{"), std::string::npos) << written;
  EXPECT_NE(written.find("\"} 1\n", written.find("backupctl_wal_ok{")), std::string::npos) << written;
}

TEST_F(PitrTest, TheDrillRehearsesAMomentIntoStagingAndNamesIt) {
  pg.psql("archive", "INSERT INTO t SELECT g, 'before' FROM generate_series(501, 600) g");
  const std::string moment = now();
  pg.psql("archive", "INSERT INTO t SELECT g, 'after' FROM generate_series(601, 610) g");
  wait_received();
  // The checklist proves the moment in staging: the rows committed just before it, none after.
  TempDir checks;
  write_file_atomic(checks.path() / "checks.toml",
                    "[[check]]\nname = \"committed before the moment\"\nkind = \"sql\"\n"
                    "query = \"SELECT count(*) FROM t WHERE v = 'before'\"\nexpect = \"100\"\n\n"
                    "[[check]]\nname = \"nothing after it\"\nkind = \"sql\"\nquery = \"SELECT count(*) FROM t WHERE v = 'after'\"\n"
                    "expect = \"0\"\n");
  EnvList e = env();
  e.emplace_back("CHECKS_FILE", (checks.path() / "checks.toml").string());
  CliResult r = run_backupctl({"rehearse", "--to-time", moment, "--json"}, e);
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["rehearsal"]["to_time"], moment);
  EXPECT_NE(j["rehearsal"]["recovered_to"].get<std::string>().find("the last transaction replayed committed at"), std::string::npos)
      << j.dump(2);
  EXPECT_NE(j["rehearsal"]["recovered_to"].get<std::string>().find("stopped before the commit at"), std::string::npos) << j.dump(2);
  EXPECT_NE(read_file(j["report"].get<std::string>().substr(0, j["report"].get<std::string>().size() - 5) + ".md").find("moment: " + moment),
            std::string::npos);
  EXPECT_EQ(pg.psql("postgres", "SELECT count(*) FROM pg_database WHERE datname LIKE '%rehearsal%'"), "0\n") << "staging left";
  EXPECT_TRUE(list_dir(work.path()).empty());
  EXPECT_EQ(rows(), "after:10 base:500 before:100 ") << "the live database is untouched";

  // A moment chosen at random inside the window.
  CliResult random = run_backupctl({"rehearse", "--to-time", "random", "--json"}, env());
  ASSERT_EQ(random.exit_code, 0) << random.err << random.out;
  const nlohmann::json rj = nlohmann::json::parse(random.out);
  EXPECT_NE(rj["rehearsal"]["to_time"].get<std::string>(), "random");
  EXPECT_NE(rj["rehearsal"]["recovered_to"].get<std::string>().find("stopped before the commit at"), std::string::npos) << rj.dump(2);
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
