// What "latest" means (issue 24): the newest complete set of the configured database and
// attachments store, made with a clock that was right, whose parts are all where it is read
// from; and a dump of another database never replaces this one without a flag that says so.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cstdlib>

#include "fixture.hpp"
#include "stack_host.hpp"
#include "support/capture_server.hpp"
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
  CaptureServer hook("HTTP/1.1 200 OK", 1);
  CliResult a = run_backupctl({"backup", "all", "--json"},
                              with(with(archive_env, "BACKUP_NOTIFY_URL", hook.url() + "/n"), "BACKUP_NOTIFY_ON_SUCCESS", "yes"));
  ASSERT_EQ(a.exit_code, 0) << a.err;
  // The notification of a set names the set file (it named the config backup).
  EXPECT_EQ(nlohmann::json::parse(hook.body(), nullptr, false)["file"], json_of(a)["set_file"]) << hook.body();
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
  CliResult recovered = run_backupctl({"restore", "all", "--remote", "--set", "latest"}, fresh_host_env(fresh, fresh_dir, host, remote));
  ASSERT_EQ(recovered.exit_code, 0) << recovered.out << recovered.err;
  EXPECT_EQ(rows(fresh, "archive"), before) << "latest on the remote restored another database's set";
  EXPECT_NE(recovered.err.find("skipped the newer set " + other_set), std::string::npos) << recovered.err;
}

// A set made while the clock ran 30 days ahead, then one made after the clock was fixed: the
// second is `latest` (locally and on the remote), the first is not counted as the newest (the
// staleness check still sees the real newest), status fails (exit 13) naming it and what to do,
// retention keeps it, verify --latest passes it over, and `prune --wrong-clock` (CONFIRM=YES)
// deletes it here and on the remote, after which status is ok again.
TEST(Latest, ABackupMadeWithAWrongClockIsNeverLatestAndStatusFailsUntilHandled) {
  Host host(64 << 10);
  TempDir remote_dir("backupctl-remote");
  const EnvList remote = {{"BACKUP_REMOTE_URL", "file://" + remote_dir.path().string()}};
  const EnvList env = host.env(remote);
  host.pg.psql("archive", "DELETE FROM documents WHERE id > 100");
  CliResult ahead = run_backupctl({"backup", "all", "--json"}, faked_clock(env, "+30d"));
  ASSERT_EQ(ahead.exit_code, 0) << ahead.err;
  const std::string ahead_dump = json_of(ahead)["set"]["parts"]["db"]["file"];
  // Every backup ahead: the likelier wrong clock is this host's (behind): nothing is deleted.
  CliResult only_ahead = run_backupctl({"status"}, env);
  EXPECT_EQ(only_ahead.exit_code, 13) << only_ahead.out;
  EXPECT_NE(only_ahead.out.find("this host's clock is more likely behind"), std::string::npos) << only_ahead.out;
  CliResult kept_all = run_backupctl({"prune", "--wrong-clock"}, with(env, "CONFIRM", "YES"));
  EXPECT_EQ(kept_all.exit_code, 0) << kept_all.err;
  EXPECT_TRUE(fs::exists(host.backups() / "db" / ahead_dump)) << kept_all.out;
  EXPECT_TRUE(fs::exists(remote_dir.path() / "db" / ahead_dump)) << kept_all.out;
  host.pg.psql("archive", "INSERT INTO documents SELECT i, 'doc ' || i FROM generate_series(101, 5000) i");
  CliResult right = run_backupctl({"backup", "all", "--json"}, env);
  ASSERT_EQ(right.exit_code, 0) << right.err;
  const std::string right_dump = json_of(right)["set"]["parts"]["db"]["file"];
  ASSERT_GT(ahead_dump, right_dump) << "the wrong clock's name sorts as the newer";

  CliResult status = run_backupctl({"status", "--json"}, env);
  EXPECT_EQ(status.exit_code, 13) << status.out << status.err;
  auto st = json_of(status);
  EXPECT_EQ(st["ok"], false);
  EXPECT_EQ(st["wrong_clock"].size(), 3u) << status.out;
  EXPECT_EQ(fs::path(st["kinds"]["db"]["newest"]["file"].get<std::string>()).filename(), right_dump) << status.out;
  EXPECT_EQ(st["kinds"]["db"]["stale"], false) << status.out;
  CliResult text = run_backupctl({"status"}, env);
  EXPECT_NE(text.out.find("WRONG CLOCK: " + (host.backups() / "db" / ahead_dump).string()), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("CONFIRM=YES backupctl prune --wrong-clock"), std::string::npos) << text.out;

  host.pg.psql("archive", "DELETE FROM documents");
  CliResult restored = run_backupctl({"restore", "all", "--set", "latest"}, with(env, "CONFIRM", "YES"));
  ASSERT_EQ(restored.exit_code, 0) << restored.err;
  EXPECT_EQ(rows(host.pg, "archive"), "5000|12502500\n") << "latest restored the set of the wrong clock";
  PgCluster fresh;
  TempDir fresh_dir("backupctl-fresh");
  CliResult recovered = run_backupctl({"restore", "all", "--remote", "--set", "latest"}, fresh_host_env(fresh, fresh_dir, host, remote));
  ASSERT_EQ(recovered.exit_code, 0) << recovered.err;
  EXPECT_EQ(rows(fresh, "archive"), "5000|12502500\n") << "latest on the remote is the set of the wrong clock";

  CliResult verified = run_backupctl({"verify", "--latest", "--json"}, env);
  ASSERT_EQ(verified.exit_code, 0) << verified.err;
  const nlohmann::json verify_report = json_of(verified);  // outlives the loop: a temporary's member would not
  for (const auto& r : verify_report["results"]) {
    EXPECT_EQ(r["file"].get<std::string>().find(ahead_dump), std::string::npos) << "verify --latest took " << r["file"];
  }
  CliResult pruned = run_backupctl({"prune"}, with(env, "BACKUP_KEEP_MIN", "1"));
  ASSERT_EQ(pruned.exit_code, 0) << pruned.err;
  EXPECT_TRUE(fs::exists(host.backups() / "db" / ahead_dump)) << "retention deleted the backup of the wrong clock";

  CliResult asked = run_backupctl({"prune", "--wrong-clock"}, env);
  EXPECT_EQ(asked.exit_code, 9) << asked.err;
  EXPECT_NE(asked.out.find("would delete " + (host.backups() / "db" / ahead_dump).string()), std::string::npos) << asked.out;
  EXPECT_TRUE(fs::exists(host.backups() / "db" / ahead_dump));
  CliResult handled = run_backupctl({"prune", "--wrong-clock"}, with(env, "CONFIRM", "YES"));
  ASSERT_EQ(handled.exit_code, 0) << handled.err;
  EXPECT_FALSE(fs::exists(host.backups() / "db" / ahead_dump));
  EXPECT_FALSE(fs::exists(remote_dir.path() / "db" / ahead_dump)) << "the remote's copy stayed";
  EXPECT_TRUE(fs::exists(host.backups() / "db" / right_dump));
  EXPECT_TRUE(fs::exists(remote_dir.path() / "db" / right_dump));
  CliResult again = run_backupctl({"status"}, env);
  EXPECT_EQ(again.exit_code, 0) << again.out << again.err;
}

