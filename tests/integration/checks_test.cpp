// Issue 6: the post-restore checklist and restore rehearsals, against the sample archive app
// (examples/archive-app: a real HTTP api and worker on a real PostgreSQL and object store), and
// `make demo` itself.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>

#include "fixture.hpp"
#include "s3_fixture.hpp"

namespace backupctl::test {

namespace {

nlohmann::json read_json(const fs::path& p) { return nlohmann::json::parse(read_file(p)); }

// The stack of the plan in miniature: database `archive` with generated documents, attachments in
// a folder (or Ceph RGW), the api and worker started by appctl.sh (SERVICE_CONTROL=command, as an
// operator without docker would configure it), and the default checklist in the app checkout.
class AppStack {
 public:
  explicit AppStack(bool use_s3, int documents = 20, int failed_jobs = 0) : m_port(free_port()) {
    if (use_s3) m_s3.emplace();
    m_pg.create_database("archive");
    make_dirs(root() / "infra/monitoring", 0755);
    write_file_atomic(root() / "infra/env", "POSTGRES_PASSWORD=stack-secret\nLOG_LEVEL=info\n", 0600);
    write_file_atomic(root() / "infra/docker-compose.yml", "services:\n  api: {}\n  worker: {}\n");
    write_file_atomic(root() / "infra/monitoring/prometheus.yml", "scrape_configs: []\n");
    fs::copy_file(fs::path(BACKUPCTL_SOURCE_DIR) / "infra/backup-checks.toml", root() / "infra/backup-checks.toml");
    make_dirs(objects_dir(), 0755);
    RunResult g = app({"generate", "--documents", std::to_string(documents), "--failed-jobs",
                       std::to_string(failed_jobs), "--schema",
                       (fs::path(BACKUPCTL_SOURCE_DIR) / "examples/archive-app/schema.sql").string()});
    EXPECT_TRUE(g.status.ok()) << g.err;
    start();
  }
  ~AppStack() { appctl("stop"); }

  fs::path root() const { return m_dir.path() / "app"; }
  fs::path backups() const { return m_dir.path() / "backups"; }
  fs::path objects_dir() const { return m_dir.path() / "objects"; }
  const PgCluster& pg() const { return m_pg; }
  S3Server* s3() { return m_s3 ? &*m_s3 : nullptr; }

  EnvList env() const {
    EnvList e = backup_env(m_pg, "archive", backups());
    if (m_s3) {
      EnvList s = m_s3->env();
      e.insert(e.end(), s.begin(), s.end());
    } else {
      e.emplace_back("OBJECT_STORAGE", "disk");
      e.emplace_back("OBJECT_STORAGE_DIR", objects_dir().string());
    }
    std::string appctl = (fs::path(BACKUPCTL_SOURCE_DIR) / "examples/archive-app/appctl.sh").string();
    std::string run = (m_dir.path() / "run").string();
    e.insert(e.end(), {{"APP_ROOT", root().string()},
                       {"API_PORT", std::to_string(m_port)},
                       {"API_URL", "http://127.0.0.1:" + std::to_string(m_port)},
                       {"ARCHIVE_APP", ARCHIVE_APP_BIN},
                       {"SERVICE_CONTROL", "command"},
                       {"SERVICE_STOP_CMD", appctl + " stop " + run},
                       {"SERVICE_START_CMD", appctl + " start " + run}});
    return e;
  }
  EnvList env(EnvList extra) const {
    EnvList e = env();
    e.insert(e.end(), extra.begin(), extra.end());
    return e;
  }

  RunResult app(std::vector<std::string> args) const {
    args.insert(args.begin(), ARCHIVE_APP_BIN);
    return run_command({.argv = args, .env = env()});
  }
  void start() const {
    RunResult r = appctl("start");
    ASSERT_TRUE(r.status.ok()) << r.err;
  }
  void stop() const { appctl("stop"); }
  RunResult curl(const std::string& path) const {
    return run_command({.argv = {"curl", "-fsS", "http://127.0.0.1:" + std::to_string(m_port) + path}});
  }

