// What a hostile review tried, each as the user would meet it: a staging URL that is the live
// database in another spelling, object keys that look like paths, metas and set files that point
// elsewhere, retention across databases, a truncated backup that once verified, a dump whose data
// block is damaged, and the errors that used to mislead.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>

#include "fixture.hpp"
#include "s3_fixture.hpp"
#include "support/normalizing_s3.hpp"
#include "tar/tar.hpp"
#include "io/atomic_file.hpp"
#include "storage/s3/s3_store.hpp"
#include "support/tcp_forwarder.hpp"
#include "util/time.hpp"
#include "writer.hpp"

namespace backupctl::test {

namespace {

nlohmann::json read_json(const fs::path& p) { return nlohmann::json::parse(read_file(p)); }

// Database `archive` with 50 documents and a backup of it (set + db).
struct Stack {
  PgCluster pg;
  TempDir dir;
  fs::path dump;
  explicit Stack(PgCluster::Listen listen = PgCluster::Listen::socket) : pg(listen) {
    pg.create_database("archive");
    pg.psql("archive", "CREATE TABLE documents AS SELECT i AS id FROM generate_series(1, 50) i;"
                       "CREATE TABLE heartbeat (at timestamptz NOT NULL)");
    CliResult r = run_backupctl({"backup", "db", "--json"}, env());
    EXPECT_EQ(r.exit_code, 0) << r.err;
    dump = nlohmann::json::parse(r.out)["path"].get<std::string>();
  }
  EnvList env() const {
    EnvList e = backup_env(pg, "archive", dir.path());
    e.emplace_back("SERVICE_CONTROL", "none");
    return e;
  }
  std::vector<std::string> databases() const {
    return split_lines(pg.psql("postgres", "SELECT datname FROM pg_database WHERE datname LIKE 'archive%' ORDER BY 1"));
  }
};

}  // namespace

TEST(Identity, AStagingUrlThatIsTheLiveDatabaseIsRefusedHoweverItIsSpelled) {
  Stack s(PgCluster::Listen::tcp);
  const std::string port = std::to_string(s.pg.port());
  // The live database by TCP; an undo copy, which a rehearsal into the live name used to drop too.
  EnvList e = s.env();
  e.emplace_back("PGHOST", "127.0.0.1");
  e.emplace_back("CONFIRM", "YES");
  s.pg.psql("postgres", "CREATE DATABASE archive__pre_restore_20260101_000000");
  TcpForwarder pooler(s.pg.port());  // another port to the same server
  for (const std::string& url :
       {"postgresql://postgres@127.0.0.1:" + port + "/archive", "postgresql://postgres@localhost:" + port + "/archive",
        "postgresql://postgres@localhost:" + port + "/archive?application_name=staging&connect_timeout=5",
        "postgresql://postgres@127.0.0.1:" + std::to_string(pooler.port()) + "/archive",
        "postgresql:///archive?host=" + s.pg.socket_dir().string() + "&port=" + port + "&user=postgres"}) {
    EnvList r = e;
    r.emplace_back("STAGING_DATABASE_URL", url);
    CliResult rehearse = run_backupctl({"rehearse", "--set", "latest"}, r);
    EXPECT_EQ(rehearse.exit_code, 2) << url << ": " << rehearse.err;
    EXPECT_NE(rehearse.err.find("STAGING_DATABASE_URL names the live database archive"), std::string::npos)
        << rehearse.err;
    EXPECT_NE(rehearse.err.find("nothing was changed"), std::string::npos) << rehearse.err;
  }
  EXPECT_EQ(s.pg.psql("archive", "SELECT count(*) FROM documents"), "50\n");
  EXPECT_EQ(s.databases(), (std::vector<std::string>{"archive", "archive__pre_restore_20260101_000000"}));

  // --target-db naming the live database: the same.
  CliResult t = run_backupctl({"restore", "db", "--target-db", "archive", "--file", s.dump.string()}, e);
  EXPECT_EQ(t.exit_code, 2) << t.err;
  EXPECT_NE(t.err.find("--target-db names the live database archive"), std::string::npos) << t.err;

  // Another database on the same server is a staging database like any other.
  TempDir app, objects;
  make_dirs(app.path() / "infra");
  write_file_atomic(app.path() / "infra/env", "LOG_LEVEL=info\n");
  make_dirs(objects.path() / "attachments");
  write_file_atomic(objects.path() / "attachments/a.txt", "a");
  e.emplace_back("APP_ROOT", app.path().string());
  e.emplace_back("OBJECT_STORAGE", "disk");
  e.emplace_back("OBJECT_STORAGE_DIR", objects.path().string());
  CliResult all = run_backupctl({"backup", "all", "-q"}, e);
  ASSERT_EQ(all.exit_code, 0) << all.err;
  EnvList ok = e;
  ok.emplace_back("STAGING_DATABASE_URL", "postgresql://postgres@localhost:" + port + "/archive_staging");
  CliResult fine = run_backupctl({"rehearse"}, ok);
  EXPECT_EQ(fine.exit_code, 0) << fine.err;
  EXPECT_EQ(s.databases(), (std::vector<std::string>{"archive", "archive__pre_restore_20260101_000000"}));
}

TEST(Identity, TargetDbAndRehearsalsNeverStopTheLiveServices) {
  Stack s;
  Writer writer;
  EnvList e = s.env();
  for (const auto& v : writer.service_env()) e.push_back(v);
  e.emplace_back("CONFIRM", "YES");
  writer.start(s.pg, "archive");
  CliResult r = run_backupctl({"restore", "db", "--target-db", "archive_copy", "--file", s.dump.string()}, e);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(s.pg.psql("archive_copy", "SELECT count(*) FROM documents"), "50\n");
  CliResult plan = run_backupctl({"restore", "db", "--target-db", "archive_other", "--file", s.dump.string()},
                                 s.env());
  EXPECT_NE(plan.out.find("services:   not stopped"), std::string::npos) << plan.out;
  EXPECT_EQ(first(read_events(writer.log()), "stopped"), -1) << "the live services were stopped";
  EXPECT_TRUE(writer.running());
}

TEST(ObjectKeys, KeysAFolderCannotHoldAreRefusedInThePlan) {
  // An objects archive whose keys have "." and ".." segments (S3 keeps such keys as they are; on
  // the wire they go byte for byte: S3Keys.AreSentByteForByteNeverAsPaths). A folder cannot hold
  // them: refused in the plan, before anything is written, never mapped onto other paths.
  TempDir dir, folder;
  make_dirs(dir.path() / "objects");
  fs::path archive = dir.path() / "objects/objects_minio_20261201_000000.tar.gz";
  {
    auto sink = io::AtomicFileSink::try_create(archive);
    TarWriter w(*sink, TarCompression::gzip, 1);
    Manifest m;
    m.label = "minio";
    m.buckets = {"attachments"};
    for (const std::string key : {"docs/../../escaped.txt", "./dot/./x.txt", "plain/a.txt"}) {
      std::string body = "content of " + key;
      ManifestObject o{"attachments", key, tar_path("attachments", key), body.size(), "", "", "", {}, ""};
      o.sha256 = [&] {
        io::NullSink null;
        io::Sha256Sink sha(null);
        sha.write(std::span<const char>(body.data(), body.size()));
        sha.finish();
        return sha.hex();
      }();
      w.begin(o.path, body.size(), 0, true);
      w.write(std::span<const char>(body.data(), body.size()));
      w.end();
      m.objects.push_back(o);
    }
    w.finish(m);
    sink->commit();
  }
  write_file_atomic(archive.string() + ".meta",
                    nlohmann::json({{"kind", "objects"}, {"file", archive.filename().string()},
                                    {"size", fs::file_size(archive)}, {"sha256", sha256sum(archive)}})
                        .dump());
  EnvList d = {{"BACKUP_DIR", dir.path().string()}, {"OBJECT_STORAGE", "disk"},
               {"OBJECT_STORAGE_DIR", folder.path().string()}, {"CONFIRM", "YES"}};
  for (const std::vector<std::string>& extra : {std::vector<std::string>{}, {"--target", (folder.path() / "staging").string()}}) {
    std::vector<std::string> args = {"restore", "objects", "--file", archive.string()};
    args.insert(args.end(), extra.begin(), extra.end());
    CliResult f = run_backupctl(args, d);
    EXPECT_EQ(f.exit_code, 2) << f.err;
    EXPECT_NE(f.err.find("a folder cannot hold 2 of its keys, first: attachments/"), std::string::npos) << f.err;
    EXPECT_NE(f.err.find("nothing was changed"), std::string::npos) << f.err;
  }
  EXPECT_TRUE(list_dir(folder.path()).empty());
  EXPECT_FALSE(fs::exists(dir.path() / "escaped.txt"));
}

TEST(ObjectKeys, KeysThatCouldClimbAreRefusedInThePlanWhateverTheServer) {
  // Ceph RGW keeps keys byte for byte, so keys with "." and ".." segments can be backed up from
  // it. Restored for a rehearsal into staging/rehearsal-1/, the first would climb into the live
  // bucket on a server that resolves dot segments (s3rver; nginx in front of MinIO): such keys
  // are refused in the plan for every S3 target, RGW and such a server alike, before anything
  // is sent. Keys without them restore as before.
  S3Server s3;
  S3Store store(s3.settings());
  store.create_bucket("attachments");
  store.create_bucket("staging");
  const std::vector<std::string> keys = {"a/../../../../attachments/replaced.txt", "docs/../replaced.txt", "./dot/./x.txt",
                                         "plain/a.txt"};
  for (const auto& k : keys) {
    std::string body = "content of " + k;
    MemorySource src(body.data(), body.size());
    store.put_object("attachments", k, src, {});
  }
  TempDir dir;
  EnvList e = s3.env();
  e.emplace_back("BACKUP_DIR", dir.path().string());
  e.emplace_back("MINIO_BUCKETS", "attachments");
  CliResult b = run_backupctl({"backup", "objects", "--json"}, e);
  ASSERT_EQ(b.exit_code, 0) << b.err;
  const std::string archive = nlohmann::json::parse(b.out)["path"].get<std::string>();
  e.emplace_back("CONFIRM", "YES");

  NormalizingS3 normalizing;
  normalizing.create_bucket("attachments");
  normalizing.create_bucket("staging");
  normalizing.put("attachments", "replaced.txt", "the live object");
  EnvList at_normalizing = e;
  std::erase_if(at_normalizing, [](const auto& kv) { return kv.first == "MINIO_ENDPOINT"; });
  at_normalizing.emplace_back("MINIO_ENDPOINT", normalizing.endpoint());
  for (const EnvList& env : {e, at_normalizing}) {
    for (const char* target : {"staging/rehearsal-1", "staging"}) {
      CliResult r = run_backupctl({"restore", "objects", "--target", target, "--file", archive}, env);
      EXPECT_EQ(r.exit_code, 2) << target << ": " << r.err;
      EXPECT_NE(r.err.find("3 of its keys have a '.' or '..' segment, first: attachments/"), std::string::npos) << r.err;
      EXPECT_NE(r.err.find("nothing was changed"), std::string::npos) << r.err;
    }
  }
  for (const auto& req : normalizing.requests()) {
    EXPECT_FALSE(req.starts_with("PUT ") || req.starts_with("DELETE ") || req.starts_with("POST ")) << req;
  }
  EXPECT_EQ(normalizing.objects(), (std::map<std::string, std::string>{{"attachments/replaced.txt", "the live object"}}));
  std::set<std::string> staged;
  store.list_objects("staging", "", [&](const ObjectEntry& o) { staged.insert(o.key); });
  EXPECT_TRUE(staged.empty()) << testing::PrintToString(staged);
  EXPECT_EQ(s3.rejections(), 0) << "a request's signature did not hold";

  // The normalizing server itself: a key without dot segments lands where it was sent.
  store.delete_objects("attachments", {keys[0], keys[1], keys[2]});
  CliResult plain = run_backupctl({"backup", "objects", "--json"}, e);
  ASSERT_EQ(plain.exit_code, 0) << plain.err;
  CliResult r = run_backupctl({"restore", "objects", "--target", "staging/rehearsal-1", "--file",
                               nlohmann::json::parse(plain.out)["path"].get<std::string>()},
                              at_normalizing);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(normalizing.objects()["staging/rehearsal-1/attachments/plain/a.txt"], "content of plain/a.txt");
}

TEST(ObjectKeys, AKeyThatIsAlsoAFolderIsRefusedForAFolderTarget) {
  S3Server s3;
  S3Store store(s3.settings());
  store.create_bucket("attachments");
  for (const char* k : {"reports/2026", "reports/2026/jan.pdf"}) {
    std::string body = k;
    MemorySource src(body.data(), body.size());
    store.put_object("attachments", k, src, {});
  }
  TempDir dir, folder;
  EnvList e = s3.env();
  e.emplace_back("BACKUP_DIR", dir.path().string());
  CliResult b = run_backupctl({"backup", "objects", "--json"}, e);
  ASSERT_EQ(b.exit_code, 0) << b.err;
  EnvList d = {{"BACKUP_DIR", dir.path().string()}, {"OBJECT_STORAGE", "disk"},
               {"OBJECT_STORAGE_DIR", folder.path().string()}, {"CONFIRM", "YES"}};
  CliResult f = run_backupctl({"restore", "objects", "--file", nlohmann::json::parse(b.out)["path"]}, d);
  EXPECT_EQ(f.exit_code, 2) << f.err;
  EXPECT_NE(f.err.find("the key attachments/reports/2026 is also the folder of other keys"), std::string::npos) << f.err;
  EXPECT_TRUE(list_dir(folder.path()).empty());
}

TEST(Retention, HoldsPerDatabaseNotForTheKindAsAWhole) {
  // Two databases dumped into one BACKUP_DIR; `other`'s only backup is older than the retention,
  // `archive` has newer ones: `other`'s must stay (BACKUP_KEEP_MIN and the newest of each source).
  TempDir backups;
  auto fake = [&](const std::string& db, int days_ago, int seq) {
    auto t = Clock::now() - std::chrono::hours(24) * days_ago + std::chrono::seconds(seq);
    std::string name = "archive_" + db + "_" + name_timestamp(t) + ".dump";
    make_dirs(backups.path() / "db");
    write_file_atomic(backups.path() / "db" / name, "dump!!");
    write_file_atomic(backups.path() / "db" / (name + ".meta"),
                      nlohmann::json({{"kind", "db"}, {"file", name}, {"size", 6}, {"sha256", std::string(64, 'a')},
                                      {"created_at", iso8601(t)}, {"source", {{"database", db}}}})
                          .dump());
    return backups.path() / "db" / name;
  };
  fs::path other = fake("other", 90, 1);
  for (int i = 0; i < 4; ++i) fake("archive", 60 - i, 10 + i);
  EnvList e = {{"BACKUP_DIR", backups.path().string()}, {"BACKUP_RETENTION_DAYS", "30"}, {"BACKUP_KEEP_MIN", "2"}};
  CliResult r = run_backupctl({"prune"}, e);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(fs::exists(other)) << r.out;
  EXPECT_NE(r.out.find("of the db of other"), std::string::npos) << r.out;
  int archive_left = 0;
  for (const auto& f : list_dir(backups.path() / "db")) archive_left += f.starts_with("archive_archive_") && f.ends_with(".dump");
  EXPECT_EQ(archive_left, 2) << r.out;
}

TEST(UntrustedInput, AMetaOrSetFilePointingElsewhereIsReportedNotFollowed) {
  TempDir backups, outside;
  fs::path victim = outside.path() / "victim.txt";
  write_file_atomic(victim, "precious");
  make_dirs(backups.path() / "db");
  make_dirs(backups.path() / "other");
  write_file_atomic(backups.path() / "other/neighbour.txt", "also precious");
  auto t = Clock::now() - std::chrono::hours(24) * 90;
  int seq = 0;
  for (const std::string& roles : {victim.string(), std::string("../other/neighbour.txt"), std::string("/dev/null")}) {
    std::string name = "archive_archive_" + name_timestamp(t + std::chrono::seconds(seq++)) + ".dump";
    write_file_atomic(backups.path() / "db" / name, "dump!!");
    write_file_atomic(backups.path() / "db" / (name + ".meta"),
                      nlohmann::json({{"kind", "db"}, {"file", name}, {"size", 6}, {"sha256", std::string(64, 'a')},
                                      {"created_at", iso8601(t)}, {"parts", {{"roles", {{"file", roles}}}}}})
                          .dump());
  }
  // A set whose members are paths outside BACKUP_DIR.
  make_dirs(backups.path() / "sets");
  write_file_atomic(backups.path() / "sets/set_20260101_000000.json",
                    nlohmann::json({{"set_id", "evil"}, {"complete", true},
                                    {"parts", {{"db", {{"path", "../../" + victim.string()}}},
                                               {"config", {{"path", victim.string()}}}}}})
                        .dump());
  EnvList e = {{"BACKUP_DIR", backups.path().string()}, {"BACKUP_RETENTION_DAYS", "30"}, {"BACKUP_KEEP_MIN", "1"},
               {"CONFIRM", "YES"}, {"SERVICE_CONTROL", "none"}};
  CliResult r = run_backupctl({"prune"}, e);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read_file(victim), "precious");
  EXPECT_EQ(read_file(backups.path() / "other/neighbour.txt"), "also precious");
  EXPECT_NE(r.err.find("which is not a file beside it: not followed"), std::string::npos) << r.err;
  CliResult all = run_backupctl({"restore", "all", "--set", "evil"}, e);
  EXPECT_EQ(all.exit_code, 5) << all.err;
  EXPECT_NE(all.err.find("not a db backup file of BACKUP_DIR: not followed"), std::string::npos) << all.err;
  EXPECT_EQ(read_file(victim), "precious");
}

