// Bad input and faults during `backup db`: each gets one clear error line with a hint, a
// documented exit code, and leaves nothing in BACKUP_DIR that looks like a backup.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include "fixture.hpp"

namespace backupctl::test {

namespace {

// The error line and the hint line, and nothing that looks like a backup under `dir`.
void expect_clean_failure(const CliResult& r, int exit_code, const std::string& must_contain,
                          const fs::path& dir) {
  EXPECT_EQ(r.exit_code, exit_code) << r.err;
  EXPECT_NE(r.err.find("backupctl: error: "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(must_contain), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("\nhint: "), std::string::npos) << r.err;
  for (const auto& f : list_dir(dir / "db")) {
    ADD_FAILURE() << "left behind: " << f;
  }
}

void make_big_table(const PgCluster& pg, const std::string& db, int rows) {
  pg.psql(db, "CREATE TABLE big AS SELECT i, repeat(md5(i::text), 20) AS filler FROM "
              "generate_series(1, " + std::to_string(rows) + ") i");
}

}  // namespace

TEST(BackupFaults, ServerUnreachable) {
  TempDir dir;
  CliResult r = run_backupctl({"backup", "db"}, {{"PGHOST", "127.0.0.1"},
                                                 {"PGPORT", "1"},
                                                 {"PGUSER", "postgres"},
                                                 {"BACKUP_DIR", dir.path().string()}});
  expect_clean_failure(r, 3, "cannot connect to PostgreSQL at postgres@127.0.0.1:1/archive", dir.path());
  EXPECT_NE(r.err.find("PGHOST"), std::string::npos);
}

TEST(BackupFaults, AuthenticationFailed) {
  PgCluster pg;
  pg.psql("postgres", "CREATE ROLE pwuser LOGIN PASSWORD 'right'");
  pg.create_database("archive");
  TempDir dir;
  EnvList env = backup_env(pg, "archive", dir.path());
  env.emplace_back("PGUSER", "pwuser");
  env.emplace_back("PGPASSWORD", "wrong");
  CliResult r = run_backupctl({"backup", "db"}, env);
  expect_clean_failure(r, 3, "authentication failed", dir.path());
  EXPECT_NE(r.err.find("PGPASSWORD"), std::string::npos);
  EXPECT_EQ(r.err.find("wrong"), std::string::npos) << "the password was printed";
}

TEST(BackupFaults, DatabaseMissing) {
  PgCluster pg;
  TempDir dir;
  CliResult r = run_backupctl({"backup", "db"}, backup_env(pg, "nosuchdb", dir.path()));
  expect_clean_failure(r, 4, "database \"nosuchdb\" does not exist", dir.path());
}

TEST(BackupFaults, InvalidSettingsAreRefusedBeforeAnythingHappens) {
  TempDir dir;
  struct Case {
    std::string var, value, message;
  } cases[] = {
      {"BACKUP_DB_COMPRESSION", "banana", "invalid BACKUP_DB_COMPRESSION='banana'"},
      {"BACKUP_DB_COMPRESSION", "gzip:12", "invalid BACKUP_DB_COMPRESSION='gzip:12'"},
      {"PGPORT", "54x", "invalid PGPORT='54x'"},
      {"BACKUP_RETENTION_DAYS", "-5", "invalid BACKUP_RETENTION_DAYS='-5'"},
      {"BACKUP_ZSTD_THREADS", "0", "invalid BACKUP_ZSTD_THREADS='0'"},
      {"DATABASE_URL", "postgresql://u:pw@host:notaport/db", "invalid DATABASE_URL"},
  };
  for (const auto& c : cases) {
    fs::path backup_dir = dir.path() / "b";
    CliResult r = run_backupctl({"backup", "db"}, {{"BACKUP_DIR", backup_dir.string()},
                                                   {"PGHOST", "127.0.0.1"},
                                                   {"PGPORT", "1"},
                                                   {c.var, c.value}});
    EXPECT_EQ(r.exit_code, 2) << c.var << "=" << c.value << ": " << r.err;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("hint: "), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(backup_dir)) << "created BACKUP_DIR despite bad settings";
  }
}

TEST(BackupFaults, BadEnvFileIsNamedWithItsLine) {
  TempDir dir;
  write_file_atomic(dir.path() / "env", "PGHOST=x\nnot an assignment\n");
  CliResult r = run_backupctl({"--env-file", (dir.path() / "env").string(), "backup", "db"}, {});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find((dir.path() / "env").string() + ":2: expected KEY=VALUE"), std::string::npos)
      << r.err;
}

