// `backupctl backup db` against a real PostgreSQL: the file, its meta and roles, and a round trip
// through stock pg_restore that must give back the same database.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <nlohmann/json.hpp>
#include <regex>

#include "fixture.hpp"
#include "snapshot.hpp"
#include "util/time.hpp"

namespace backupctl::test {

namespace {

nlohmann::json read_json(const fs::path& p) { return nlohmann::json::parse(read_file(p)); }

// The only dump in <backup_dir>/db.
fs::path only_dump(const fs::path& backup_dir) {
  std::vector<fs::path> dumps;
  for (const auto& name : list_dir(backup_dir / "db")) {
    if (std::regex_match(name, std::regex(R"(archive_.*_\d{8}_\d{6}\.dump(\.zst)?)"))) {
      dumps.push_back(backup_dir / "db" / name);
    }
  }
  EXPECT_EQ(dumps.size(), 1u);
  return dumps.empty() ? fs::path() : dumps[0];
}

void drop_rich_and_roles(const PgCluster& cluster) {
  cluster.psql("postgres", "DROP DATABASE rich");
  cluster.psql("postgres", "DROP ROLE archive_reader; DROP ROLE archive_owner;");
}

// Recreates roles from the saved roles file, as an operator would on a fresh server.
void apply_roles(const PgCluster& cluster, const fs::path& roles) {
  RunResult r = run_command({.argv = {cluster.tool("psql"), "-X", "-q", "-f", roles.string()},
                             .env = cluster.env("postgres")});
  ASSERT_TRUE(r.status.ok()) << r.err;
}

}  // namespace

TEST(BackupDb, WritesDumpMetaAndRolesThatStockToolsAccept) {
  PgCluster pg;
  pg.create_database("archive");
  pg.psql("archive", "CREATE TABLE documents AS SELECT i AS id, md5(i::text) AS title FROM "
                     "generate_series(1, 1000) i");
  TempDir dir;
  auto before = Clock::now();
  CliResult r = run_backupctl({"backup", "db"}, backup_env(pg, "archive", dir.path()));
  ASSERT_EQ(r.exit_code, 0) << r.err;

  fs::path dump = only_dump(dir.path());
  std::string name = dump.filename();
  EXPECT_TRUE(std::regex_match(name, std::regex(R"(archive_archive_\d{8}_\d{6}\.dump)"))) << name;
  EXPECT_NE(r.out.find(dump.string()), std::string::npos) << r.out;

  // Nothing but the dump, its meta and the roles file; every one mode 0600.
  std::string stem = name.substr(0, name.size() - 5);
  EXPECT_EQ(list_dir(dir.path() / "db"),
            (std::vector<std::string>{name, name + ".meta", stem + ".roles.sql"}));
  for (const auto& f : list_dir(dir.path() / "db")) {
    struct stat st{};
    ASSERT_EQ(::stat((dir.path() / "db" / f).c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u) << f;
  }

  nlohmann::json meta = read_json(dump.string() + ".meta");
  EXPECT_EQ(meta["kind"], "db");
  EXPECT_EQ(meta["file"], name);
  EXPECT_EQ(meta["size"], fs::file_size(dump));
  EXPECT_EQ(meta["sha256"], sha256sum(dump));
  EXPECT_EQ(meta["profile"], "test");
  EXPECT_EQ(meta["compression"], "gzip:1");
  EXPECT_EQ(meta["format"], "pg_custom");
  EXPECT_EQ(meta["source"]["database"], "archive");
  EXPECT_TRUE(meta["source"]["server_version"].get<std::string>().starts_with("15."));
  EXPECT_TRUE(meta["source"]["pg_dump_version"].get<std::string>().starts_with("15."));
  EXPECT_FALSE(meta["tool_version"].get<std::string>().empty());
  EXPECT_GE(meta["duration_seconds"].get<double>(), 0.0);
  EXPECT_TRUE(meta["verification"].is_null());
  auto created = parse_iso8601(meta["created_at"].get<std::string>());
  ASSERT_TRUE(created) << meta["created_at"];
  EXPECT_TRUE(std::regex_search(meta["created_at"].get<std::string>(), std::regex(R"([+-]\d\d:\d\d$)")));
  EXPECT_GE(*created, std::chrono::floor<std::chrono::seconds>(before));
  EXPECT_EQ(meta["set_id"].get<std::string>().substr(0, 15), name.substr(16, 15));

  fs::path roles = dir.path() / "db" / (stem + ".roles.sql");
  EXPECT_EQ(meta["parts"]["roles"]["sha256"], sha256sum(roles));
  EXPECT_NE(read_file(roles).find("CREATE ROLE postgres"), std::string::npos);

  // Stock pg_restore reads it, including --create and -j.
  RunResult list = run_command({.argv = {pg.tool("pg_restore"), "--list", dump.string()}});
  ASSERT_TRUE(list.status.ok()) << list.err;
  EXPECT_NE(list.out.find("TABLE DATA public documents"), std::string::npos);
  pg.psql("postgres", "DROP DATABASE archive");
  RunResult restore = run_command({.argv = {pg.tool("pg_restore"), "--create", "-j", "2",
                                            "--exit-on-error", "-d", "postgres", dump.string()},
                                   .env = pg.env("postgres")});
  ASSERT_TRUE(restore.status.ok()) << restore.err;
  EXPECT_EQ(pg.psql("archive", "SELECT count(*), sum(id) FROM documents"), "1000|500500\n");
}

class RichRoundTrip : public ::testing::TestWithParam<std::string> {};

TEST_P(RichRoundTrip, StockPgRestoreGivesBackTheSameDatabase) {
  const std::string compression = GetParam();
  PgCluster pg;
  create_rich_database(pg);
  std::string before = snapshot(pg, "rich");
  ASSERT_NE(before.find("app.documents 3002"), std::string::npos) << before;

  TempDir dir;
  EnvList env = backup_env(pg, "rich", dir.path());
  env.emplace_back("BACKUP_DB_COMPRESSION", compression);
  CliResult r = run_backupctl({"backup", "db"}, env);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  fs::path dump = only_dump(dir.path());
  fs::path roles = dir.path() / "db" / std::regex_replace(dump.filename().string(),
                                                          std::regex(R"(\.dump(\.zst)?$)"), ".roles.sql");

  // The emptied server: no database, no roles. The roles file brings the owners back.
  drop_rich_and_roles(pg);
  apply_roles(pg, roles);
  if (compression.starts_with("zstd")) {
    ASSERT_EQ(dump.extension(), ".zst");
    // The documented stock-tools path: zstd -dc FILE | pg_restore --create -d postgres
    RunResult restore;
    {
      Pipe p = Pipe::create();
      Child z = Child::spawn({.argv = {"zstd", "-dcq", dump.string()}, .out_fd = p.write.get()});
      p.write.reset();
      Child pr = Child::spawn({.argv = {pg.tool("pg_restore"), "--create", "--exit-on-error", "-d",
                                        "postgres"},
                               .env = pg.env("postgres"),
                               .in_fd = p.read.get()});
      p.read.reset();
      pr.drain();
      restore.status = pr.wait();
      restore.err = pr.stderr_tail();
      EXPECT_TRUE(z.wait().ok());
    }
    ASSERT_TRUE(restore.status.ok()) << restore.err;
  } else {
    RunResult restore = run_command({.argv = {pg.tool("pg_restore"), "--create", "-j", "2",
                                              "--exit-on-error", "-d", "postgres", dump.string()},
                                     .env = pg.env("postgres")});
    ASSERT_TRUE(restore.status.ok()) << restore.err;
  }
  std::string after = snapshot(pg, "rich");
  EXPECT_EQ(before, after);
}

INSTANTIATE_TEST_SUITE_P(Compression, RichRoundTrip, ::testing::Values("gzip:1", "zstd:3"),
                         [](const auto& info) {
                           return info.param.substr(0, info.param.find(':'));
                         });

TEST(BackupDb, SameSecondRunsNeverOverwriteEachOther) {
  PgCluster pg;
  pg.create_database("archive");
  TempDir dir;
  EnvList env = backup_env(pg, "archive", dir.path());
  // Back to back, well within a second each: the second and third must wait for a free name.
  for (int i = 0; i < 3; ++i) {
    CliResult r = run_backupctl({"backup", "db", "-q"}, env);
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  int dumps = 0;
  for (const auto& name : list_dir(dir.path() / "db")) {
    if (name.ends_with(".dump")) {
      ++dumps;
      EXPECT_EQ(read_json(dir.path() / "db" / (name + ".meta"))["sha256"],
                sha256sum(dir.path() / "db" / name));
    }
  }
  EXPECT_EQ(dumps, 3);
}

TEST(BackupDb, DatabaseUrlPasswordNeverReachesArgvOutputOrMeta) {
  PgCluster pg;
  const std::string secret = "Sup3r-s3cret-pw";
  pg.psql("postgres", "CREATE ROLE pwuser LOGIN PASSWORD '" + secret + "'");
  pg.create_database("archive", "OWNER pwuser");
  pg.psql("archive", "SET ROLE pwuser; CREATE TABLE t AS SELECT 1 AS x");

  // Wrappers record the argv and then run the real tools, so the test sees exactly what ps would.
  TempDir bin;
  for (const char* tool : {"pg_dump", "pg_dumpall"}) {
    fs::path w = bin.path() / tool;
    write_file_atomic(w, "#!/bin/sh\nprintf '%s\\n' \"$0\" \"$@\" >> " + (bin.path() / "argv.log").string() +
                             "\nexec " + pg.tool(tool) + " \"$@\"\n", 0755);
  }
  TempDir dir;
  std::string url = "postgresql://pwuser:" + secret + "@/archive?host=" + pg.socket_dir().string() +
                    "&port=" + std::to_string(pg.port());
  CliResult r = run_backupctl({"backup", "db"}, {{"DATABASE_URL", url},
                                                 {"BACKUP_DIR", dir.path().string()},
                                                 {"PG_BINDIR", bin.path().string()}});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::string argv_log = read_file(bin.path() / "argv.log");
  EXPECT_NE(argv_log.find("pg_dump"), std::string::npos);
  EXPECT_EQ(argv_log.find(secret), std::string::npos) << argv_log;
  EXPECT_EQ(r.out.find(secret), std::string::npos);
  EXPECT_EQ(r.err.find(secret), std::string::npos);
  for (const auto& f : list_dir(dir.path() / "db")) {
    if (f.ends_with(".meta")) {
      EXPECT_EQ(read_file(dir.path() / "db" / f).find(secret), std::string::npos);
    }
  }
}

TEST(BackupDb, JsonOutputDescribesTheBackup) {
  PgCluster pg;
  pg.create_database("archive");
  TempDir dir;
  CliResult r = run_backupctl({"backup", "db", "--json"}, backup_env(pg, "archive", dir.path()));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["ok"], true);
  EXPECT_EQ(j["kind"], "db");
  EXPECT_EQ(j["meta"]["sha256"], sha256sum(j["path"].get<std::string>()));
}

}  // namespace backupctl::test