// BACKUP_DIR/journal a symbolic link to a folder of forged journals (one whose temp_dir entry
// names a folder of /tmp the repair would remove): never followed, by any command, and said.
TEST(UntrustedInput, AJournalFolderThatIsALinkIsNeverFollowed) {
  TempDir backups, elsewhere, victim("backupctl-victim");
  write_file_atomic(victim.path() / "keep.txt", "not the repair's to remove");
  nlohmann::json forged = {{"journal_version", 1},
                           {"command", "restore db"},
                           {"pid", 999999},
                           {"step", "restore-db.load"},
                           {"pending", {{{"id", 1}, {"type", "temp_dir"}, {"data", {{"path", victim.path().string()}}}}}}};
  write_file_atomic(elsewhere.path() / "run_20261201_000000_999999.json", forged.dump(), 0600);
  fs::create_directory_symlink(elsewhere.path(), backups.path() / "journal");
  const EnvList e = {{"BACKUP_DIR", backups.path().string()}};
  for (const auto& argv : {std::vector<std::string>{"status"}, std::vector<std::string>{"repair"}, std::vector<std::string>{"list"}}) {
    CliResult r = run_backupctl(argv, e);
    EXPECT_EQ(r.exit_code, 2) << argv[0] << ": " << r.out << r.err;
    EXPECT_NE(r.err.find((backups.path() / "journal").string() + " is a symbolic link"), std::string::npos) << r.err;
    EXPECT_TRUE(fs::exists(victim.path() / "keep.txt")) << argv[0] << ": the forged journal was acted on";
  }
}

