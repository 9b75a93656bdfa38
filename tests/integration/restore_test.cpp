// `backupctl restore db` / `restore undo` against a real PostgreSQL, with a real writer process as
// the app's services (SERVICE_CONTROL=command).
#include <gtest/gtest.h>
#include <signal.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>

#include "fixture.hpp"
#include "snapshot.hpp"
#include "writer.hpp"

namespace backupctl::test {

namespace {

// A server with database `archive` (heartbeat + documents + a bigger table), a backup of it, a
// writer standing in for api/worker/beat, and PG_BINDIR wrappers that log when pg_restore starts.
class RestoreTest : public ::testing::Test {
 protected:
  PgCluster pg;
  TempDir dir;
  Writer writer;  // the services, and the shared event log
  TempDir bin;
  fs::path dump;

  void SetUp() override {
    pg.create_database("archive");
    create_restore_tables(pg, "archive", 150000);
    for (const char* tool : {"pg_dump", "pg_dumpall", "psql"}) {
      write_file_atomic(bin.path() / tool, "#!/bin/sh\nexec " + pg.tool(tool) + " \"$@\"\n", 0755);
    }
    // Logs "pg_restore" when it restores into a database (not for --list or SQL extraction).
    write_file_atomic(bin.path() / "pg_restore",
                      "#!/bin/sh\ncase \"$*\" in *--dbname=*) echo \"$(date +%s%N) pg_restore\" >> " +
                          log().string() + ";; esac\nexec " + pg.tool("pg_restore") + " \"$@\"\n",
                      0755);
    CliResult r = run_backupctl({"backup", "db", "--json"}, env());
    ASSERT_EQ(r.exit_code, 0) << r.err;
    dump = nlohmann::json::parse(r.out)["path"].get<std::string>();
  }

  fs::path log() const { return writer.log(); }

  EnvList env() const {
    EnvList e = backup_env(pg, "archive", dir.path());
    e.emplace_back("PG_BINDIR", bin.path().string());
    for (const auto& v : writer.service_env()) e.push_back(v);
    return e;
  }

  EnvList confirmed() const {
    EnvList e = env();
    e.emplace_back("CONFIRM", "YES");
    return e;
  }

  void start_writer() { writer.start(pg, "archive"); }

  std::vector<std::string> databases() {
    std::string out = pg.psql("postgres", "SELECT datname FROM pg_database WHERE datname LIKE 'archive%' ORDER BY 1");
    std::vector<std::string> names;
    std::istringstream in(out);
    for (std::string line; std::getline(in, line);) names.push_back(line);
    return names;
  }