TEST(BackupFaults, BackupDirIsAFile) {
  PgCluster pg;
  pg.create_database("archive");
  TempDir dir;
  write_file_atomic(dir.path() / "db", "I am a file");
  CliResult r = run_backupctl({"backup", "db"}, backup_env(pg, "archive", dir.path()));
  EXPECT_EQ(r.exit_code, 6) << r.err;
  EXPECT_NE(r.err.find("not a directory"), std::string::npos) << r.err;
  EXPECT_EQ(read_file(dir.path() / "db"), "I am a file");
}

TEST(BackupFaults, BackupDirNotWritable) {
  PgCluster pg;
  pg.create_database("archive");
  TempDir dir;
  fs::path ro = dir.path() / "readonly";
  make_dirs(ro / "db", 0755);
  ::chmod((ro / "db").c_str(), 0555);
  ::chmod(dir.path().c_str(), 0755);
  std::vector<std::string> args = {"backup", "db"};
  CliResult r;
  if (::geteuid() == 0) {
    // root writes anywhere: run as nobody, for whom the directory is read-only.
    EnvList env = backup_env(pg, "archive", ro);
    std::vector<std::string> argv = {"setpriv", "--reuid=nobody", "--regid=nogroup",
                                     "--clear-groups", BACKUPCTL_BIN, "backup", "db"};
    EnvList full = env;
    full.emplace_back("PATH", std::getenv("PATH"));
    RunResult rr = run_command({.argv = argv, .env = full});
    r.exit_code = rr.status.signal ? 128 + rr.status.signal : rr.status.code;
    r.out = rr.out;
    r.err = rr.err;
  } else {
    r = run_backupctl(args, backup_env(pg, "archive", ro));
  }
  expect_clean_failure(r, 6, "Permission denied", ro);
  EXPECT_NE(r.err.find(ro.string()), std::string::npos) << r.err;
}

TEST(BackupFaults, DiskFullViaFileSizeLimit) {
  PgCluster pg;
  pg.create_database("archive");
  make_big_table(pg, "archive", 20000);
  TempDir dir;
  // RLIMIT_FSIZE of 256 KiB: the dump (several MB) hits EFBIG, as on a full disk.
  std::vector<std::string> argv = {"prlimit", "--fsize=262144", BACKUPCTL_BIN, "backup", "db"};
  EnvList env = backup_env(pg, "archive", dir.path());
  env.emplace_back("BACKUP_DB_COMPRESSION", "none");
  env.emplace_back("PATH", std::getenv("PATH"));
  RunResult rr = run_command({.argv = argv, .env = env});
  CliResult r{rr.status.code, rr.out, rr.err};
  expect_clean_failure(r, 6, "File too large", dir.path());
  EXPECT_NE(r.err.find("full"), std::string::npos) << r.err;
}

TEST(BackupFaults, DiskFullOnASmallTmpfs) {
  PgCluster pg;
  pg.create_database("archive");
  make_big_table(pg, "archive", 20000);
  TempDir dir;
  if (::mount("tmpfs", dir.path().c_str(), "tmpfs", 0, "size=512k") != 0) {
    GTEST_SKIP() << "cannot mount a tmpfs here (needs CAP_SYS_ADMIN); DiskFullViaFileSizeLimit "
                    "covers the same path";
  }
  EnvList env = backup_env(pg, "archive", dir.path());
  env.emplace_back("BACKUP_DB_COMPRESSION", "none");
  CliResult r = run_backupctl({"backup", "db"}, env);
  auto left = list_dir(dir.path() / "db");
  ::umount2(dir.path().c_str(), MNT_DETACH);
  EXPECT_EQ(r.exit_code, 6) << r.err;
  EXPECT_NE(r.err.find("No space left on device"), std::string::npos) << r.err;
  EXPECT_TRUE(left.empty()) << left.size() << " files left, first: " << left[0];
}