TEST(UntrustedInput, SetsSurviveAMovedBackupDir) {
  Stack s;
  TempDir app;
  make_dirs(app.path() / "infra");
  write_file_atomic(app.path() / "infra/env", "LOG_LEVEL=info\n");
  TempDir objects;
  make_dirs(objects.path() / "attachments");
  write_file_atomic(objects.path() / "attachments/a.txt", "a");
  EnvList e = s.env();
  e.emplace_back("APP_ROOT", app.path().string());
  e.emplace_back("OBJECT_STORAGE", "disk");
  e.emplace_back("OBJECT_STORAGE_DIR", objects.path().string());
  ASSERT_EQ(run_backupctl({"backup", "all", "-q"}, e).exit_code, 0);
  TempDir moved;
  fs::rename(s.dir.path() / "db", moved.path() / "db");
  fs::rename(s.dir.path() / "objects", moved.path() / "objects");
  fs::rename(s.dir.path() / "config", moved.path() / "config");
  fs::rename(s.dir.path() / "sets", moved.path() / "sets");
  s.pg.psql("archive", "DELETE FROM documents");
  EnvList m = e;
  m.emplace_back("BACKUP_DIR", moved.path().string());
  m.emplace_back("CONFIRM", "YES");
  CliResult r = run_backupctl({"restore", "all", "--set", "latest"}, m);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(s.pg.psql("archive", "SELECT count(*) FROM documents"), "50\n");
}

