// `backupctl verify` and `backupctl list` on real dumps.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "fixture.hpp"

namespace backupctl::test {

namespace {

struct Fixture {
  PgCluster pg;
  TempDir dir;
  EnvList env;

  Fixture() {
    pg.create_database("archive");
    pg.psql("archive", "CREATE TABLE documents AS SELECT i AS id, repeat(md5(i::text), 4) AS body "
                       "FROM generate_series(1, 5000) i");
    env = backup_env(pg, "archive", dir.path());
  }

  fs::path backup(const std::string& compression = "gzip:1") {
    EnvList e = env;
    e.emplace_back("BACKUP_DB_COMPRESSION", compression);
    CliResult r = run_backupctl({"backup", "db", "--json"}, e);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return nlohmann::json::parse(r.out)["path"].get<std::string>();
  }

  nlohmann::json meta(const fs::path& f) {
    return nlohmann::json::parse(read_file(f.string() + ".meta"));
  }
};

void flip_byte(const fs::path& f, std::uintmax_t offset) {
  std::fstream s(f, std::ios::in | std::ios::out | std::ios::binary);
  s.seekg(static_cast<std::streamoff>(offset));
  char c;
  s.get(c);
  s.seekp(static_cast<std::streamoff>(offset));
  s.put(static_cast<char>(c ^ 0x01));
}

}  // namespace

TEST(Verify, GoodDumpPassesAndTheMetaRecordsIt) {
  Fixture f;
  for (const char* compression : {"gzip:1", "zstd:3"}) {
    fs::path dump = f.backup(compression);
    CliResult r = run_backupctl({"verify", dump.string()}, f.env);
    EXPECT_EQ(r.exit_code, 0) << compression << ": " << r.out << r.err;
    EXPECT_NE(r.out.find("OK"), std::string::npos);
    EXPECT_NE(r.out.find("TOC entries"), std::string::npos) << r.out;
    auto m = f.meta(dump);
    EXPECT_EQ(m["verification"]["ok"], true);
    EXPECT_FALSE(m["verification"]["at"].get<std::string>().empty());
  }
}

TEST(Verify, OneFlippedByteFails) {
  Fixture f;
  for (const char* compression : {"gzip:1", "zstd:3"}) {
    fs::path dump = f.backup(compression);
    flip_byte(dump, fs::file_size(dump) / 2);
    CliResult r = run_backupctl({"verify", dump.string()}, f.env);
    EXPECT_EQ(r.exit_code, 5) << compression << ": " << r.out << r.err;
    EXPECT_NE(r.out.find("FAIL"), std::string::npos);
    auto m = f.meta(dump);
    EXPECT_EQ(m["verification"]["ok"], false);
    CliResult list = run_backupctl({"list", "--json"}, f.env);
    EXPECT_EQ(nlohmann::json::parse(list.out)[0]["verified"], "failed");
  }
}

TEST(Verify, TruncatedEmptyAndMetalessFilesFail) {
  Fixture f;
  fs::path a = f.backup();
  fs::resize_file(a, fs::file_size(a) - 100);
  CliResult r = run_backupctl({"verify", a.string()}, f.env);
  EXPECT_EQ(r.exit_code, 5);
  EXPECT_NE(r.out.find("differs from the meta"), std::string::npos) << r.out;

  fs::path b = f.backup();
  fs::remove(b.string() + ".meta");
  r = run_backupctl({"verify", b.string()}, f.env);
  EXPECT_EQ(r.exit_code, 5);
  EXPECT_NE(r.out.find("no " + b.filename().string() + ".meta"), std::string::npos) << r.out;

  r = run_backupctl({"verify", (f.dir.path() / "db/archive_archive_20200101_000000.dump").string()},
                    f.env);
  EXPECT_EQ(r.exit_code, 5);
  EXPECT_NE(r.out.find("No such file"), std::string::npos) << r.out;
}

TEST(Verify, MetaMatchingButUnreadableArchiveFails) {
  // A file whose checksum is right but is not an archive: the TOC check catches it.
  Fixture f;
  fs::path dump = f.backup();
  write_file_atomic(dump, "this is not a pg_dump archive\n");
  auto m = f.meta(dump);
  m["size"] = fs::file_size(dump);
  m["sha256"] = sha256sum(dump);
  write_file_atomic(dump.string() + ".meta", m.dump());
  CliResult r = run_backupctl({"verify", dump.string()}, f.env);
  EXPECT_EQ(r.exit_code, 5) << r.out << r.err;
  EXPECT_NE(r.out.find("pg_restore failed"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("not appear to be a valid archive"), std::string::npos) << r.out;
}

TEST(Verify, LatestAllAndNoArguments) {
  Fixture f;
  fs::path older = f.backup();
  fs::path newer = f.backup();
  flip_byte(older, 100);
  CliResult latest = run_backupctl({"verify", "--latest", "--json"}, f.env);
  EXPECT_EQ(latest.exit_code, 0) << latest.err;
  auto j = nlohmann::json::parse(latest.out);
  ASSERT_EQ(j["results"].size(), 1u);
  EXPECT_EQ(j["results"][0]["file"], newer.string());

  CliResult all = run_backupctl({"verify", "--all", "--json"}, f.env);
  EXPECT_EQ(all.exit_code, 5);
  j = nlohmann::json::parse(all.out);
  EXPECT_EQ(j["ok"], false);
  ASSERT_EQ(j["results"].size(), 2u);
  EXPECT_EQ(j["results"][0]["ok"], true);
  EXPECT_EQ(j["results"][1]["ok"], false);

  CliResult none = run_backupctl({"verify"}, f.env);
  EXPECT_EQ(none.exit_code, 2);
  EXPECT_NE(none.err.find("verify needs a FILE, --all or --latest"), std::string::npos);
}

TEST(List, NewestFirstWithSizesAndVerifiedState) {
  Fixture f;
  fs::path first = f.backup();
  fs::path second = f.backup("zstd");
  ASSERT_EQ(run_backupctl({"verify", second.string()}, f.env).exit_code, 0);

  CliResult r = run_backupctl({"list", "--json"}, f.env);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j.size(), 2u);
  EXPECT_EQ(j[0]["path"], second.string());
  EXPECT_EQ(j[0]["verified"], "ok");
  EXPECT_EQ(j[0]["kind"], "db");
  EXPECT_EQ(j[0]["size"], fs::file_size(second));
  EXPECT_EQ(j[0]["compression"], "zstd:3");
  EXPECT_EQ(j[1]["path"], first.string());
  EXPECT_EQ(j[1]["verified"], "never");

  CliResult table = run_backupctl({"list"}, f.env);
  EXPECT_EQ(table.exit_code, 0);
  EXPECT_NE(table.out.find("KIND"), std::string::npos);
  EXPECT_LT(table.out.find(second.filename().string()), table.out.find(first.filename().string()));

  TempDir empty;
  EnvList e = f.env;
  e.emplace_back("BACKUP_DIR", empty.path().string());
  CliResult none = run_backupctl({"list"}, e);
  EXPECT_EQ(none.exit_code, 0);
  EXPECT_NE(none.out.find("no backups in"), std::string::npos);
}

}  // namespace backupctl::test