TEST(BackupFaults, PgDumpKilledMidwayLeavesNoPartial) {
  PgCluster pg;
  pg.create_database("archive");
  make_big_table(pg, "archive", 100000);
  TempDir dir;
  EnvList env = backup_env(pg, "archive", dir.path());
  env.emplace_back("BACKUP_DB_COMPRESSION", "none");
  Child c = spawn_backupctl({"backup", "db"}, env);
  // Wait until data flows into the .partial, then freeze backupctl so pg_dump blocks on the full
  // pipe mid-way, and kill pg_dump there.
  auto partial_has_data = [&] {
    for (const auto& f : list_dir(dir.path() / "db")) {
      if (f.ends_with(".dump.partial") && fs::file_size(dir.path() / "db" / f) > 0) return true;
    }
    return false;
  };
  ASSERT_TRUE(wait_for(partial_has_data, 30)) << "the dump never started";
  ::kill(c.pid(), SIGSTOP);
  auto dumps = child_pids(c.pid(), "pg_dump");
  ASSERT_EQ(dumps.size(), 1u) << "pg_dump already finished; make the table bigger";
  ::kill(dumps[0], SIGKILL);
  ::kill(c.pid(), SIGCONT);
  std::string out = c.drain();
  ExitStatus s = c.wait();
  EXPECT_EQ(s.code, 7) << c.stderr_tail();
  EXPECT_NE(c.stderr_tail().find("pg_dump was killed by signal 9"), std::string::npos)
      << c.stderr_tail();
  EXPECT_TRUE(list_dir(dir.path() / "db").empty());
}

TEST(BackupFaults, SigtermDuringTheDumpStopsPgDumpAndCleansUp) {
  PgCluster pg;
  pg.create_database("archive");
  make_big_table(pg, "archive", 100000);
  TempDir dir;
  EnvList env = backup_env(pg, "archive", dir.path());
  env.emplace_back("BACKUP_DB_COMPRESSION", "none");
  Child c = spawn_backupctl({"backup", "db"}, env);
  // Wait for the dump itself (not the `pg_dump --version` probe before it): data in the .partial.
  std::vector<pid_t> dumps;
  ASSERT_TRUE(wait_for([&] {
    for (const auto& f : list_dir(dir.path() / "db")) {
      std::error_code ec;
      if (f.ends_with(".dump.partial") && fs::file_size(dir.path() / "db" / f, ec) > 0) {
        return !(dumps = child_pids(c.pid(), "pg_dump")).empty();
      }
    }
    return false;
  }, 30));
  // Freeze backupctl so pg_dump stalls on the full pipe, then deliver SIGTERM mid-dump.
  ::kill(c.pid(), SIGSTOP);
  pid_t dump_pid = dumps[0];
  ASSERT_EQ(::kill(dump_pid, 0), 0) << "pg_dump already finished; make the table bigger";
  ::kill(c.pid(), SIGTERM);
  ::kill(c.pid(), SIGCONT);
  c.drain();
  ExitStatus s = c.wait();
  EXPECT_EQ(s.code, 128 + SIGTERM) << c.stderr_tail();
  EXPECT_NE(c.stderr_tail().find("interrupted by SIGTERM"), std::string::npos);
  EXPECT_TRUE(list_dir(dir.path() / "db").empty());
  EXPECT_NE(::kill(dump_pid, 0), 0) << "pg_dump still running after backupctl exited";
}

TEST(BackupFaults, PgDumpOlderThanTheServerNamesTheFix) {
  PgCluster pg;
  pg.create_database("archive");
  // Debian 12 ships only PostgreSQL 15, so an older pg_dump is simulated by a program that reports
  // version 11 (the check reads `pg_dump --version`, which is all this needs).
  TempDir bin;
  for (const char* tool : {"pg_dump", "pg_dumpall"}) {
    write_file_atomic(bin.path() / tool, "#!/bin/sh\necho 'pg_dump (PostgreSQL) 11.22'\n", 0755);
  }
  TempDir dir;
  EnvList env = backup_env(pg, "archive", dir.path());
  env.emplace_back("PG_BINDIR", bin.path().string());
  CliResult r = run_backupctl({"backup", "db"}, env);
  expect_clean_failure(r, 2, "pg_dump 11.22", dir.path());
  EXPECT_NE(r.err.find("older than the server (PostgreSQL 15)"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("postgresql-client-15"), std::string::npos) << r.err;
}

}  // namespace backupctl::test