// A set whose backups did not all reach the remote (made while encryption was off, so push
// refused them): push does not send its set file. One there anyway (an older version sent it) is
// skipped by `latest` on the remote, which says so and restores the newest set that is whole; by
// its id it is refused before anything is fetched, instead of a bare HTTP 404 half-way.
TEST(Latest, ASetGoesOffSiteOnlyAfterItsBackupsAndAnIncompleteOneIsSkipped) {
  Host host(16 << 10);
  TempDir remote_dir("backupctl-remote");
  const EnvList remote = {{"BACKUP_REMOTE_URL", "file://" + remote_dir.path().string()}};
  const EnvList env = host.env(remote);
  CliResult whole = run_backupctl({"backup", "all", "--json"}, env);
  ASSERT_EQ(whole.exit_code, 0) << whole.err;
  const std::string whole_id = json_of(whole)["set"]["set_id"];
  EnvList plain = env;
  std::erase_if(plain, [](const auto& kv) { return kv.first == "BACKUP_AGE_RECIPIENTS"; });
  host.pg.psql("archive", "DELETE FROM documents WHERE id > 10");
  CliResult unencrypted = run_backupctl({"backup", "all", "--no-remote", "--json"}, plain);
  ASSERT_EQ(unencrypted.exit_code, 0) << unencrypted.err;
  const std::string set_file = fs::path(json_of(unencrypted)["set_file"].get<std::string>()).filename();
  const std::string partial_id = json_of(unencrypted)["set"]["set_id"];
  CliResult pushed = run_backupctl({"push", "--all", "--json"}, env);
  EXPECT_NE(pushed.exit_code, 0) << pushed.out;
  EXPECT_NE(pushed.out.find("sets/" + set_file + ": not sent: db/"), std::string::npos) << pushed.out;
  EXPECT_FALSE(fs::exists(remote_dir.path() / "sets" / set_file)) << "a set went up before its backups";

  fs::copy_file(host.backups() / "sets" / set_file, remote_dir.path() / "sets" / set_file);
  PgCluster fresh;
  TempDir fresh_dir("backupctl-fresh");
  const EnvList e = fresh_host_env(fresh, fresh_dir, host, remote);
  CliResult by_id = run_backupctl({"restore", "all", "--remote", "--set", partial_id}, e);
  EXPECT_EQ(by_id.exit_code, 4) << by_id.err;
  EXPECT_NE(by_id.err.find("set " + partial_id + " on file://" + remote_dir.path().string() + " is incomplete: its db/"),
            std::string::npos)
      << by_id.err;
  EXPECT_TRUE(list_dir(fresh_dir.path() / "backups" / "db").empty()) << "something was fetched";
  CliResult latest = run_backupctl({"restore", "all", "--remote", "--set", "latest"}, e);
  ASSERT_EQ(latest.exit_code, 0) << latest.err;
  EXPECT_NE(latest.err.find("skipped the newer set " + partial_id + ": its db/"), std::string::npos) << latest.err;
  EXPECT_EQ(rows(fresh, "archive"), "5000|12502500\n");
}

}  // namespace backupctl::test
