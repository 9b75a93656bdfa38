// The real stack: the sample app under docker compose on a real docker engine (Debian's dockerd,
// started for each test by tools/docker-throwaway.sh with its own socket and roots; images built
// locally from a debootstrap base, cached between runs), driven with SERVICE_CONTROL=compose
// through the real compose v1 (Debian's docker-compose 1.29) and v2's command line (`docker
// compose`, the plugin Debian does not package: a stand-in `docker` that logs its argv and hands
// `compose ...` to v1). What is checked is what the operator sees: the containers' states from
// the engine while the restore runs and after it, the rows, the api's answers.
//
// Where no engine can start (not root, no docker.io), the tests are skipped with the reason;
// BACKUPCTL_REQUIRE_DOCKER=1 (set by .ci/run) turns that into a failure.
#include <gtest/gtest.h>
#include <signal.h>

#include <nlohmann/json.hpp>
#include <algorithm>
#include <sstream>
#include <thread>

#include "config/config.hpp"
#include "fixture.hpp"
#include "util/env.hpp"
#include "util/process.hpp"

namespace backupctl::test {

namespace {

const fs::path kSource = BACKUPCTL_SOURCE_DIR;

class ComposeStack : public ::testing::Test {
 protected:
  TempDir root;
  fs::path engine, app, backups, objects;
  std::string docker_host, project;
  int pg_port = 0, api_port = 0;
  bool engine_up = false, stack_up = false;

  void SetUp() override {
    fs::permissions(root.path(), fs::perms(0755));
    engine = root.path() / "docker";
    app = root.path() / "app";
    backups = root.path() / "backup";
    objects = root.path() / "objects";
    make_dirs(app / "infra");
    make_dirs(objects);
    RunResult start = run_command(
        {.argv = {(kSource / "tools/docker-throwaway.sh").string(), "start", engine.string()}});
    if (!start.status.ok()) {
      std::string why = "no docker engine could start here: " + last_lines(start.err, 2);
      if (env_value("BACKUPCTL_REQUIRE_DOCKER")) FAIL() << why;
      GTEST_SKIP() << why;
    }
    engine_up = true;
    docker_host = "unix://" + (engine / "docker.sock").string();
    RunResult image = run_command(
        {.argv = {(kSource / "tools/docker-throwaway.sh").string(), "image", engine.string(),
                  "backupctl-test/stack", (kSource / "tests/integration/compose").string()}});
    ASSERT_TRUE(image.status.ok()) << image.err;
    pg_port = free_port();
    api_port = free_port();
    project = "stack" + std::to_string(::getpid());
    fs::copy_file(kSource / "tests/integration/compose/docker-compose.yml",
                  app / "infra/docker-compose.yml");
    fs::copy_file(kSource / "infra/backup-checks.toml", app / "infra/backup-checks.toml");
    // The stack's env file names the project, as compose's own .env would.
    write_file_atomic(app / "infra/env",
                      "COMPOSE_PROJECT_NAME=" + project + "\nPOSTGRES_PASSWORD=stack-secret\n",
                      0600);
    RunResult up = compose({"up", "-d"});
    ASSERT_TRUE(up.status.ok()) << up.err;
    stack_up = true;
    ASSERT_TRUE(wait_for(
        [&] {
          return run_command(
                     {.argv = {"psql", "-X", "-qAt", "-c", "SELECT 1", "archive"}, .env = pg_env()})
              .status.ok();
        },
        60))
        << "the postgres container did not accept connections";
    RunResult gen =
        run_command({.argv = {ARCHIVE_APP_BIN, "generate", "--documents", "40", "--schema",
                              (kSource / "examples/archive-app/schema.sql").string()},
                     .env = app_env()});
    ASSERT_TRUE(gen.status.ok()) << gen.err;
    ASSERT_TRUE(wait_for([&] { return api_answers(api_port); }, 30))
        << "the api container does not answer";
  }

  void TearDown() override {
    if (stack_up) compose({"down", "-v", "--timeout", "2"});
    if (engine_up)
      run_command(
          {.argv = {(kSource / "tools/docker-throwaway.sh").string(), "stop", engine.string()}});
  }

