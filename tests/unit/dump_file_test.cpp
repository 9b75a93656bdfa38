// pg/dump_file.hpp: the database-level SQL of a dump, and its DATABASE entry.
#include <gtest/gtest.h>

#include "pg/dump_file.hpp"

namespace backupctl {

TEST(DatabaseSql, RenamesTheDatabaseAndDropsConnects) {
  const std::string sql =
      "CREATE DATABASE archive WITH TEMPLATE = template0 ENCODING = 'UTF8';\n"
      "ALTER DATABASE archive OWNER TO archive_owner;\n"
      "\\connect archive\n"
      "COMMENT ON DATABASE archive IS 'the DATABASE archive is\nthe DATABASE archive ';\n"
      "ALTER DATABASE archive SET search_path TO 'app', 'public';\n"
      "ALTER ROLE reader IN DATABASE archive SET work_mem TO '1MB';\n"
      "GRANT CONNECT ON DATABASE archive TO reader;\n"
      "ALTER DATABASE archive_other SET x TO 1;\n";
  EXPECT_EQ(rename_database_in_sql(sql, "archive", "archive__restore_1"),
            "CREATE DATABASE \"archive__restore_1\" WITH TEMPLATE = template0 ENCODING = 'UTF8';\n"
            "ALTER DATABASE \"archive__restore_1\" OWNER TO archive_owner;\n"
            "COMMENT ON DATABASE \"archive__restore_1\" IS 'the DATABASE archive is\nthe DATABASE archive ';\n"
            "ALTER DATABASE \"archive__restore_1\" SET search_path TO 'app', 'public';\n"
            "ALTER ROLE reader IN DATABASE \"archive__restore_1\" SET work_mem TO '1MB';\n"
            "GRANT CONNECT ON DATABASE \"archive__restore_1\" TO reader;\n"
            "ALTER DATABASE archive_other SET x TO 1;\n");
  EXPECT_EQ(rename_database_in_sql("ALTER DATABASE \"My DB\" SET a TO 1;\n", "My DB", "x"),
            "ALTER DATABASE \"x\" SET a TO 1;\n");
}

TEST(DatabaseSql, FindsTheDatabaseEntry) {
  auto db = dumped_database(
      ";\n; Archive created at ...\n3339; 1262 16384 DATABASE - my archive postgres\n"
      "3340; 0 0 COMMENT - DATABASE my archive postgres\n");
  ASSERT_TRUE(db);
  EXPECT_EQ(db->name, "my archive");
  EXPECT_EQ(db->owner, "postgres");
  EXPECT_FALSE(dumped_database("; nothing\n"));
}

}  // namespace backupctl
