#include <gtest/gtest.h>

#include "catalog/naming.hpp"

namespace backupctl {

TEST(Naming, DbFileNameFollowsThePlan) {
  EXPECT_EQ(db_backup_filename("archive", "20260226_031500", ".dump"),
            "archive_archive_20260226_031500.dump");
  EXPECT_EQ(db_backup_filename("archive", "20260226_031500", ".dump.zst"),
            "archive_archive_20260226_031500.dump.zst");
}

TEST(Naming, UnsafeDatabaseNamesBecomeSafeFileNames) {
  EXPECT_EQ(filename_safe("my db/../x"), "my_db_.._x");
  EXPECT_EQ(filename_safe(".hidden"), "_.hidden");
  EXPECT_EQ(filename_safe("문서"), "______");
  EXPECT_EQ(db_backup_filename("a/b", "20260226_031500", ".dump"), "archive_a_b_20260226_031500.dump");
}

TEST(Naming, ParsesEveryKind) {
  auto db = parse_backup_filename("archive_my_archive_20260226_031500.dump");
  ASSERT_TRUE(db);
  EXPECT_EQ(db->kind, Kind::db);
  EXPECT_EQ(db->label, "my_archive");
  EXPECT_EQ(db->timestamp, "20260226_031500");
  EXPECT_EQ(db->suffix, ".dump");
  EXPECT_FALSE(db->encrypted);

  auto zst = parse_backup_filename("archive_archive_20260226_031500.dump.zst.age");
  ASSERT_TRUE(zst);
  EXPECT_EQ(zst->suffix, ".dump.zst");
  EXPECT_TRUE(zst->encrypted);

  auto sql = parse_backup_filename("archive_archive_20260226_031500.sql.gz");
  ASSERT_TRUE(sql);
  EXPECT_EQ(sql->suffix, ".sql.gz");

  auto objects = parse_backup_filename("objects_minio_20260226_031500.tar.gz");
  ASSERT_TRUE(objects);
  EXPECT_EQ(objects->kind, Kind::objects);
  EXPECT_EQ(objects->label, "minio");

  auto config = parse_backup_filename("config_20260226_031500.tar.gz");
  ASSERT_TRUE(config);
  EXPECT_EQ(config->kind, Kind::config);

  auto base = parse_backup_filename("base_7716462788975573621_20260226_031500.tar.zst.age");
  ASSERT_TRUE(base);
  EXPECT_EQ(base->kind, Kind::base);
  EXPECT_EQ(base->label, "7716462788975573621");
  EXPECT_EQ(base->suffix, ".tar.zst");
  EXPECT_TRUE(base->encrypted);
}

TEST(Naming, RejectsWhatIsNotABackup) {
  for (const char* name :
       {"archive_archive_20260226_031500.dump.partial", "archive_archive_20260226_031500.dump.meta",
        "archive_archive_20260226_031500.roles.sql", "archive_20260226_031500.dump",
        "archive_archive_2026022_031500.dump", "objects_s3_20260226_031500.tar.gz",
        "config_20260226_031500.zip", "set_20260226_031500.json", "base_x_20260226_031500.tar.zst",
        "base_1_20260226_031500.tar.gz", "base_123456789012345678901_20260226_031500.tar.zst", ""}) {
    EXPECT_FALSE(parse_backup_filename(name)) << name;
  }
}

TEST(Naming, RolesFileSitsBesideTheDump) {
  EXPECT_EQ(roles_filename("archive_archive_20260226_031500.dump"),
            "archive_archive_20260226_031500.roles.sql");
  EXPECT_EQ(roles_filename("archive_archive_20260226_031500.dump.zst"),
            "archive_archive_20260226_031500.roles.sql");
}

TEST(Naming, SetIdsStartWithTheTimestampAndDiffer) {
  auto t = Clock::now();
  std::string a = new_set_id(t), b = new_set_id(t);
  EXPECT_EQ(a.substr(0, 15), name_timestamp(t));
  EXPECT_EQ(a.size(), 20u);
  // 1 in 65536 chance of a false failure; two more draws make it negligible.
  EXPECT_TRUE(a != b || a != new_set_id(t) || a != new_set_id(t));
}

}  // namespace backupctl