TEST(WhatIsGood, ATruncatedBackupIsDamagedInListStatusAndRetention) {
  Stack s;
  ASSERT_EQ(run_backupctl({"verify", "--latest"}, s.env()).exit_code, 0);
  CliResult before = run_backupctl({"list", "--json"}, s.env());
  ASSERT_EQ(nlohmann::json::parse(before.out)[0]["verified"], "ok");
  fs::resize_file(s.dump, fs::file_size(s.dump) / 2);
  CliResult list = run_backupctl({"list", "--json"}, s.env());
  EXPECT_EQ(nlohmann::json::parse(list.out)[0]["verified"], "damaged") << list.out;
  CliResult table = run_backupctl({"list"}, s.env());
  EXPECT_NE(table.out.find("damaged"), std::string::npos) << table.out;
  CliResult status = run_backupctl({"status", "--json"}, s.env());
  auto j = nlohmann::json::parse(status.out);
  EXPECT_TRUE(j["kinds"]["db"]["newest"].is_null()) << status.out;
}

TEST(WhatIsGood, RetentionNeverCountsADamagedBackupAsTheNewestVerified) {
  TempDir backups;
  auto fake = [&](int days_ago) {
    auto t = Clock::now() - std::chrono::hours(24) * days_ago;
    std::string name = "archive_archive_" + name_timestamp(t) + ".dump";
    make_dirs(backups.path() / "db");
    write_file_atomic(backups.path() / "db" / name, "dump!!");
    write_file_atomic(backups.path() / "db" / (name + ".meta"),
                      nlohmann::json({{"kind", "db"}, {"file", name}, {"size", 6}, {"sha256", std::string(64, 'a')},
                                      {"created_at", iso8601(t)},
                                      {"verification", {{"at", iso8601(t)}, {"ok", true}, {"detail", ""}}}})
                          .dump());
    return backups.path() / "db" / name;
  };
  fs::path older = fake(50), middle = fake(45), newest = fake(40);
  fs::resize_file(newest, 3);  // cut short after it verified
  EnvList e = {{"BACKUP_DIR", backups.path().string()}, {"BACKUP_RETENTION_DAYS", "30"}, {"BACKUP_KEEP_MIN", "1"}};
  CliResult r = run_backupctl({"prune"}, e);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // The newest is kept as the newest, the middle one as the newest that verified (the damaged one
  // does not count), the older one goes.
  EXPECT_TRUE(fs::exists(newest)) << r.out;
  EXPECT_TRUE(fs::exists(middle)) << r.out;
  EXPECT_FALSE(fs::exists(older)) << r.out;
}