  EnvList pg_env() const {
    return {{"PGHOST", "127.0.0.1"},   {"PGPORT", std::to_string(pg_port)},
            {"PGUSER", "archive"},     {"PGPASSWORD", "stack-secret"},
            {"PGDATABASE", "archive"}, {"DATABASE_URL", std::nullopt}};
  }
  // What compose interpolates, and the app's settings on the host.
  EnvList app_env() const {
    EnvList e = pg_env();
    e.emplace_back("DOCKER_HOST", docker_host);
    e.emplace_back("POSTGRES_PASSWORD", "stack-secret");
    e.emplace_back("API_PORT", std::to_string(api_port));
    e.emplace_back("ARCHIVE_APP", archive_app_binary());
    e.emplace_back("STACK_ROOT", root.path().string());
    e.emplace_back("OBJECT_STORAGE", "disk");
    e.emplace_back("OBJECT_STORAGE_DIR", objects.string());
    e.emplace_back("COMPOSE_PROJECT_NAME", std::nullopt);
    return e;
  }
  // backupctl's settings for the stack: compose finds the project in infra/env.
  EnvList env() const {
    EnvList e = app_env();
    e.emplace_back("APP_ROOT", app.string());
    e.emplace_back("BACKUP_DIR", backups.string());
    e.emplace_back("SERVICE_CONTROL", "compose");
    e.emplace_back("API_URL", "http://127.0.0.1:" + std::to_string(api_port));
    e.emplace_back("COMPOSE_COMMAND", std::nullopt);
    return e;
  }
  RunResult compose(std::vector<std::string> rest) const {
    std::vector<std::string> argv = {"docker-compose", "-f",
                                     (app / "infra/docker-compose.yml").string(), "-p", project};
    argv.insert(argv.end(), rest.begin(), rest.end());
    return run_command({.argv = argv, .env = app_env()});
  }
  // service -> running?, from the engine itself (not from compose).
  std::map<std::string, bool> states(const std::string& of_project = "") const {
    std::map<std::string, bool> out;
    RunResult ps = run_command(
        {.argv = {"/usr/bin/docker", "ps", "-a", "--filter",
                  "label=com.docker.compose.project=" + (of_project.empty() ? project : of_project),
                  "--format", "{{.Label \"com.docker.compose.service\"}} {{.State}}"},
         .env = {{"DOCKER_HOST", docker_host}}});
    EXPECT_TRUE(ps.status.ok()) << ps.err;
    for (const auto& line : split_lines(ps.out)) {
      auto sp = line.find(' ');
      if (sp != std::string::npos) out[line.substr(0, sp)] = line.substr(sp + 1) == "running";
    }
    return out;
  }
  void expect_all_running(const std::string& at) const {
    auto s = states();
    for (const char* svc : {"postgres", "api", "worker", "beat"}) {
      EXPECT_TRUE(s[svc]) << at << ": " << svc << " is not running";
    }
  }
  static bool api_answers(int port) {
    return run_command({.argv = {"curl", "-fsS", "-o", "/dev/null", "--max-time", "2",
                                 "http://127.0.0.1:" + std::to_string(port) + "/api/health"}})
        .status.ok();
  }
  int documents() const {
    RunResult r = run_command(
        {.argv = {"psql", "-X", "-qAt", "-c", "SELECT count(*) FROM documents", "archive"},
         .env = pg_env()});
    return r.status.ok() ? std::stoi(r.out) : -1;
  }
  std::string backup_db() {
    CliResult b = run_backupctl({"backup", "db", "--json"}, env());
    EXPECT_EQ(b.exit_code, 0) << b.err;
    auto j = nlohmann::json::parse(b.out, nullptr, false);
    return j.is_discarded() ? "" : j["path"].get<std::string>();
  }
  // Runs `query` in the stack's database; its rows, one per line.
  std::string sql(const std::string& query) const {
    RunResult r = run_command({.argv = {"psql", "-X", "-qAt", "-v", "ON_ERROR_STOP=1", "-c", query, "archive"}, .env = pg_env()});
    EXPECT_TRUE(r.status.ok()) << query << ": " << r.err;
    return r.out;
  }
  // The table of the point-in-time tests: 100 rows 'before' ...
  void make_table() const {
    sql("CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'before' FROM generate_series(1, 100) g");
  }
  bool receiver_connected() const { return sql("SELECT count(*) FROM pg_stat_replication") == "1\n"; }
  // ... then 100 more, the moment (the server's clock), 10 rows 'after' and a mistaken DELETE,
  // all received. A restore to the moment gives "before:200".
  std::string commit_moment_and_mistake() const {
    sql("INSERT INTO t SELECT g, 'before' FROM generate_series(101, 200) g");
    std::string moment = sql("SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')");
    moment.pop_back();
    sql("INSERT INTO t SELECT g, 'after' FROM generate_series(201, 210) g");
    sql("DELETE FROM t WHERE id > 50");
    std::string lsn = sql("SELECT pg_current_wal_lsn()");
    lsn.pop_back();
    EXPECT_TRUE(wait_for([&] { return sql("SELECT bool_and(flush_lsn >= '" + lsn + "') FROM pg_stat_replication") == "t\n"; }, 10))
        << "the receiver did not flush up to " << lsn;
    return moment;
  }
  std::string rows() const { return sql("SELECT v || ':' || count(*) FROM t GROUP BY v ORDER BY v"); }
  void damage() const {
    RunResult r = run_command(
        {.argv = {"psql", "-X", "-q", "-c", "DELETE FROM documents WHERE id > 10", "archive"},
         .env = pg_env()});
    ASSERT_TRUE(r.status.ok()) << r.err;
  }
};

}  // namespace

// During the restore (paused after its stop, while the database loads) api, worker and beat are
// exited and postgres runs; afterwards all four run and the api serves the restored rows.
TEST_F(ComposeStack, ARestoreStopsTheAppContainersAndStartsThemAgain) {
  std::string dump = backup_db();
  ASSERT_FALSE(dump.empty());
  damage();
  ASSERT_EQ(documents(), 10);
  EnvList e = env();
  e.emplace_back("CONFIRM", "YES");
  e.emplace_back("BACKUPCTL_FAULT", "restore-db.load");
  e.emplace_back("BACKUPCTL_FAULT_SIGNAL", "STOP");
  Child restore = spawn_backupctl({"restore", "db", "--file", dump}, e);
  ASSERT_TRUE(wait_for([&] { return process_state(restore.pid()) == "T"; }, 60))
      << "the restore never reached its load";
  auto during = states();
  EXPECT_TRUE(during["postgres"]);
  for (const char* svc : {"api", "worker", "beat"})
    EXPECT_FALSE(during[svc]) << svc << " runs during the restore";
  // Nothing writes: beat queues a job a second when it runs.
  const std::string jobs = run_command({.argv = {"psql", "-X", "-qAt", "-c",
                                                 "SELECT count(*) FROM ingest_jobs", "archive"},
                                        .env = pg_env()})
                               .out;
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  EXPECT_EQ(run_command({.argv = {"psql", "-X", "-qAt", "-c", "SELECT count(*) FROM ingest_jobs",
                                  "archive"},
                         .env = pg_env()})
                .out,
            jobs)
      << "something wrote to the live database while the services were stopped";
  ::kill(restore.pid(), SIGCONT);
  std::string out = restore.drain();
  ExitStatus status = restore.wait();
  EXPECT_TRUE(status.ok()) << status.describe() << ": " << restore.stderr_tail();
  EXPECT_NE(restore.stderr_tail().find("docker-compose -f " +
                                       (app / "infra/docker-compose.yml").string() + " -p " +
                                       project + " stop api worker beat"),
            std::string::npos)
      << restore.stderr_tail();
  expect_all_running("after the restore");
  EXPECT_EQ(documents(), 40);
  EXPECT_TRUE(wait_for([&] { return api_answers(api_port); }, 30));

  // The plan's undo: the database from before the restore, the containers stopped and started.
  EnvList u = env();
  u.emplace_back("CONFIRM", "YES");
  CliResult undo = run_backupctl({"restore", "undo"}, u);
  ASSERT_EQ(undo.exit_code, 0) << undo.err;
  EXPECT_NE(undo.err.find(" stop api worker beat"), std::string::npos) << undo.err;
  EXPECT_EQ(documents(), 10);
  expect_all_running("after the undo");
}

// Failing or interrupted (SIGTERM) the restore starts the containers itself before it exits;
// killed (SIGKILL) they stay stopped until the next backupctl command, which starts them.
TEST_F(ComposeStack, AFailedInterruptedOrKilledRestoreLeavesTheAppRunning) {
  std::string dump = backup_db();
  ASSERT_FALSE(dump.empty());
  for (const std::string signal : {"FAIL", "TERM", "HUP", "KILL"}) {
    damage();
    EnvList e = env();
    e.emplace_back("CONFIRM", "YES");
    // The hangup and the kill with the tools in the postgres container.
    if (signal == "HUP" || signal == "KILL") e.emplace_back("PG_TOOLS", "compose");
    e.emplace_back("BACKUPCTL_FAULT", "restore-db.load");
    e.emplace_back("BACKUPCTL_FAULT_SIGNAL", signal);
    CliResult r = run_backupctl({"restore", "db", "--file", dump}, e);
    if (signal == "FAIL") {
      EXPECT_NE(r.exit_code, 0) << r.err;
      EXPECT_NE(r.err.find("a failure injected at restore-db.load"), std::string::npos) << r.err;
    } else if (signal == "TERM") {
      EXPECT_EQ(r.exit_code, 128 + SIGTERM) << r.err;
    } else if (signal == "HUP") {
      EXPECT_EQ(r.exit_code, 128 + SIGHUP) << r.err;
    } else {
      EXPECT_EQ(r.exit_code, 128 + SIGKILL) << r.err;
      auto s = states();
      EXPECT_FALSE(s["api"])
          << "killed, the restore cannot have started api: the check below proves nothing";
      CliResult next = run_backupctl({"status"}, env());
      EXPECT_NE(next.err.find("started the services it had stopped"), std::string::npos)
          << next.err;
    }
    expect_all_running(signal);
    EXPECT_EQ(documents(), 10) << signal << ": the live database is not the one before";
    EXPECT_TRUE(list_dir(backups / "journal").empty()) << signal;
    RunResult side = run_command({.argv = {"psql", "-X", "-qAt", "-c",
                                           "SELECT count(*) FROM pg_database WHERE datname LIKE '%\\_\\_restore\\_%'",
                                           "archive"},
                                  .env = pg_env()});
    EXPECT_EQ(side.out, "0\n") << signal << ": a side database is left";
  }
}

// The plan's rehearsal with every check of the checklist (the five http ones too) against a
// staging app: a second project of the same compose file on the staging database and objects.
TEST_F(ComposeStack, ARehearsalAsksAStagingAppAndStopsIt) {
  ASSERT_EQ(run_backupctl({"backup", "all"}, env()).exit_code, 0);
  const int staging_port = free_port();
  const std::string file = (app / "infra/docker-compose.yml").string();
  const std::string staging_project = project + "-rehearsal";
  EnvList e = env();
  e.emplace_back("STAGING_API_URL", "http://127.0.0.1:" + std::to_string(staging_port));
  e.emplace_back("STAGING_APP_START_CMD", "env API_PORT=" + std::to_string(staging_port) +
                                              " docker-compose -f " + file + " -p " +
                                              staging_project + " up -d --no-deps api");
  e.emplace_back("STAGING_APP_STOP_CMD",
                 "docker-compose -f " + file + " -p " + staging_project + " down --timeout 2");
  CliResult r = run_backupctl({"rehearse", "--json"}, e);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  auto report = nlohmann::json::parse(read_file(j["report"].get<std::string>()));
  ASSERT_TRUE(report["checks"].is_array());
  EXPECT_EQ(report["checks"].size(), 8u);
  for (const auto& c : report["checks"]) EXPECT_EQ(c["status"], "pass") << c.dump();
  EXPECT_TRUE(states(staging_project).empty()) << "the staging app's containers are left";
  expect_all_running("after the rehearsal");
}

// PG_TOOLS=compose: pg_dump, pg_dumpall, pg_restore and psql run in the postgres service (its
// PostgreSQL 15, whatever the host has); the dump still goes through backupctl's pipeline (its
// .meta sha256 is the file's) and the restore's loader loads over libpq. auto falls back to the
// service when the host has no tools; the copies a restore put in the container are gone after it.
TEST_F(ComposeStack, PgToolsInsideThePostgresService) {
  EnvList e = env();
  e.emplace_back("PG_TOOLS", "compose");
  CliResult b = run_backupctl({"backup", "db", "--json"}, e);
  ASSERT_EQ(b.exit_code, 0) << b.err;
  EXPECT_NE(b.err.find("(in the compose service postgres)"), std::string::npos) << b.err;
  auto j = nlohmann::json::parse(b.out);
  const std::string dump = j["path"];
  EXPECT_EQ(j["meta"]["sha256"], sha256sum(dump));
  CliResult v = run_backupctl({"verify", dump}, e);
  EXPECT_EQ(v.exit_code, 0) << v.out << v.err;
  damage();
  e.emplace_back("CONFIRM", "YES");
  // What a killed run left in the container (its pid gone), a live run's folder (ours), the
  // folder of a run in another pid namespace (another container) with a pid that is free here,
  // and two-day-old ones: of that other namespace, and of a version before run tags (pid only).
  Child dead = Child::spawn({.argv = {"true"}});
  const std::string here = run_tag().substr(0, run_tag().rfind('.'));  // boot id and namespace
  const std::string boot = here.substr(0, here.find('.'));
  const std::string pid = std::to_string(dead.pid());
  const std::string dead_dir = "/tmp/backupctl." + here + "." + pid + ".Dead01";
  const std::string other_dir = "/tmp/backupctl." + boot + ".1." + pid + ".Othr01";
  const std::string other_old = "/tmp/backupctl." + boot + ".1." + pid + ".Othr02";
  const std::string untagged_old = "/tmp/backupctl." + pid + ".Oldv01";
  dead.wait();
  const std::string live_dir = "/tmp/backupctl." + run_tag() + ".Live01";
  ASSERT_TRUE(compose({"exec", "-T", "postgres", "mkdir", dead_dir, live_dir, other_dir, other_old, untagged_old}).status.ok());
  ASSERT_TRUE(compose({"exec", "-T", "postgres", "touch", "-d", "3 days ago", other_old, untagged_old}).status.ok());
  CliResult r = run_backupctl({"restore", "db", "--file", dump}, e);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(documents(), 40);
  expect_all_running("after a restore with the service's tools");
  RunResult tmp = compose({"exec", "-T", "postgres", "find", "/tmp", "-maxdepth", "1", "-name", "backupctl.*"});
  ASSERT_TRUE(tmp.status.ok()) << tmp.err;
  std::vector<std::string> left;
  std::istringstream lines(tmp.out);
  for (std::string l; std::getline(lines, l);) left.push_back(l);
  std::sort(left.begin(), left.end());
  std::vector<std::string> want = {live_dir, other_dir};
  std::sort(want.begin(), want.end());
  EXPECT_EQ(left, want) << "in the container's /tmp: the killed run's folder and the two-day-old ones must go, the "
                           "live run's and the other container's recent one stay, the restore's own go";
  ASSERT_TRUE(compose({"exec", "-T", "postgres", "rm", "-r", live_dir, other_dir}).status.ok());
  auto service_folders = [&] {
    RunResult found = compose({"exec", "-T", "postgres", "find", "/tmp", "-maxdepth", "1", "-name", "backupctl.*"});
    EXPECT_TRUE(found.status.ok()) << found.err;
    return found.out;
  };
  // Killed (SIGKILL) with a folder of its own in the container: the next command, whatever it is,
  // removes it. SIGHUP (the SSH session dropped) during the load: exit 129 and the signal named
  // (it said "malformed: no PGDMP header", exit 5), the live database whole, nothing left.
  damage();
  const int before = documents();
  EnvList killed = e;
  killed.emplace_back("BACKUPCTL_FAULT", "service.folder-made");
  CliResult k = run_backupctl({"restore", "db", "--file", dump}, killed);
  ASSERT_EQ(k.exit_code, 128 + SIGKILL) << k.err;
  EXPECT_NE(service_folders(), "") << "the kill came before the folder";
  CliResult next = run_backupctl({"status"}, e);
  EXPECT_EQ(service_folders(), "") << "the killed run's folder stayed in the container: " << next.err;
  EnvList hup = e;
  hup.emplace_back("BACKUPCTL_FAULT", "service.folder-made#2");
  hup.emplace_back("BACKUPCTL_FAULT_SIGNAL", "HUP");
  CliResult h = run_backupctl({"restore", "db", "--file", dump}, hup);
  EXPECT_EQ(h.exit_code, 128 + SIGHUP) << h.err;
  EXPECT_NE(h.err.find("SIGHUP"), std::string::npos) << h.err;
  EXPECT_EQ(h.err.find("malformed"), std::string::npos) << h.err;
  EXPECT_EQ(documents(), before);
  expect_all_running("after a restore interrupted by SIGHUP");
  EXPECT_EQ(service_folders(), "");

  // auto: no tools on the host (an empty PG_BINDIR), so the service's.
  TempDir no_tools;
  EnvList a = env();
  a.emplace_back("PG_BINDIR", no_tools.path().string());
  CliResult ab = run_backupctl({"backup", "db"}, a);
  ASSERT_EQ(ab.exit_code, 0) << ab.err;
  EXPECT_NE(ab.err.find("using pg_dump 15."), std::string::npos) << ab.err;
  // host: the error names both fixes.
  a.emplace_back("PG_TOOLS", "host");
  CliResult hb = run_backupctl({"backup", "db"}, a);
  EXPECT_NE(hb.exit_code, 0);
  EXPECT_NE(hb.err.find("pg_dump not found in PG_BINDIR="), std::string::npos) << hb.err;
  EXPECT_NE(hb.err.find("PG_TOOLS=compose"), std::string::npos) << hb.err;
}

// Point-in-time recovery on a host without PostgreSQL's server programs (the backup container's
// case): the temporary server runs in the postgres service's container. The receiver and the base
// backup use the host's client tools over TCP as usual. Killed while the recovered server runs in
// the container, the next command stops it and removes its folder there (and a run interrupted by SIGHUP
// does so itself); then, with no server
// programs on the host (an empty PG_BINDIR: auto falls back to the service), a mistaken DELETE is
// undone to the moment through the guarded restore, the app's containers stopped and started.
TEST_F(ComposeStack, PointInTimeRecoveryRunsInThePostgresService) {
  TempDir work;
  EnvList e = env();
  e.emplace_back("BACKUP_WAL", "stream");
  e.emplace_back("WAL_ALLOW_UNBOUNDED_SLOT", "yes");  // the stack's server has no max_slot_wal_keep_size
  e.emplace_back("PITR_WORK_DIR", work.path().string());
  make_table();
  Child receiver = spawn_backupctl({"wal", "stream"}, e);
  ASSERT_TRUE(wait_for([&] { return receiver_connected(); }, 30)) << "the receiver did not connect: " << receiver.stderr_tail();
  CliResult base = run_backupctl({"backup", "base"}, e);
  ASSERT_EQ(base.exit_code, 0) << base.err;
  const std::string moment = commit_moment_and_mistake();
  auto left_in_service = [&] {
    RunResult found = compose({"exec", "-T", "postgres", "find", "/tmp", "-maxdepth", "1", "-name", "backupctl-pitr.*"});
    EXPECT_TRUE(found.status.ok()) << found.err;
    RunResult top = compose({"top", "postgres"});
    EXPECT_TRUE(top.status.ok()) << top.err;
    return found.out + (top.out.find("backupctl-pitr") != std::string::npos ? "a server still runs there" : "");
  };
  e.emplace_back("CONFIRM", "YES");

  EnvList killed = e;
  killed.emplace_back("PG_TOOLS", "compose");
  killed.emplace_back("BACKUPCTL_FAULT", "restore-pitr.dump");  // after the promotion: the server runs
  CliResult k = run_backupctl({"restore", "db", "--to-time", moment}, killed);
  ASSERT_EQ(k.exit_code, 128 + SIGKILL) << k.err;
  EXPECT_NE(k.err.find("(in the compose service postgres)"), std::string::npos) << k.err;
  EXPECT_NE(left_in_service(), "") << "the kill came before the server ran in the container";
  EXPECT_EQ(rows(), "before:50\n");
  CliResult next = run_backupctl({"list"}, e);
  EXPECT_EQ(next.exit_code, 0) << next.err;
  EXPECT_EQ(left_in_service(), "") << next.err;
  EXPECT_TRUE(list_dir(work.path()).empty()) << next.err;
  // SIGHUP (the SSH session dropped) at the same point: the run stops the server in the container
  // and removes its folder itself.
  killed.emplace_back("BACKUPCTL_FAULT_SIGNAL", "HUP");
  CliResult h = run_backupctl({"restore", "db", "--to-time", moment}, killed);
  EXPECT_EQ(h.exit_code, 128 + SIGHUP) << h.err;
  EXPECT_EQ(left_in_service(), "") << h.err;
  EXPECT_TRUE(list_dir(work.path()).empty()) << h.err;
  EXPECT_EQ(rows(), "before:50\n");

  TempDir no_tools;
  EnvList bare = e;
  bare.emplace_back("PG_BINDIR", no_tools.path().string());
  CliResult r = run_backupctl({"restore", "db", "--to-time", moment}, bare);
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  EXPECT_NE(r.err.find("recovering in the compose service postgres instead"), std::string::npos) << r.err;
  EXPECT_EQ(rows(), "before:200\n") << "every row committed before the moment, none after";
  EXPECT_EQ(documents(), 40);
  EXPECT_EQ(left_in_service(), "");
  EXPECT_TRUE(list_dir(work.path()).empty());
  expect_all_running("after a point-in-time restore in the service");
  receiver.kill(SIGTERM);
  EXPECT_TRUE(receiver.wait().ok()) << receiver.stderr_tail();
}

// examples/compose/: its image (the Dockerfile's runtime stage, FROM the local base instead of
// debian:12, with the backupctl this build made: compiling it again inside the image took five
// minutes of CI's two cores; the build stage is the same cmake build as `make build`), and its
// one-shot `backup` service, next to the stack as the README says, runs a backup set, verify
// --latest, a guarded restore that stops and starts api, worker and beat through the docker
// socket, and the checklist. The test's override only fits the service to this stack's host
// networking and the test engine's socket.
TEST_F(ComposeStack, TheBackupContainerOfTheComposeExample) {
  RunResult runtime = run_command(
      {.argv = {(kSource / "tools/docker-throwaway.sh").string(), "image", engine.string(),
                "backupctl-test/backupctl-runtime", kSource.string(),
                (kSource / "examples/compose/Dockerfile").string(), "runtime"}});
  ASSERT_TRUE(runtime.status.ok()) << runtime.err;
  TempDir context("backupctl-image");
  fs::copy_file(backupctl_binary(), context.path() / "backupctl");
  // A sanitized backupctl (make test's) needs the sanitizer runtimes, which the runtime image has
  // not: the host's, Debian 12's as the image's. A release build's does not use them.
  std::string dockerfile = "FROM backupctl-test/backupctl-runtime\nCOPY backupctl /usr/local/bin/backupctl\n";
  for (const char* lib : {"libasan.so.8", "libubsan.so.1"}) {
    const fs::path host_lib = fs::path("/usr/lib/x86_64-linux-gnu") / lib;
    if (!fs::exists(host_lib)) continue;
    fs::copy_file(fs::canonical(host_lib), context.path() / lib);
    dockerfile += std::string("COPY ") + lib + " /usr/lib/x86_64-linux-gnu/" + lib + "\n";
  }
  write_file_atomic(context.path() / "Dockerfile", dockerfile);
  RunResult image =
      run_command({.argv = {"/usr/bin/docker", "build", "-q", "-t", "backupctl:latest",
                            context.path().string()},
                   .env = {{"DOCKER_HOST", docker_host}}});
  ASSERT_TRUE(image.status.ok()) << image.err;
  fs::copy_file(kSource / "examples/compose/docker-compose.backup.yml",
                app / "infra/docker-compose.backup.yml");
  write_file_atomic(
      app / "infra/docker-compose.backup-test.yml",
      "version: \"3.7\"\nservices:\n  backup:\n    network_mode: host\n    environment:\n"
      "      PGHOST: 127.0.0.1\n      PGPORT: ${PGPORT}\n      PGUSER: archive\n"
      "      OBJECT_STORAGE: disk\n      OBJECT_STORAGE_DIR: ${OBJECT_STORAGE_DIR}\n"
      "      API_URL: http://127.0.0.1:${API_PORT}\n      COMPOSE_PROJECT: " +
          project +
          "\n"
          "    volumes:\n      - ${STACK_ROOT}:${STACK_ROOT}\n"
          "      - " +
          (engine / "docker.sock").string() +
          ":/var/run/docker.sock\n"
          "  backup-wal:\n    network_mode: host\n    environment:\n"
          "      PGHOST: 127.0.0.1\n      PGPORT: ${PGPORT}\n      PGUSER: archive\n"
          "      WAL_ALLOW_UNBOUNDED_SLOT: \"yes\"\n");
  const std::vector<std::string> files = {"docker-compose",
                                          "-f",
                                          (app / "infra/docker-compose.yml").string(),
                                          "-f",
                                          (app / "infra/docker-compose.backup.yml").string(),
                                          "-f",
                                          (app / "infra/docker-compose.backup-test.yml").string(),
                                          "-p",
                                          project,
                                          "--profile",
                                          "wal"};
  auto stack = [&](const std::vector<std::string>& args) {
    std::vector<std::string> argv = files;
    argv.insert(argv.end(), args.begin(), args.end());
    return run_command({.argv = argv, .env = app_env()});
  };
  auto backup = [&](std::vector<std::string> args, EnvList extra = {}) {
    std::vector<std::string> argv = files;
    argv.insert(argv.end(), {"run", "--rm", "-T"});
    for (const auto& [k, v] : extra) {
      argv.push_back("-e");
      argv.push_back(k + "=" + v.value_or(""));
    }
    argv.push_back("backup");
    argv.insert(argv.end(), args.begin(), args.end());
    return run_command({.argv = argv, .env = app_env()});
  };
  RunResult all = backup({"backup", "all"});
  ASSERT_TRUE(all.status.ok()) << all.out << all.err;
  const fs::path backups_in_checkout = app / "infra/data/backup";
  ASSERT_EQ(list_dir(backups_in_checkout / "sets").size(), 1u);
  auto dumps = list_dir(backups_in_checkout / "db");
  std::erase_if(dumps, [](const std::string& f) { return !f.ends_with(".dump"); });
  ASSERT_EQ(dumps.size(), 1u);
  RunResult verify = backup({"verify", "--latest"});
  EXPECT_TRUE(verify.status.ok()) << verify.out << verify.err;

  damage();
  RunResult unconfirmed =
      backup({"restore", "db", "--file", "/app/infra/data/backup/db/" + dumps[0]});
  EXPECT_EQ(unconfirmed.status.code, 9) << unconfirmed.err;
  EXPECT_EQ(documents(), 10) << "the plan changed the database";
  RunResult restore = backup({"restore", "db", "--file", "/app/infra/data/backup/db/" + dumps[0]},
                             {{"CONFIRM", "YES"}});
  ASSERT_TRUE(restore.status.ok()) << restore.out << restore.err;
  // SERVICE_STOP_CMD / SERVICE_START_CMD may hold a token: named by their program only.
  EXPECT_NE(restore.err.find("services: stop with `compose-services` and 1 argument"), std::string::npos) << restore.err;
  EXPECT_NE(restore.err.find("services: start with `compose-services` and 1 argument"), std::string::npos) << restore.err;
  EXPECT_EQ(documents(), 40);
  expect_all_running("after the container's restore");
  EXPECT_TRUE(wait_for([&] { return api_answers(api_port); }, 30));
  RunResult check = backup({"check"});
  EXPECT_TRUE(check.status.ok()) << check.out << check.err;

  // Continuous protection from the example's containers: the backup-wal service (profile wal)
  // receives the WAL, the one-shot service takes a base backup, and a mistaken DELETE is undone to
  // the moment by a restore in the container (its temporary server from the image's
  // postgresql-15). `compose stop` ends the receiver cleanly.
  make_table();
  RunResult up = stack({"up", "-d", "backup-wal"});
  ASSERT_TRUE(up.status.ok()) << up.out << up.err;
  ASSERT_TRUE(wait_for([&] { return receiver_connected(); }, 60))
      << "the backup-wal container did not connect: " << stack({"logs", "--no-color", "backup-wal"}).out;
  const EnvList wal = {{"BACKUP_WAL", "stream"}};
  RunResult base = backup({"backup", "base"}, wal);
  ASSERT_TRUE(base.status.ok()) << base.out << base.err;
  const std::string moment = commit_moment_and_mistake();
  RunResult pitr = backup({"restore", "db", "--to-time", moment}, {{"BACKUP_WAL", "stream"}, {"CONFIRM", "YES"}});
  ASSERT_TRUE(pitr.status.ok()) << pitr.out << pitr.err;
  EXPECT_EQ(rows(), "before:200\n") << "every row committed before the moment, none after";
  EXPECT_EQ(documents(), 40);
  expect_all_running("after the container's point-in-time restore");
  RunResult stop = stack({"stop", "backup-wal"});
  EXPECT_TRUE(stop.status.ok()) << stop.err;
  RunResult exited = run_command(
      {.argv = {"/usr/bin/docker", "ps", "-a", "--filter", "label=com.docker.compose.project=" + project, "--filter",
                "label=com.docker.compose.service=backup-wal", "--format", "{{.Status}}"},
       .env = {{"DOCKER_HOST", docker_host}}});
  EXPECT_EQ(exited.out.rfind("Exited (0)", 0), 0u) << "wal stream did not stop cleanly on compose stop: " << exited.out
                                                    << stack({"logs", "--no-color", "backup-wal"}).out;
}

// v2's command line when `docker compose` answers (a stand-in here: Debian has no plugin);
// COMPOSE_COMMAND overrides; neither front end installed is one clear error.
TEST_F(ComposeStack, FindsComposeV2OrV1AndSaysWhenThereIsNeither) {
  TempDir bin;
  fs::path log = bin.path() / "docker.log";
  write_file_atomic(bin.path() / "docker",
                    "#!/bin/sh\necho \"$*\" >> " + log.string() +
                        "\nif [ \"$1\" = compose ]; then shift; exec docker-compose \"$@\"; "
                        "fi\nexec /usr/bin/docker \"$@\"\n",
                    0755);
  std::string dump = backup_db();
  ASSERT_FALSE(dump.empty());
  EnvList e = env();
  e.emplace_back("CONFIRM", "YES");
  e.emplace_back("PATH", bin.path().string() + ":" + env_value("PATH").value_or("/usr/bin:/bin"));
  CliResult r = run_backupctl({"restore", "db", "--file", dump}, e);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::string calls = read_file(log);
  EXPECT_NE(calls.find("compose -f " + (app / "infra/docker-compose.yml").string() + " -p " +
                       project + " stop api worker beat"),
            std::string::npos)
      << calls;
  expect_all_running("v2");

  // COMPOSE_COMMAND wins over what is found.
  EnvList o = env();
  o.emplace_back("COMPOSE_COMMAND", "/usr/bin/docker-compose --no-ansi");
  CliResult plan = run_backupctl({"restore", "db", "--file", dump}, o);
  EXPECT_NE(plan.out.find("/usr/bin/docker-compose --no-ansi -f"), std::string::npos) << plan.out;

  // Neither: a PATH without docker and docker-compose.
  TempDir empty;
  EnvList none = env();
  none.emplace_back("PATH", empty.path().string());
  CliResult n = run_backupctl({"restore", "db", "--file", dump}, none);
  EXPECT_NE(n.exit_code, 0);
  EXPECT_NE(
      n.err.find("neither `docker compose` (compose v2) nor `docker-compose` (v1) works here"),
      std::string::npos)
      << n.err;
  EXPECT_NE(n.err.find("COMPOSE_COMMAND"), std::string::npos) << n.err;
}

}  // namespace backupctl::test