  // The writer must be running again at the end of every restore, successful or not.
  void expect_writer_running() { writer.expect_running(); }
};

}  // namespace

TEST_F(RestoreTest, WithoutConfirmPrintsThePlanAndChangesNothing) {
  start_writer();
  pg.psql("archive", "DELETE FROM documents WHERE id > 10");
  std::string before = snapshot(pg, "archive");
  CliResult r = run_backupctl({"restore", "db", "--file", dump.string()}, env());
  EXPECT_EQ(r.exit_code, 9) << r.err;
  EXPECT_NE(r.out.find("restore plan (nothing has been changed)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(dump.string()), std::string::npos);
  EXPECT_NE(r.out.find("sha256 matches the meta"), std::string::npos);
  EXPECT_NE(r.out.find("target:     database archive on the server (exists"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("services:   `writer.sh` and 2 arguments"), std::string::npos) << r.out;  // SERVICE_STOP_CMD: no arguments shown
  EXPECT_NE(r.err.find("not confirmed: nothing was changed"), std::string::npos);
  EXPECT_NE(r.err.find("CONFIRM=YES"), std::string::npos);
  EXPECT_EQ(first(read_events(log()), "stopped"), -1) << "services were stopped";
  EXPECT_EQ(snapshot(pg, "archive").substr(0, 100), before.substr(0, 100));
  EXPECT_EQ(pg.psql("archive", "SELECT count(*) FROM documents"), "10\n");
  EXPECT_EQ(databases(), std::vector<std::string>{"archive"});
}

TEST_F(RestoreTest, ServicesAreStoppedDuringTheRestoreAndRunningAfter) {
  start_writer();
  pg.psql("archive", "DELETE FROM documents; DROP TABLE big");
  CliResult r = run_backupctl({"restore", "db", "--json", "--file", dump.string()}, confirmed());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto report = nlohmann::json::parse(r.out);

  auto ev = read_events(log());
  long long stopped = first(ev, "stopped");
  long long restore = first(ev, "pg_restore");
  long long started = first(ev, "started", stopped);
  ASSERT_GT(stopped, 0);
  ASSERT_GT(restore, 0);
  EXPECT_LT(stopped, restore) << "pg_restore ran before the services were stopped";
  EXPECT_GT(started, restore);
  EXPECT_EQ(count_between(ev, "ok", stopped, started), 0) << "the writer wrote during the restore";
  expect_writer_running();

  EXPECT_EQ(pg.psql("archive", "SELECT count(*) FROM documents"), "1000\n");
  EXPECT_EQ(pg.psql("archive", "SELECT count(*) FROM big"), "150000\n");
  EXPECT_EQ(report["tables"]["public.documents"], 1000);
  EXPECT_EQ(report["tables"]["public.big"], 150000);
  for (const char* phase : {"roles", "create side database", "restore", "analyze and count rows", "swap"}) {
    EXPECT_TRUE(report["phases"].contains(phase)) << phase;
  }
  EXPECT_GT(report["services_down_seconds"].get<double>(), 0);
  // The replaced database is kept, with the rows deleted before the restore.
  std::string previous = report["previous"];
  EXPECT_TRUE(std::regex_match(previous, std::regex(R"(archive__pre_restore_\d{8}_\d{6})"))) << previous;
  EXPECT_EQ(databases(), (std::vector<std::string>{"archive", previous}));
  EXPECT_EQ(pg.psql(previous, "SELECT count(*) FROM documents"), "0\n");
}

TEST_F(RestoreTest, OnlineKeepsServicesUpUntilTheSwapAndLosesNoWrite) {
  start_writer();
  CliResult r = run_backupctl({"restore", "db", "--online", "--json", "--file", dump.string()}, confirmed());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto report = nlohmann::json::parse(r.out);
  auto ev = read_events(log());
  long long restore = first(ev, "pg_restore");
  long long stopped = first(ev, "stopped");
  long long started = first(ev, "started", stopped);
  ASSERT_GT(restore, 0);
  ASSERT_GT(stopped, restore) << "services stopped before the side restore";
  EXPECT_GT(count_between(ev, "ok", restore, stopped), 0) << "the writer did not write during the restore";
  EXPECT_LT((started - stopped) / 1e9, 5.0) << "write downtime";
  EXPECT_LT(report["services_down_seconds"].get<double>(), 5.0);
  expect_writer_running();

  // Every write made before the swap is in the kept database; the restored one has the backup's.
  int oks_before_swap = count_between(ev, "ok", 0, stopped);
  std::string previous = report["previous"];
  int kept = std::stoi(pg.psql(previous, "SELECT count(*) FROM heartbeat"));
  EXPECT_GE(kept, oks_before_swap);
  EXPECT_GE(oks_before_swap, 1);
}

TEST_F(RestoreTest, RichDatabaseRestoredOverAModifiedCopyEqualsTheOriginal) {
  PgCluster rich;
  create_rich_database(rich);
  std::string original = snapshot(rich, "rich");
  TempDir rdir;
  EnvList e = backup_env(rich, "rich", rdir.path());
  e.emplace_back("SERVICE_CONTROL", "none");
  CliResult b = run_backupctl({"backup", "db", "--json"}, e);
  ASSERT_EQ(b.exit_code, 0) << b.err;
  fs::path rich_dump = nlohmann::json::parse(b.out)["path"].get<std::string>();

  rich.psql("rich", "DELETE FROM app.ingest_jobs WHERE id % 2 = 0; DROP MATERIALIZED VIEW app.doc_stats;"
                    "UPDATE app.documents SET title = 'changed'; SELECT setval('app.invoice_no', 5000);"
                    "SELECT lo_unlink(min(oid)) FROM pg_largeobject_metadata;"
                    "ALTER DATABASE rich SET work_mem = '1MB'; REVOKE CONNECT ON DATABASE rich FROM PUBLIC;"
                    "CREATE TABLE app.extra (x int)");
  ASSERT_NE(snapshot(rich, "rich"), original);
  e.emplace_back("CONFIRM", "YES");
  CliResult r = run_backupctl({"restore", "db", "--file", rich_dump.string()}, e);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(snapshot(rich, "rich"), original);
  // Every table was analyzed (most while later tables loaded), and the statistics that need the
  // post-data section's objects were gathered after it: the expression index's and the
  // extended statistics'.
  EXPECT_EQ(rich.psql("rich", "SELECT string_agg(schemaname || '.' || relname, ',') FROM pg_stat_user_tables "
                              "WHERE last_analyze IS NULL"),
            "\n");
  EXPECT_EQ(rich.psql("rich", "SELECT count(*) > 0 FROM pg_stats WHERE schemaname = 'app' "
                              "AND tablename = 'documents_lower_title'"),
            "t\n");
  EXPECT_EQ(rich.psql("rich", "SELECT dependencies IS NOT NULL FROM pg_stats_ext "
                              "WHERE statistics_name = 'documents_status_owner'"),
            "t\n");
}

TEST_F(RestoreTest, FreshServerWithoutTheRolesGetsThemFromTheRolesFile) {
  PgCluster source;
  create_rich_database(source);
  std::string original = snapshot(source, "rich");
  TempDir rdir;
  EnvList e = backup_env(source, "rich", rdir.path());
  CliResult b = run_backupctl({"backup", "db", "--json"}, e);
  ASSERT_EQ(b.exit_code, 0) << b.err;
  fs::path rich_dump = nlohmann::json::parse(b.out)["path"].get<std::string>();

  PgCluster fresh;  // no roles archive_owner/archive_reader, no database rich
  EnvList f = backup_env(fresh, "rich", rdir.path());
  f.emplace_back("SERVICE_CONTROL", "none");
  CliResult plan = run_backupctl({"restore", "db", "--file", rich_dump.string()}, f);
  EXPECT_EQ(plan.exit_code, 9);
  EXPECT_NE(plan.out.find("will create archive_owner, archive_reader"), std::string::npos) << plan.out;
  EXPECT_NE(plan.out.find("does not exist yet"), std::string::npos) << plan.out;
  f.emplace_back("CONFIRM", "YES");
  CliResult r = run_backupctl({"restore", "db", "--json", "--file", rich_dump.string()}, f);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto report = nlohmann::json::parse(r.out);
  EXPECT_EQ(report["roles_created"], (nlohmann::json{"archive_owner", "archive_reader"}));
  EXPECT_EQ(report["previous"], "");
  EXPECT_EQ(snapshot(fresh, "rich"), original);
  // Roles get the attributes they had (LOGIN for the owner), existing ones are untouched.
  EXPECT_EQ(fresh.psql("postgres", "SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname LIKE "
                                   "'archive%' ORDER BY 1"),
            "archive_owner|t\narchive_reader|f\n");
}

TEST_F(RestoreTest, FlippedByteIsRefusedAndNothingIsTouched) {
  start_writer();
  pg.psql("archive", "DELETE FROM documents WHERE id > 500");
  {
    std::fstream f(dump, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(fs::file_size(dump) / 2));
    f.put('\x5a');
  }
  CliResult r = run_backupctl({"restore", "db", "--file", dump.string()}, confirmed());
  EXPECT_EQ(r.exit_code, 5) << r.err;
  EXPECT_NE(r.err.find("does not match its meta"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("nothing was touched"), std::string::npos) << r.err;
  EXPECT_EQ(first(read_events(log()), "stopped"), -1) << "services were stopped for a bad file";
  EXPECT_EQ(first(read_events(log()), "pg_restore"), -1);
  EXPECT_EQ(pg.psql("archive", "SELECT count(*) FROM documents"), "500\n");
  EXPECT_EQ(databases(), std::vector<std::string>{"archive"});

  // A byte of the header: pg_restore cannot read the table of contents (it may even crash on
  // such a file), and the cause named is still the file that is not its meta's.
  {
    std::fstream f(dump, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(6);
    f.put('\x7f');
  }
  CliResult header = run_backupctl({"restore", "db", "--file", dump.string()}, confirmed());
  EXPECT_EQ(header.exit_code, 5) << header.err;
  EXPECT_NE(header.err.find("does not match its meta: sha256"), std::string::npos) << header.err;
  EXPECT_EQ(databases(), std::vector<std::string>{"archive"});
}

TEST_F(RestoreTest, DumpWithoutMetaNeedsAnExplicitOptIn) {
  fs::remove(dump.string() + ".meta");
  CliResult r = run_backupctl({"restore", "db", "--file", dump.string()}, confirmed());
  EXPECT_EQ(r.exit_code, 5) << r.err;
  EXPECT_NE(r.err.find("--allow-no-meta"), std::string::npos) << r.err;
  EXPECT_EQ(databases(), std::vector<std::string>{"archive"});
  r = run_backupctl({"restore", "db", "--allow-no-meta", "--file", dump.string()}, confirmed());
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("has no meta"), std::string::npos) << r.err;
}

TEST_F(RestoreTest, CorruptCompressedDataWithoutMetaIsRefusedAndNothingIsTouched) {
  // No meta, so no sha256 to catch it: the inflater's own checks (deflate codes, Adler-32) must.
  fs::remove(dump.string() + ".meta");
  std::string bytes = read_file(dump);
  bytes[bytes.size() * 2 / 3] ^= 0x55;  // inside the table data, which follows the TOC
  write_file_atomic(dump, bytes, 0600);
  CliResult r = run_backupctl({"restore", "db", "--allow-no-meta", "--file", dump.string()}, confirmed());
  EXPECT_EQ(r.exit_code, 5) << r.err;
  EXPECT_NE(r.err.find("the archive is malformed"), std::string::npos) << r.err;
  EXPECT_EQ(databases(), std::vector<std::string>{"archive"});
}

TEST_F(RestoreTest, FailingPgRestoreLeavesTheOriginalAndNoSideDatabase) {
  // A dump that conflicts with the server: a table owned by a role that is gone, and no roles file
  // to bring it back, so pg_restore --exit-on-error stops half-way (after creating tables).
  pg.psql("postgres", "CREATE ROLE ghost");
  pg.psql("archive", "CREATE TABLE haunted (x int); ALTER TABLE haunted OWNER TO ghost");
  CliResult b = run_backupctl({"backup", "db", "--json"}, env());
  ASSERT_EQ(b.exit_code, 0);
  fs::path conflicting = nlohmann::json::parse(b.out)["path"].get<std::string>();
  auto meta = nlohmann::json::parse(read_file(conflicting.string() + ".meta"));
  fs::remove(dir.path() / "db" / meta["parts"]["roles"]["file"].get<std::string>());
  pg.psql("archive", "DROP TABLE haunted");
  pg.psql("postgres", "DROP ROLE ghost");
  pg.psql("archive", "DELETE FROM documents WHERE id > 100");

  start_writer();
  CliResult r = run_backupctl({"restore", "db", "--file", conflicting.string()}, confirmed());
  EXPECT_EQ(r.exit_code, 7) << r.err;
  EXPECT_NE(r.err.find("pg_restore failed"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("role \"ghost\" does not exist"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("the database archive was not changed"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("server log"), std::string::npos) << r.err;
  EXPECT_EQ(pg.psql("archive", "SELECT count(*) FROM documents"), "100\n");
  EXPECT_EQ(databases(), std::vector<std::string>{"archive"});
  expect_writer_running();
}

TEST_F(RestoreTest, PgRestoreKilledMidwayLeavesTheOriginal) {
  start_writer();
  pg.psql("archive", "DELETE FROM documents WHERE id > 100");
  // One job: pg_restore loads the data itself (with more, backupctl's loader does).
  EnvList e = confirmed();
  e.emplace_back("RESTORE_JOBS", "1");
  Child c = spawn_backupctl({"restore", "db", "--file", dump.string()}, e);
  // Wait until pg_restore has created tables in the side database, then kill it.
  std::vector<pid_t> restores;
  ASSERT_TRUE(wait_for([&] {
    restores = child_pids(c.pid(), "pg_restore");
    if (restores.empty()) return false;
    std::string side = pg.psql("postgres", "SELECT datname FROM pg_database WHERE datname LIKE 'archive__restore_%'");
    if (side.empty()) return false;
    side.pop_back();
    RunResult n = pg.psql_raw(side, "SELECT count(*) FROM pg_class WHERE relname = 'documents'", true);
    return n.out == "1\n";
  }, 30)) << "pg_restore never got going";
  for (pid_t p : restores) ::kill(p, SIGKILL);
  c.drain();
  ExitStatus s = c.wait();
  EXPECT_EQ(s.code, 7) << c.stderr_tail();
  EXPECT_NE(c.stderr_tail().find("pg_restore was killed by signal 9"), std::string::npos) << c.stderr_tail();
  EXPECT_EQ(pg.psql("archive", "SELECT count(*) FROM documents"), "100\n");
  EXPECT_EQ(databases(), std::vector<std::string>{"archive"});
  expect_writer_running();
}

TEST_F(RestoreTest, LoaderConnectionLostMidwayLeavesTheOriginal) {
  start_writer();
  pg.psql("archive", "DELETE FROM documents WHERE id > 100");
  EnvList e = confirmed();
  e.emplace_back("RESTORE_JOBS", "2");
  Child c = spawn_backupctl({"restore", "db", "--file", dump.string()}, e);
  // Wait until one of the loader's connections is copying into the side database, then end it.
  ASSERT_TRUE(wait_for([&] {
    std::string killed = pg.psql(
        "postgres",
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname LIKE 'archive__restore_%' "
        "AND query LIKE 'COPY %' AND application_name = 'backupctl'");
    return killed != "0\n";
  }, 30)) << "the loader never got going";
  c.drain();
  ExitStatus s = c.wait();
  EXPECT_EQ(s.code, 3) << c.stderr_tail();
  EXPECT_NE(c.stderr_tail().find("loading the data of public."), std::string::npos) << c.stderr_tail();
  EXPECT_NE(c.stderr_tail().find("was not changed and the side database is dropped"), std::string::npos)
      << c.stderr_tail();
  EXPECT_EQ(pg.psql("archive", "SELECT count(*) FROM documents"), "100\n");
  EXPECT_EQ(databases(), std::vector<std::string>{"archive"});
  expect_writer_running();
}

TEST_F(RestoreTest, SigtermDuringTheRestoreLeavesTheOriginalAndRestartsServices) {
  start_writer();
  pg.psql("archive", "DELETE FROM documents WHERE id > 100");
  Child c = spawn_backupctl({"restore", "db", "--file", dump.string()}, confirmed());
  // Mid-restore: the services are stopped, the side database exists and pg_restore is loading it.
  ASSERT_TRUE(wait_for([&] {
    if (first(read_events(log()), "pg_restore") < 0) return false;
    return pg.psql("postgres", "SELECT count(*) FROM pg_database WHERE datname LIKE 'archive__restore_%'") == "1\n";
  }, 30)) << "the restore never got going";
  ::kill(c.pid(), SIGTERM);
  c.drain();
  ExitStatus s = c.wait();
  EXPECT_EQ(s.code, 143) << c.stderr_tail();
  EXPECT_NE(c.stderr_tail().find("interrupted by SIGTERM"), std::string::npos) << c.stderr_tail();
  EXPECT_EQ(pg.psql("archive", "SELECT count(*) FROM documents"), "100\n");
  EXPECT_EQ(databases(), std::vector<std::string>{"archive"});
  expect_writer_running();
}

TEST_F(RestoreTest, UndoBringsBackThePreviousData) {
  pg.psql("archive", "DELETE FROM documents WHERE id > 7");
  CliResult r = run_backupctl({"restore", "db", "--file", dump.string()}, confirmed());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(pg.psql("archive", "SELECT count(*) FROM documents"), "1000\n");
  EXPECT_NE(r.out.find("backupctl restore undo"), std::string::npos) << r.out;

  CliResult plan = run_backupctl({"restore", "undo"}, env());
  EXPECT_EQ(plan.exit_code, 9);
  EXPECT_NE(plan.out.find("undo plan"), std::string::npos);
  EXPECT_EQ(pg.psql("archive", "SELECT count(*) FROM documents"), "1000\n");

  start_writer();
  CliResult undo = run_backupctl({"restore", "undo"}, confirmed());
  ASSERT_EQ(undo.exit_code, 0) << undo.err;
  EXPECT_EQ(pg.psql("archive", "SELECT count(*) FROM documents"), "7\n");
  expect_writer_running();
  // The undo is itself undoable: the restored copy was kept.
  CliResult redo = run_backupctl({"restore", "undo"}, confirmed());
  ASSERT_EQ(redo.exit_code, 0) << redo.err;
  EXPECT_EQ(pg.psql("archive", "SELECT count(*) FROM documents"), "1000\n");
}

TEST_F(RestoreTest, RestoresAndUndosInTheSameSecondGetTheirOwnNames) {
  // A quick restore, another at once, and two undos: each kept copy needs a name of its own even
  // when they fall in one second (the second waits for the next one).
  pg.psql("archive", "DELETE FROM documents WHERE id > 7");
  for (int i = 0; i < 2; ++i) {
    CliResult r = run_backupctl({"restore", "db", "--file", dump.string()}, confirmed());
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  auto names = databases();
  EXPECT_EQ(names.size(), 3u) << "archive and two previous copies";
  CliResult undo = run_backupctl({"restore", "undo"}, confirmed());
  ASSERT_EQ(undo.exit_code, 0) << undo.err;
  EXPECT_EQ(pg.psql("archive", "SELECT count(*) FROM documents"), "1000\n");
  CliResult again = run_backupctl({"restore", "undo"}, confirmed());
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(databases().size(), 3u);
}

TEST_F(RestoreTest, InPlaceTakesASafetyDumpAndPutsItBackOnFailure) {
  pg.psql("archive", "DELETE FROM documents WHERE id > 3");
  CliResult ok = run_backupctl({"restore", "db", "--in-place", "--json", "--file", dump.string()}, confirmed());
  ASSERT_EQ(ok.exit_code, 0) << ok.err;
  auto report = nlohmann::json::parse(ok.out);
  EXPECT_EQ(pg.psql("archive", "SELECT count(*) FROM documents"), "1000\n");
  fs::path safety = report["safety_dump"].get<std::string>();
  ASSERT_TRUE(fs::exists(safety));
  EXPECT_EQ(databases(), std::vector<std::string>{"archive"});

  // A failing in-place restore: the database comes back from the safety dump.
  pg.psql("archive", "DELETE FROM documents WHERE id > 42");
  write_file_atomic(dir.path() / "broken.sql",
                    "CREATE TABLE t (x int);\nINSERT INTO t VALUES (1);\nTHIS IS NOT SQL;\n");
  CliResult bad = run_backupctl({"restore", "db", "--in-place", "--allow-no-meta", "--file",
                                 (dir.path() / "broken.sql").string()},
                                confirmed());
  EXPECT_EQ(bad.exit_code, 7) << bad.err;
  EXPECT_NE(bad.err.find("put back from the safety dump"), std::string::npos) << bad.err;
  EXPECT_EQ(pg.psql("archive", "SELECT count(*) FROM documents"), "42\n");
}

TEST_F(RestoreTest, PlainSqlGzipAndZstdDumpsRestore) {
  pg.psql("archive", "DROP TABLE big");
  RunResult sql = run_command({.argv = {pg.tool("pg_dump"), "--format=plain", "--file",
                                        (dir.path() / "plain.sql").string(), "archive"},
                               .env = pg.env("archive")});
  ASSERT_TRUE(sql.status.ok()) << sql.err;
  fs::copy_file(dir.path() / "plain.sql", dir.path() / "gz.sql");
  ASSERT_TRUE(run_command({.argv = {"gzip", (dir.path() / "gz.sql").string()}}).status.ok());
  EnvList zenv = env();
  zenv.emplace_back("BACKUP_DB_COMPRESSION", "zstd");
  CliResult z = run_backupctl({"backup", "db", "--json"}, zenv);
  ASSERT_EQ(z.exit_code, 0) << z.err;
  fs::path zst = nlohmann::json::parse(z.out)["path"].get<std::string>();

  // A custom-format dump made with --inserts has no COPY data: pg_restore loads all of it.
  RunResult inserts = run_command({.argv = {pg.tool("pg_dump"), "--format=custom", "--inserts", "--file",
                                            (dir.path() / "inserts.dump").string(), "archive"},
                                   .env = pg.env("archive")});
  ASSERT_TRUE(inserts.status.ok()) << inserts.err;

  // A .dump.zst streams through the archive reader, which counts the COPY lines per table and
  // checks the restored tables against them; with one job it feeds a single pg_restore, with more
  // backupctl's loader.
  for (const auto& [f, jobs] : std::vector<std::pair<fs::path, std::string>>{
           {dir.path() / "plain.sql", "2"}, {dir.path() / "gz.sql.gz", "2"}, {zst, "1"}, {zst, "2"},
           {dir.path() / "inserts.dump", "2"}}) {
    pg.psql("archive", "DELETE FROM documents");
    EnvList e = confirmed();
    e.emplace_back("RESTORE_JOBS", jobs);
    CliResult r = run_backupctl({"restore", "db", "--json", "--allow-no-meta", "--file", f.string()}, e);
    ASSERT_EQ(r.exit_code, 0) << f << ": " << r.err;
    // (--inserts data is not COPY text: no rows to compare with.)
    EXPECT_EQ(nlohmann::json::parse(r.out)["rows_checked"], f == zst) << f;
    EXPECT_EQ(pg.psql("archive", "SELECT count(*), sum(id) FROM documents"), "1000|500500\n") << f << " " << jobs;
  }
}

TEST(RestoreServices, ComposeControllerRunsTheExactDockerComposeCommands) {
  // A stand-in `docker` on PATH records its argv (compose_test.cpp drives a real engine; this one
  // makes the stop fail on purpose): v2's command line, found by `docker compose version`.
  PgCluster pg;
  pg.create_database("archive");
  TempDir app, fake, dir;
  make_dirs(app.path() / "infra");
  write_file_atomic(app.path() / "infra/docker-compose.yml", "services: {}\n");
  write_file_atomic(fake.path() / "docker",
                    "#!/bin/sh\nprintf '%s|' \"$@\" >> " + (fake.path() / "argv").string() +
                        "\necho >> " + (fake.path() / "argv").string() + "\n",
                    0755);
  EnvList e = backup_env(pg, "archive", dir.path());
  CliResult b = run_backupctl({"backup", "db", "--json"}, e);
  ASSERT_EQ(b.exit_code, 0) << b.err;
  std::string dump = nlohmann::json::parse(b.out)["path"];
  e.emplace_back("PATH", fake.path().string() + ":" + std::getenv("PATH"));
  e.emplace_back("APP_ROOT", app.path().string());
  e.emplace_back("CONFIRM", "YES");
  CliResult r = run_backupctl({"restore", "db", "--file", dump}, e);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::string compose = (app.path() / "infra/docker-compose.yml").string();
  EXPECT_EQ(read_file(fake.path() / "argv"),
            "compose|version|\n"
            "compose|-f|" + compose + "|stop|api|worker|beat|\n"
            "compose|-f|" + compose + "|start|api|worker|beat|\n");

  // A failing stop aborts before anything changes, and what may have stopped is started again.
  write_file_atomic(fake.path() / "docker",
                    "#!/bin/sh\nprintf '%s|' \"$@\" >> " + (fake.path() / "argv2").string() +
                        "\necho >> " + (fake.path() / "argv2").string() +
                        "\n[ \"$4\" = stop ] && { echo 'Cannot connect to the Docker daemon' >&2; exit 1; }\nexit 0\n",
                    0755);
  pg.psql("archive", "CREATE TABLE marker (x int)");
  r = run_backupctl({"restore", "db", "--file", dump}, e);
  EXPECT_EQ(r.exit_code, 7) << r.err;
  EXPECT_NE(r.err.find("cannot stop the services"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("Cannot connect to the Docker daemon"), std::string::npos) << r.err;
  EXPECT_EQ(read_file(fake.path() / "argv2"),
            "compose|version|\n"
            "compose|-f|" + compose + "|stop|api|worker|beat|\n"
            "compose|-f|" + compose + "|start|api|worker|beat|\n");
  EXPECT_EQ(pg.psql("archive", "SELECT count(*) FROM marker"), "0\n");  // not restored over

  // Without the compose file: a clear error before anything happens.
  fs::remove(app.path() / "infra/docker-compose.yml");
  r = run_backupctl({"restore", "db", "--file", dump}, e);
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("SERVICE_CONTROL=compose but"), std::string::npos) << r.err;
}

TEST(RestoreServices, SystemdControllerRunsSystemctl) {
  PgCluster pg;
  pg.create_database("archive");
  TempDir fake, dir;
  write_file_atomic(fake.path() / "systemctl",
                    "#!/bin/sh\necho \"$*\" >> " + (fake.path() / "argv").string() + "\n", 0755);
  EnvList e = backup_env(pg, "archive", dir.path());
  CliResult b = run_backupctl({"backup", "db", "--json"}, e);
  ASSERT_EQ(b.exit_code, 0) << b.err;
  e.emplace_back("PATH", fake.path().string() + ":" + std::getenv("PATH"));
  e.emplace_back("SERVICE_CONTROL", "systemd");
  e.emplace_back("APP_SERVICES", "archive-api archive-worker");
  e.emplace_back("CONFIRM", "YES");
  CliResult r = run_backupctl({"restore", "db", "--online", "--file",
                               nlohmann::json::parse(b.out)["path"].get<std::string>()}, e);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read_file(fake.path() / "argv"),
            "stop archive-api archive-worker\nstart archive-api archive-worker\n");
}

}  // namespace backupctl::test
