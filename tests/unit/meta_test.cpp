#include <gtest/gtest.h>
#include <sys/stat.h>

#include "catalog/catalog.hpp"
#include "catalog/meta.hpp"
#include "util/error.hpp"
#include "util/fs.hpp"

namespace backupctl {

namespace {
Meta sample() {
  Meta m;
  m.kind = "db";
  m.file = "archive_archive_20260226_031500.dump";
  m.size = 1234;
  m.sha256 = std::string(64, 'a');
  m.profile = "prod";
  m.created_at = "2026-02-26T03:15:00+09:00";
  m.set_id = "20260226_031500-00ff";
  m.tool_version = "0.1.0";
  m.compression = "gzip:1";
  m.source = {{"database", "archive"}, {"server_version", "15.18"}};
  m.parts["roles"] = {{"file", "archive_archive_20260226_031500.roles.sql"}};
  return m;
}
}  // namespace

TEST(Meta, RoundTripsThroughJsonAndKeepsUnknownFields) {
  Meta m = sample();
  m.other["added_by_a_newer_version"] = 42;
  nlohmann::json j = m.to_json();
  EXPECT_EQ(j["kind"], "db");
  EXPECT_EQ(j["sha256"], std::string(64, 'a'));
  EXPECT_EQ(j["created_at"], "2026-02-26T03:15:00+09:00");
  EXPECT_EQ(j["profile"], "prod");
  EXPECT_EQ(j["set_id"], "20260226_031500-00ff");
  EXPECT_EQ(j["tool_version"], "0.1.0");
  EXPECT_TRUE(j["verification"].is_null());
  Meta back = Meta::from_json(j, "x.meta");
  EXPECT_EQ(back.to_json(), j);
  EXPECT_EQ(back.other["added_by_a_newer_version"], 42);
}

TEST(Meta, WrittenAtomicallyWithMode0600) {
  TempDir dir;
  auto path = dir.path() / "x.dump.meta";
  Meta m = sample();
  m.verification = Verification{"2026-02-27T00:00:00+09:00", true, "sha256 ok"};
  write_meta(path, m);
  struct stat st{};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  Meta back = read_meta(path);
  ASSERT_TRUE(back.verification);
  EXPECT_TRUE(back.verification->ok);
  EXPECT_EQ(back.size, 1234u);
  // Only the meta itself is in the directory: no temporary file left behind.
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.path()),
                          std::filesystem::directory_iterator()),
            1);
}

TEST(Meta, MalformedMetasAreVerificationErrors) {
  TempDir dir;
  auto path = dir.path() / "x.meta";
  write_file_atomic(path, "{\"kind\": \"db\", \"file\": ");
  try {
    read_meta(path);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::verification);
  }
  write_file_atomic(path, R"({"kind":"db","file":"f","size":1,"sha256":"short"})");
  EXPECT_THROW(read_meta(path), Error);
  write_file_atomic(path, R"({"kind":"db","file":"f","sha256":"short"})");
  EXPECT_THROW(read_meta(path), Error);
}

TEST(Catalog, ListsBackupsNewestFirstAndSkipsEverythingElse) {
  TempDir dir;
  make_dirs(dir.path() / "db");
  auto put = [&](const std::string& name, const std::string& created_at) {
    write_file_atomic(dir.path() / "db" / name, "data");
    if (!created_at.empty()) {
      Meta m = sample();
      m.file = name;
      m.size = 4;
      m.created_at = created_at;
      write_meta(dir.path() / "db" / (name + ".meta"), m);
    }
  };
  put("archive_archive_20260101_000000.dump", "2026-01-01T00:00:00+00:00");
  put("archive_archive_20260301_000000.dump", "2026-03-01T00:00:00+00:00");
  put("archive_archive_20260201_000000.dump", "");  // no meta
  write_file_atomic(dir.path() / "db" / "archive_archive_20260401_000000.dump.partial", "x");
  write_file_atomic(dir.path() / "db" / "archive_archive_20260301_000000.roles.sql", "x");
  write_file_atomic(dir.path() / "db" / "notes.txt", "x");

  auto entries = scan_catalog(dir.path());
  ASSERT_EQ(entries.size(), 3u);
  EXPECT_EQ(entries[0].path.filename(), "archive_archive_20260301_000000.dump");
  EXPECT_EQ(entries[1].path.filename(), "archive_archive_20260201_000000.dump");
  EXPECT_EQ(entries[2].path.filename(), "archive_archive_20260101_000000.dump");
  EXPECT_EQ(entries[0].verify_state(), "never");
  EXPECT_EQ(entries[1].verify_state(), "no meta");
  EXPECT_TRUE(scan_catalog(dir.path() / "missing").empty());
}

TEST(Catalog, SameSecondReservationsGetDistinctNames) {
  TempDir dir;
  auto names = [](std::string suffix) {
    return [suffix](std::string_view ts) {
      return std::vector<std::string>{"archive_x_" + std::string(ts) + suffix,
                                      "archive_x_" + std::string(ts) + ".roles.sql"};
    };
  };
  ReservedFiles a = reserve_backup_files(dir.path(), names(".dump"));
  // a's .partial files hold its names; a different dump suffix still shares the roles name.
  ReservedFiles b = reserve_backup_files(dir.path(), names(".dump.zst"));
  EXPECT_NE(a.timestamp, b.timestamp);
  for (auto& s : a.sinks) s.commit();
  for (auto& s : b.sinks) s.commit();
  ReservedFiles c = reserve_backup_files(dir.path(), names(".dump"));
  EXPECT_NE(c.timestamp, b.timestamp);
  EXPECT_NE(c.timestamp, a.timestamp);
  c.sinks.clear();  // abandoned: nothing of c is left
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.path()),
                          std::filesystem::directory_iterator()),
            4);
}

}  // namespace backupctl