TEST(WhatIsGood, VerifyDecodesEveryDataBlockAndQuickReadsOnlyTheTableOfContents) {
  Stack s;
  s.pg.psql("archive", "CREATE TABLE big AS SELECT i, md5(i::text) AS t FROM generate_series(1, 50000) i");
  CliResult b = run_backupctl({"backup", "db", "--json"}, s.env());
  ASSERT_EQ(b.exit_code, 0) << b.err;
  fs::path dump = nlohmann::json::parse(b.out)["path"].get<std::string>();
  CliResult good = run_backupctl({"verify", dump.string()}, s.env());
  EXPECT_EQ(good.exit_code, 0) << good.out << good.err;
  EXPECT_NE(good.out.find("every data block decoded (3 tables, 50050 rows)"), std::string::npos) << good.out;
  // Damage inside the table data (after the table of contents), and a meta that matches the
  // damaged bytes: what a dump damaged before it was hashed looks like.
  std::string bytes = read_file(dump);
  bytes[bytes.size() * 3 / 4] ^= 0x5a;
  write_file_atomic(dump, bytes, 0600);
  auto meta = read_json(dump.string() + ".meta");
  meta["sha256"] = sha256sum(dump);
  write_file_atomic(dump.string() + ".meta", meta.dump());
  CliResult quick = run_backupctl({"verify", "--quick", dump.string()}, s.env());
  EXPECT_EQ(quick.exit_code, 0) << quick.out;
  CliResult full = run_backupctl({"verify", dump.string()}, s.env());
  EXPECT_EQ(full.exit_code, 5) << full.out;
  EXPECT_NE(full.out.find("the archive is malformed: corrupt compressed data"), std::string::npos) << full.out;
}

