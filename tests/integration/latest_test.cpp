// What "latest" means (issue 24): the newest complete set of the configured database and
// attachments store, made with a clock that was right, whose parts are all where it is read
// from; and a dump of another database never replaces this one without a flag that says so.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "fixture.hpp"
#include "stack_host.hpp"
#include "util/fs.hpp"

namespace backupctl::test {

namespace {

// The live rows of `db` on `pg`: "count|sum(id)".
std::string rows(const PgCluster& pg, const std::string& db) { return pg.psql(db, "SELECT count(*), sum(id) FROM documents"); }

}  // namespace

// Two databases backed up to one BACKUP_DIR and one remote, `other` last: `latest` for
// PGDATABASE=archive is archive's set, locally and from the remote on a new host; `other`'s dump
// is refused by name or by set id unless --allow-other-database says so, and the plan says it.
TEST(Latest, IsTheNewestSetOfTheConfiguredDatabaseNeverAnothers) {
  Host host(64 << 10);
  TempDir remote_dir("backupctl-remote");
  const EnvList remote = {{"BACKUP_REMOTE_URL", "file://" + remote_dir.path().string()}};
  host.pg.create_database("other");
  host.pg.psql("other", "CREATE TABLE documents (id int PRIMARY KEY, title text); INSERT INTO documents VALUES (1, 'other'), (2, 'other')");
  const EnvList archive_env = host.env(remote);
  const EnvList other_env = with(archive_env, "PGDATABASE", "other");
  CliResult a = run_backupctl({"backup", "all", "--json"}, archive_env);
  ASSERT_EQ(a.exit_code, 0) << a.err;
  CliResult o = run_backupctl({"backup", "all", "--json"}, other_env);
  ASSERT_EQ(o.exit_code, 0) << o.err;
  const std::string other_set = json_of(o)["set"]["set_id"];
  const std::string other_dump = json_of(o)["set"]["parts"]["db"]["file"];
  ASSERT_EQ(list_dir(host.backups() / "sets").size(), 2u) << "two sets, even made in one second";

  const std::string before = rows(host.pg, "archive");
  ASSERT_EQ(before, "5000|12502500\n");
  host.pg.psql("archive", "DELETE FROM documents WHERE id > 10");
  CliResult restored = run_backupctl({"restore", "all", "--set", "latest"}, with(archive_env, "CONFIRM", "YES"));
  ASSERT_EQ(restored.exit_code, 0) << restored.out << restored.err;
  EXPECT_EQ(rows(host.pg, "archive"), before) << "latest restored another database's set into archive";
  EXPECT_NE(restored.err.find("skipped the newer set " + other_set), std::string::npos) << restored.err;

  // A dump of `other` by name, or its set by id: refused, nothing changed.
  host.pg.psql("archive", "DELETE FROM documents WHERE id > 10");
  const std::string changed = rows(host.pg, "archive");
  const std::string dump = (host.backups() / "db" / other_dump).string();
  for (const auto& argv : {std::vector<std::string>{"restore", "db", "--file", dump},
                           std::vector<std::string>{"restore", "all", "--set", other_set}}) {
    CliResult refused = run_backupctl(argv, with(archive_env, "CONFIRM", "YES"));
    EXPECT_EQ(refused.exit_code, 2) << argv[1] << ": " << refused.err;
    EXPECT_NE(refused.err.find("is a dump of database other, not of archive"), std::string::npos) << refused.err;
    EXPECT_NE(refused.err.find("--allow-other-database"), std::string::npos) << refused.err;
    EXPECT_EQ(rows(host.pg, "archive"), changed);
  }
  CliResult plan = run_backupctl({"restore", "db", "--file", dump, "--allow-other-database"}, archive_env);
  EXPECT_EQ(plan.exit_code, 9) << plan.err;
  EXPECT_NE(plan.out.find("CAUTION:    this is a dump of database other"), std::string::npos) << plan.out;
  CliResult allowed = run_backupctl({"restore", "db", "--file", dump, "--allow-other-database"}, with(archive_env, "CONFIRM", "YES"));
  ASSERT_EQ(allowed.exit_code, 0) << allowed.err;
  EXPECT_EQ(rows(host.pg, "archive"), "2|3\n");

  // A new host with nothing but the remote: latest is archive's set there too.
  PgCluster fresh;
  TempDir fresh_dir("backupctl-fresh");
  EnvList e = backup_env(fresh, "archive", fresh_dir.path() / "backups");
  e.insert(e.end(), {{"APP_ROOT", (fresh_dir.path() / "app").string()},
                     {"OBJECT_STORAGE", "disk"},
                     {"OBJECT_STORAGE_DIR", (fresh_dir.path() / "objects").string()},
                     {"SERVICE_CONTROL", "none"},
                     {"BACKUP_AGE_IDENTITY", host.key().string()},
                     {"CONFIRM", "YES"}});
  e.insert(e.end(), remote.begin(), remote.end());
  CliResult recovered = run_backupctl({"restore", "all", "--remote", "--set", "latest"}, e);
  ASSERT_EQ(recovered.exit_code, 0) << recovered.out << recovered.err;
  EXPECT_EQ(rows(fresh, "archive"), before) << "latest on the remote restored another database's set";
  EXPECT_NE(recovered.err.find("skipped the newer set " + other_set), std::string::npos) << recovered.err;
}

}  // namespace backupctl::test