namespace backupctl::test {

// COMPOSE_PROJECT_NAME as compose takes it (the environment first, then infra/env), and the
// settings that go together refused one clear line each, before anything runs.
TEST(ComposeSettings, TheProjectNameAndTheStagingAppSettings) {
  TempDir app;
  make_dirs(app.path() / "infra");
  write_file_atomic(app.path() / "infra/env",
                    "POSTGRES_PASSWORD=x\nCOMPOSE_PROJECT_NAME=archive-prod\n", 0600);
  ::setenv("APP_ROOT", app.path().c_str(), 1);
  ::unsetenv("COMPOSE_PROJECT_NAME");
  EXPECT_EQ(Config::from_environment().compose_project, "archive-prod");
  ::setenv("COMPOSE_PROJECT_NAME", "from-env", 1);
  EXPECT_EQ(Config::from_environment().compose_project, "from-env");
  ::unsetenv("COMPOSE_PROJECT_NAME");
  ::unsetenv("APP_ROOT");

  EnvList base = {
      {"APP_ROOT", app.path().string()},      {"BACKUP_DIR", (app.path() / "backup").string()},
      {"COMPOSE_PROJECT_NAME", std::nullopt}, {"STAGING_APP_START_CMD", std::nullopt},
      {"STAGING_APP_STOP_CMD", std::nullopt}, {"STAGING_API_URL", std::nullopt}};
  struct Case {
    EnvList set;
    std::string error;
  };
  for (const Case& c : std::vector<Case>{
           {{{"COMPOSE_PROJECT_NAME", "Archive Prod"}},
            "invalid COMPOSE_PROJECT_NAME='Archive Prod'"},
           {{{"STAGING_APP_START_CMD", "appctl start"}},
            "STAGING_APP_START_CMD and STAGING_APP_STOP_CMD go together"},
           {{{"STAGING_APP_START_CMD", "appctl start"}, {"STAGING_APP_STOP_CMD", "appctl stop"}},
            "STAGING_APP_START_CMD is set but STAGING_API_URL is not"},
           {{{"COMPOSE_COMMAND", "docker 'compose"}}, "COMPOSE_COMMAND"}}) {
    EnvList e = base;
    e.insert(e.end(), c.set.begin(), c.set.end());
    CliResult r = run_backupctl({"status"}, e);
    EXPECT_EQ(r.exit_code, 2) << c.error << ": " << r.err;
    EXPECT_NE(r.err.find(c.error), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("hint: "), std::string::npos) << r.err;
  }
}

}  // namespace backupctl::test