TEST(ClearErrors, AServiceStartThatFailsAfterTheSwapSaysTheDatabaseWasRestored) {
  Stack s;
  EnvList e = s.env();
  e.emplace_back("SERVICE_CONTROL", "command");
  e.emplace_back("SERVICE_STOP_CMD", "true");
  e.emplace_back("SERVICE_START_CMD", "false");
  e.emplace_back("CONFIRM", "YES");
  s.pg.psql("archive", "DELETE FROM documents");
  CliResult r = run_backupctl({"restore", "db", "--file", s.dump.string()}, e);
  EXPECT_EQ(r.exit_code, 7) << r.err;
  EXPECT_NE(r.err.find("the database archive WAS restored"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("the services are STOPPED"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("CONFIRM=YES backupctl restore undo"), std::string::npos) << r.err;
  EXPECT_EQ(s.pg.psql("archive", "SELECT count(*) FROM documents"), "50\n");
  // The services stay a pending repair until they start: status says so and how.
  CliResult status = run_backupctl({"status"}, e);
  EXPECT_EQ(status.exit_code, 12) << status.out;
  EXPECT_NE(status.out.find("REPAIR NEEDED"), std::string::npos) << status.out;
  EXPECT_NE(status.out.find("backupctl repair"), std::string::npos) << status.out;
  EnvList fixed = e;
  fixed.emplace_back("SERVICE_START_CMD", "true");
  std::erase_if(fixed, [](const auto& kv) { return kv.first == "SERVICE_START_CMD" && kv.second == "false"; });
  CliResult repaired = run_backupctl({"repair"}, fixed);
  EXPECT_EQ(repaired.exit_code, 12) << "the journal names `false`; this configuration starts with `true`: "
                                    << repaired.err;
  CliResult discard = run_backupctl({"repair", "--discard"}, fixed);
  EXPECT_EQ(discard.exit_code, 0) << discard.err;
  EXPECT_EQ(run_backupctl({"status", "--json"}, fixed).exit_code == 12, false);
}

TEST(ClearErrors, ACustomFormatDumpNamedSqlIsRecognisedInThePlan) {
  Stack s;
  fs::path sql = s.dir.path() / "from-elsewhere.sql";
  fs::copy_file(s.dump, sql);
  s.pg.psql("archive", "DELETE FROM documents");
  CliResult plan = run_backupctl({"restore", "db", "--allow-no-meta", "--file", sql.string()}, s.env());
  EXPECT_EQ(plan.exit_code, 9) << plan.err;
  EXPECT_NE(plan.out.find("a custom-format archive (PGDMP header) named .sql"), std::string::npos) << plan.out;
  EnvList e = s.env();
  e.emplace_back("CONFIRM", "YES");
  CliResult r = run_backupctl({"restore", "db", "--allow-no-meta", "--file", sql.string()}, e);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(s.pg.psql("archive", "SELECT count(*) FROM documents"), "50\n");
  // And plain SQL named .dump is refused before anything happens, with the fix.
  fs::path fake = s.dir.path() / "plain.dump";
  write_file_atomic(fake, "CREATE TABLE x (y int);\n");
  CliResult bad = run_backupctl({"restore", "db", "--allow-no-meta", "--file", fake.string()}, e);
  EXPECT_EQ(bad.exit_code, 5) << bad.err;
  EXPECT_NE(bad.err.find("name it .sql"), std::string::npos) << bad.err;
}

TEST(ClearErrors, MinioEndpointIsValidatedAndItsCredentialsNeverEchoed) {
  TempDir dir;
  struct Case {
    std::string value, message;
  } cases[] = {{"http://admin:sup3rsecret@minio:9000", "it holds credentials"},
               {"ftp://minio:9000", "the scheme must be http or https"},
               {"http://minio:9000/attachments", "it has a path"},
               {"http://", "no host"}};
  for (const auto& c : cases) {
    CliResult r = run_backupctl({"backup", "objects"}, {{"BACKUP_DIR", dir.path().string()}, {"MINIO_ENDPOINT", c.value},
                                                        {"MINIO_ACCESS_KEY", "a"}, {"MINIO_SECRET_KEY", "b"},
                                                        {"BACKUP_NOTIFY_URL", "http://127.0.0.1:1/hook"}});
    EXPECT_EQ(r.exit_code, 2) << c.value << ": " << r.err;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << r.err;
    EXPECT_EQ(r.err.find("sup3rsecret"), std::string::npos) << r.err;
  }
  std::error_code ec;
  EXPECT_FALSE(fs::exists(dir.path() / ".backupctl-state.json", ec));
}

TEST(ClearErrors, NoUndoIsOfferedWhenThePreviousDatabaseIsNotKept) {
  Stack s;
  EnvList e = s.env();
  e.emplace_back("RESTORE_KEEP_PREVIOUS_DAYS", "0");
  e.emplace_back("CONFIRM", "YES");
  CliResult r = run_backupctl({"restore", "db", "--file", s.dump.string()}, e);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.find("undo with"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("there is no undo"), std::string::npos) << r.out;
  EXPECT_EQ(s.databases(), std::vector<std::string>{"archive"});
  CliResult j = run_backupctl({"restore", "db", "--json", "--file", s.dump.string()}, e);
  EXPECT_EQ(nlohmann::json::parse(j.out)["undo"], false);
}

TEST(ClearErrors, TheFailureHintNamesAnotherVerifiedBackupOfTheSameDatabase) {
  Stack s;
  // An older verified backup of archive, and a newer verified one of another database.
  ASSERT_EQ(run_backupctl({"verify", "--latest"}, s.env()).exit_code, 0);
  fs::path good = s.dump;
  s.pg.create_database("other");
  EnvList o = backup_env(s.pg, "other", s.dir.path());
  CliResult ob = run_backupctl({"backup", "db", "--json"}, o);
  ASSERT_EQ(ob.exit_code, 0);
  ASSERT_EQ(run_backupctl({"verify", "--all"}, s.env()).exit_code, 0);
  // A newer archive dump that fails to restore (an unknown owner, no roles file).
  s.pg.psql("postgres", "CREATE ROLE ghost");
  s.pg.psql("archive", "CREATE TABLE haunted (x int); ALTER TABLE haunted OWNER TO ghost");
  CliResult b = run_backupctl({"backup", "db", "--json"}, s.env());
  fs::path bad = nlohmann::json::parse(b.out)["path"].get<std::string>();
  fs::remove(s.dir.path() / "db" / read_json(bad.string() + ".meta")["parts"]["roles"]["file"].get<std::string>());
  auto meta = read_json(bad.string() + ".meta");
  meta.erase("parts");
  meta["verification"] = {{"at", iso8601(Clock::now())}, {"ok", true}, {"detail", "x"}};
  write_file_atomic(bad.string() + ".meta", meta.dump());
  s.pg.psql("archive", "DROP TABLE haunted");
  s.pg.psql("postgres", "DROP ROLE ghost");
  EnvList e = s.env();
  e.emplace_back("CONFIRM", "YES");
  CliResult r = run_backupctl({"restore", "db", "--file", bad.string()}, e);
  EXPECT_EQ(r.exit_code, 7) << r.err;
  EXPECT_NE(r.err.find("the newest verified backup of archive is " + good.string()), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("archive_other_"), std::string::npos) << r.err;
}

TEST(ClearErrors, BadArgumentsAndFilesEachGetOneClearLine) {
  Stack s;
  EnvList e = s.env();
  CliResult dir = run_backupctl({"restore", "db", "--file", s.dir.path().string()}, e);
  EXPECT_EQ(dir.exit_code, 2) << dir.err;
  EXPECT_NE(dir.err.find("is a directory, not a backup file"), std::string::npos) << dir.err;
  CliResult dev = run_backupctl({"verify", "/dev/null"}, e);
  EXPECT_NE(dev.exit_code, 0);
  CliResult unknown = run_backupctl({"restore", "dbb"}, e);
  EXPECT_EQ(unknown.exit_code, 2) << unknown.err;
  EXPECT_NE(unknown.err.find("unknown command 'restore dbb'"), std::string::npos) << unknown.err;
  EXPECT_NE(unknown.err.find("db, objects, config, all, undo"), std::string::npos) << unknown.err;
  CliResult top = run_backupctl({"bakup"}, e);
  EXPECT_NE(top.err.find("unknown command 'bakup'"), std::string::npos) << top.err;
  CliResult json = run_backupctl({"--json", "list", "--kindd", "db"}, e);
  EXPECT_EQ(json.exit_code, 2);
  auto j = nlohmann::json::parse(json.out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << "not JSON: " << json.out;
  EXPECT_EQ(j["ok"], false);
  EXPECT_EQ(j["error"]["code"], "usage") << json.out;
  // A meta whose roles file is a device.
  auto meta = read_json(s.dump.string() + ".meta");
  meta["parts"]["roles"]["file"] = "../../../dev/zero";
  write_file_atomic(s.dump.string() + ".meta", meta.dump());
  CliResult r = run_backupctl({"restore", "db", "--file", s.dump.string()}, e);
  EXPECT_EQ(r.exit_code, 5) << r.err;
  EXPECT_NE(r.err.find("not followed"), std::string::npos) << r.err;
}

}  // namespace backupctl::test