 private:
  RunResult appctl(const std::string& cmd) const {
    return run_command({.argv = {(fs::path(BACKUPCTL_SOURCE_DIR) / "examples/archive-app/appctl.sh").string(), cmd,
                                 (m_dir.path() / "run").string()},
                        .env = env()});
  }
  TempDir m_dir{"backupctl-app"};
  std::optional<S3Server> m_s3;
  PgCluster m_pg;
  int m_port;
};

// The line of `backupctl check`'s table for one check.
std::string check_line(const std::string& table, const std::string& name) {
  std::istringstream in(table);
  for (std::string line; std::getline(in, line);) {
    if (line.find(" " + name + " ") != std::string::npos) return line;
  }
  return "";
}

std::string backup_set(const AppStack& stack) {
  CliResult r = run_backupctl({"backup", "all", "--json"}, stack.env());
  EXPECT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  return j.is_object() && j.contains("set") ? j["set"].value("set_id", "") : "";
}

// The database dump of the newest backup (not its .meta).
fs::path newest_dump(const AppStack& stack) {
  fs::path out;
  for (const auto& n : list_dir(stack.backups() / "db")) {
    if (n.size() > 5 && n.substr(n.size() - 5) == ".dump") out = stack.backups() / "db" / n;
  }
  return out;
}

// psql's answer without the trailing newline.
std::string sql(const PgCluster& pg, const std::string& db, const std::string& query) {
  std::string out = pg.psql(db, query);
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

bool database_exists(const PgCluster& pg, const std::string& name) {
  return sql(pg, "postgres", "SELECT count(*) FROM pg_database WHERE datname = '" + name + "'") == "1";
}

void flip_middle_byte(const fs::path& file) {
  std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
  auto at = static_cast<std::streamoff>(fs::file_size(file) / 2);
  f.seekg(at);
  char c = 0;
  f.get(c);
  f.seekp(at);
  f.put(static_cast<char>(c ^ 0x5a));
}

}  // namespace

TEST(Demo, MakeDemoRunsThePlanEndToEnd) {
  TempDir dir;
  RunResult r = run_command({.argv = {(fs::path(BACKUPCTL_SOURCE_DIR) / "examples/demo/demo.sh").string()},
                             .env = {{"DEMO_DOCUMENTS", "30"},
                                     {"DEMO_DIR", (dir.path() / "demo").string()},
                                     {"BACKUPCTL", BACKUPCTL_BIN},
                                     {"ARCHIVE_APP", ARCHIVE_APP_BIN},
                                     {"PGHOST", std::nullopt},
                                     {"PGDATABASE", std::nullopt},
                                     {"BACKUP_DIR", std::nullopt}}});
  ASSERT_TRUE(r.status.ok()) << r.out << r.err;
  // What the demo promises to leave behind: one set with all three parts, and a passed rehearsal.
  fs::path backups = dir.path() / "demo/backup";
  EXPECT_EQ(list_dir(backups / "sets").size(), 1u);
  EXPECT_EQ(list_dir(backups / "db").size(), 3u) << "a dump, its roles file and its .meta";
  // The set's off-site copy, the same files.
  EXPECT_EQ(list_dir(dir.path() / "demo/offsite/db"), list_dir(backups / "db"));
  EXPECT_EQ(list_dir(dir.path() / "demo/offsite/sets"), list_dir(backups / "sets"));
  auto reports = list_dir(backups / "rehearsals");
  ASSERT_EQ(reports.size(), 2u);
  auto rehearsal = read_json(backups / "rehearsals" / reports[0]);
  EXPECT_TRUE(rehearsal["ok"].get<bool>());
  // Every check of the checklist ran against the staging app, none skipped.
  ASSERT_TRUE(rehearsal["checks"].is_array()) << rehearsal.dump();
  EXPECT_EQ(rehearsal["checks"].size(), 8u);
  for (const auto& c : rehearsal["checks"]) EXPECT_EQ(c["status"], "pass") << c.dump();
  EXPECT_NE(r.out.find("== summary"), std::string::npos) << r.out;
}

TEST(Checklist, PassesOnAHealthySystemAndNamesWhatBroke) {
  AppStack stack(false);
  CliResult ok = run_backupctl({"check"}, stack.env());
  ASSERT_EQ(ok.exit_code, 0) << ok.out << ok.err;
  for (const char* name : {"health", "search", "attachment download", "referenced attachments exist"}) {
    EXPECT_EQ(check_line(ok.out, name).rfind("PASS", 0), 0u) << ok.out;
  }
  EXPECT_NE(check_line(ok.out, "referenced attachments exist").find("20 of 20"), std::string::npos) << ok.out;

  // Attachment files gone from the store: the objects check fails and names one.
  ASSERT_TRUE(stack.app({"delete-attachments", "--count", "2"}).status.ok());
  CliResult missing = run_backupctl({"check"}, stack.env());
  EXPECT_EQ(missing.exit_code, 11) << missing.out << missing.err;
  std::string line = check_line(missing.out, "referenced attachments exist");
  EXPECT_EQ(line.rfind("FAIL", 0), 0u) << missing.out;
  EXPECT_NE(line.find("2 of 20 checked objects missing"), std::string::npos) << line;
  EXPECT_NE(line.find("documents/1/"), std::string::npos) << line;
  EXPECT_EQ(check_line(missing.out, "health").rfind("PASS", 0), 0u) << missing.out;

  // The api down: the http checks fail; --json says the same to scripts.
  stack.stop();
  CliResult down = run_backupctl({"check", "--json"}, stack.env());
  EXPECT_EQ(down.exit_code, 11) << down.err;
  auto j = nlohmann::json::parse(down.out);
  EXPECT_FALSE(j["ok"].get<bool>());
  for (const auto& c : j["checks"]) {
    if (c["kind"] == "http") {
      EXPECT_EQ(c["status"], "fail") << c.dump();
    }
    if (c["name"] == "documents present") {
      EXPECT_EQ(c["status"], "pass") << c.dump();
    }
  }
}

TEST(Checklist, BadChecklistFileIsAOneLineErrorWithAHint) {
  AppStack stack(false);
  write_file_atomic(stack.root() / "infra/backup-checks.toml", "[[check]]\nname = \"x\"\nkind = \"telepathy\"\n");
  CliResult r = run_backupctl({"check"}, stack.env());
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("telepathy"), std::string::npos) << r.err;
  CliResult none = run_backupctl({"check"}, stack.env({{"CHECKS_FILE", "/nonexistent/checks.toml"}}));
  EXPECT_EQ(none.exit_code, 4) << none.err;
  EXPECT_NE(none.err.find("set CHECKS_FILE"), std::string::npos) << none.err;
}

TEST(Checklist, RestoreRunsItAfterTheServicesAreBackAndFailsWithTheUndoHint) {
  // The backup holds recent failed ingest_jobs, so "no recent failed ingest_jobs" fails after the
  // restore: the data is back, the services run, and the operator is told how to go back.
  AppStack stack(false, 20, 2);
  std::string set = backup_set(stack);
  ASSERT_FALSE(set.empty());
  stack.pg().psql("archive", "DELETE FROM attachments; DELETE FROM documents WHERE id > 5");
  fs::path dump = newest_dump(stack);
  CliResult r = run_backupctl({"restore", "db", "--file", dump.string()}, stack.env({{"CONFIRM", "YES"}}));
  EXPECT_EQ(r.exit_code, 11) << r.err;
  EXPECT_NE(r.err.find("FAIL   no recent failed ingest_jobs"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("restore undo"), std::string::npos) << "no undo hint: " << r.err;
  EXPECT_EQ(sql(stack.pg(), "archive", "SELECT count(*) FROM documents"), "20");
  EXPECT_TRUE(stack.curl("/api/health").status.ok()) << "the services were not started again";

  // The checklist decides: without that check the same restore passes.
  fs::path lenient = stack.root() / "infra/lenient-checks.toml";
  std::string toml = read_file(stack.root() / "infra/backup-checks.toml");
  toml = toml.substr(0, toml.find("[[check]]\nname = \"no recent failed ingest_jobs\""));
  ASSERT_EQ(toml.find("failed ingest_jobs\"\n"), std::string::npos);
  write_file_atomic(lenient, toml);
  CliResult good = run_backupctl({"restore", "db", "--file", dump.string()},
                                 stack.env({{"CONFIRM", "YES"}, {"CHECKS_FILE", lenient.string()}}));
  EXPECT_EQ(good.exit_code, 0) << good.err;
  EXPECT_NE(good.err.find("PASS   health"), std::string::npos) << good.err;
}

namespace {

void expect_rehearsal_passes_and_cleans_up(AppStack& stack) {
  std::string set = backup_set(stack);
  ASSERT_FALSE(set.empty());
  auto before = list_dir(stack.backups());
  CliResult r = run_backupctl({"rehearse", "--json"}, stack.env());
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  auto j = nlohmann::json::parse(r.out);
  const auto& rep = j["rehearsal"];
  EXPECT_TRUE(rep["ok"].get<bool>()) << rep.dump(2);
  EXPECT_EQ(rep["set_id"], set);
  EXPECT_EQ(rep["rows"]["public.documents"]["restored"], 20) << rep.dump(2);
  EXPECT_EQ(rep["rows"]["public.documents"]["backup"], 20) << rep.dump(2);
  bool objects_checked = false;
  for (const auto& c : rep["checks"]) {
    if (c["kind"] == "http") {
      EXPECT_EQ(c["status"], "skip") << "no STAGING_API_URL, so http checks are skipped";
    }
    if (c["name"] == "referenced attachments exist") {
      EXPECT_EQ(c["status"], "pass") << c.dump();
      objects_checked = true;
    }
  }
  EXPECT_TRUE(objects_checked) << rep.dump(2);
  fs::path md = fs::path(j["report"].get<std::string>()).replace_extension(".md");
  EXPECT_NE(read_file(md).find("result: **PASSED**"), std::string::npos);

  // Nothing of the staging copy is left: database, folder, bucket.
  EXPECT_FALSE(database_exists(stack.pg(), "archive_rehearsal"));
  EXPECT_EQ(sql(stack.pg(), "postgres", "SELECT count(*) FROM pg_database WHERE datname LIKE 'archive_rehearsal%'"), "0");
  for (const auto& name : list_dir(stack.backups())) EXPECT_EQ(name.rfind(".rehearsal", 0), std::string::npos) << name;
  if (S3Server* s3 = stack.s3()) {
    RunResult buckets = s3->aws({"s3api", "list-buckets"});
    EXPECT_EQ(buckets.out.find("backupctl-rehearsal"), std::string::npos) << buckets.out;
  }
  // The live system was not touched and the set remembers the rehearsal.
  EXPECT_EQ(sql(stack.pg(), "archive", "SELECT count(*) FROM documents"), "20");
  EXPECT_TRUE(stack.curl("/api/health").status.ok());
  CliResult list = run_backupctl({"list", "--kind", "db"}, stack.env());
  EXPECT_TRUE(std::regex_search(list.out, std::regex(set + " +ok \\d{4}-"))) << list.out;
}

}  // namespace

TEST(Rehearse, DiskStoreRestoresChecksAndLeavesNothingBehind) {
  AppStack stack(false);
  expect_rehearsal_passes_and_cleans_up(stack);
}

TEST(Rehearse, S3StoreRestoresIntoAStagingBucketAndRemovesIt) {
  AppStack stack(true);
  expect_rehearsal_passes_and_cleans_up(stack);
}

// With a staging app (the sample app on the staging database and the staging prefix of the S3
// store: OBJECT_TARGET), every check runs, the http ones too, and the app is stopped afterwards.
TEST(Rehearse, AStagingAppOnTheStagingCopiesAnswersEveryCheck) {
  AppStack stack(true);
  ASSERT_FALSE(backup_set(stack).empty());
  // The live attachments gone: a download that passes came from the staging prefix.
  ASSERT_TRUE(stack.app({"delete-attachments", "--count", "1000"}).status.ok());
  const int port = free_port();
  TempDir run;
  const std::string appctl = (fs::path(BACKUPCTL_SOURCE_DIR) / "examples/archive-app/appctl.sh").string();
  const std::string url = "http://127.0.0.1:" + std::to_string(port);
  CliResult r = run_backupctl({"rehearse", "--json"},
                              stack.env({{"STAGING_API_URL", url},
                                         {"STAGING_APP_START_CMD", "env API_PORT=" + std::to_string(port) + " " + appctl +
                                                                       " start " + run.path().string()},
                                         {"STAGING_APP_STOP_CMD", appctl + " stop " + run.path().string()}}));
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  auto rep = nlohmann::json::parse(r.out)["rehearsal"];
  ASSERT_EQ(rep["checks"].size(), 8u) << rep.dump(2);
  for (const auto& c : rep["checks"]) EXPECT_EQ(c["status"], "pass") << c.dump();
  EXPECT_NE(r.err.find("starting the staging app"), std::string::npos) << r.err;
  EXPECT_FALSE(run_command({.argv = {"curl", "-fsS", "--max-time", "2", url + "/api/health"}}).status.ok())
      << "the staging app still answers";
}

TEST(Rehearse, ACorruptedSetFailsNamesTheCauseAndIsMarkedFailed) {
  AppStack stack(false);
  std::string set = backup_set(stack);
  ASSERT_FALSE(set.empty());
  fs::path dump = newest_dump(stack);
  ASSERT_FALSE(dump.empty());
  flip_middle_byte(dump);
  CliResult r = run_backupctl({"rehearse"}, stack.env());
  EXPECT_EQ(r.exit_code, 11) << r.out << r.err;
  EXPECT_NE(r.err.find("the rehearsal of set " + set + " failed"), std::string::npos) << r.err;
  auto reports = list_dir(stack.backups() / "rehearsals");
  ASSERT_EQ(reports.size(), 2u);
  auto rep = read_json(stack.backups() / "rehearsals" / reports[0]);
  EXPECT_FALSE(rep["ok"].get<bool>());
  EXPECT_NE(rep["reason"].get<std::string>().find("sha256"), std::string::npos) << rep.dump(2);
  EXPECT_NE(read_file(stack.backups() / "rehearsals" / reports[1]).find("result: **FAILED**"), std::string::npos);
  EXPECT_FALSE(database_exists(stack.pg(), "archive_rehearsal"));
  CliResult list = run_backupctl({"list", "--kind", "db"}, stack.env());
  EXPECT_TRUE(std::regex_search(list.out, std::regex(set + " +FAILED \\d{4}-"))) << list.out;
  CliResult status = run_backupctl({"status", "--json"}, stack.env());
  auto st = nlohmann::json::parse(status.out);
  EXPECT_FALSE(st["last_rehearsal"]["ok"].get<bool>()) << status.out;
}

TEST(Rehearse, ACorruptedRolesFileIsRefusedBeforeItRuns) {
  // The roles file is SQL that a restore runs as superuser: a changed byte must stop the restore
  // at the plan, with the live database untouched.
  AppStack stack(false);
  ASSERT_FALSE(backup_set(stack).empty());
  fs::path dump = newest_dump(stack);
  fs::path roles = dump;
  roles.replace_extension(".roles.sql");
  ASSERT_TRUE(fs::exists(roles)) << roles;
  flip_middle_byte(roles);
  CliResult r = run_backupctl({"rehearse"}, stack.env());
  EXPECT_EQ(r.exit_code, 11) << r.err;
  EXPECT_NE(r.err.find("does not match the sha256"), std::string::npos) << r.err;
  stack.pg().psql("archive", "DELETE FROM ingest_jobs");
  CliResult restore = run_backupctl({"restore", "db", "--file", dump.string()}, stack.env({{"CONFIRM", "YES"}}));
  EXPECT_EQ(restore.exit_code, 5) << restore.err;
  EXPECT_NE(restore.err.find("roles file"), std::string::npos) << restore.err;
  EXPECT_EQ(sql(stack.pg(), "archive", "SELECT count(*) FROM ingest_jobs"), "0") << "the live database was touched";
}

}  // namespace backupctl::test
