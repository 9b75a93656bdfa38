#include <gtest/gtest.h>

#include "config/config.hpp"
#include "util/env.hpp"
#include "util/error.hpp"

namespace backupctl {

TEST(EnvFile, ParsesComposeStyleLines) {
  auto vars = parse_env_file(
      "# comment\n"
      "\n"
      "PGHOST=db\n"
      "export PGPORT=5433\n"
      "PGPASSWORD='p#ss word'\n"
      "NOTE=\"line\\nnext \\\"q\\\"\"\n"
      "EMPTY=\n"
      "URL=postgres://u@h/db # trailing comment\n"
      "  SPACED = value  \n",
      "test.env");
  ASSERT_EQ(vars.size(), 7u);
  EXPECT_EQ(vars[0], (std::pair<std::string, std::string>{"PGHOST", "db"}));
  EXPECT_EQ(vars[1].second, "5433");
  EXPECT_EQ(vars[2].second, "p#ss word");
  EXPECT_EQ(vars[3].second, "line\nnext \"q\"");
  EXPECT_EQ(vars[4].second, "");
  EXPECT_EQ(vars[5].second, "postgres://u@h/db");
  EXPECT_EQ(vars[6], (std::pair<std::string, std::string>{"SPACED", "value"}));
}

TEST(EnvFile, MalformedLinesNameFileAndLine) {
  try {
    parse_env_file("A=1\nthis is not an assignment\n", "infra/env");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::usage);
    EXPECT_STREQ(e.what(), "infra/env:2: expected KEY=VALUE");
    EXPECT_FALSE(e.hint().empty());
  }
  EXPECT_THROW(parse_env_file("1A=x\n", "f"), Error);
  EXPECT_THROW(parse_env_file("A='unterminated\n", "f"), Error);
  EXPECT_THROW(parse_env_file("A=\"x\" junk\n", "f"), Error);
}

TEST(Settings, IntegersAreRangeChecked) {
  EXPECT_EQ(parse_int_setting("BACKUP_RETENTION_DAYS", "30", 1, 100), 30);
  EXPECT_EQ(parse_int_setting("BACKUP_RETENTION_DAYS", " 7 ", 1, 100), 7);
  for (const char* bad : {"", "abc", "-1", "0", "101", "3.5", "30d"}) {
    try {
      parse_int_setting("BACKUP_RETENTION_DAYS", bad, 1, 100);
      FAIL() << bad;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::usage);
      EXPECT_NE(std::string(e.what()).find("BACKUP_RETENTION_DAYS"), std::string::npos);
    }
  }
}

TEST(Settings, Booleans) {
  EXPECT_TRUE(parse_bool_setting("X", "YES"));
  EXPECT_TRUE(parse_bool_setting("X", "1"));
  EXPECT_FALSE(parse_bool_setting("X", "off"));
  EXPECT_THROW(parse_bool_setting("X", "maybe"), Error);
}

TEST(DbCompressionSetting, AcceptedForms) {
  EXPECT_EQ(DbCompression::parse("gzip:1").str(), "gzip:1");
  EXPECT_EQ(DbCompression::parse("6").str(), "gzip:6");
  EXPECT_EQ(DbCompression::parse("gzip").str(), "gzip:1");
  EXPECT_EQ(DbCompression::parse("none").str(), "gzip:0");
  EXPECT_EQ(DbCompression::parse("ZSTD").str(), "zstd:3");
  EXPECT_EQ(DbCompression::parse("zstd:19").str(), "zstd:19");
  EXPECT_EQ(DbCompression::parse("zstd").file_suffix(), ".dump.zst");
  EXPECT_EQ(DbCompression::parse("gzip:9").file_suffix(), ".dump");
}

TEST(DbCompressionSetting, RejectsNonsenseWithAHint) {
  for (const char* bad : {"banana", "gzip:10", "zstd:0", "zstd:20", "gzip:", "10", "lz4", "none:1",
                          "1:2", "zstd:x"}) {
    try {
      DbCompression::parse(bad);
      FAIL() << bad;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::usage) << bad;
      EXPECT_NE(e.hint().find("zstd"), std::string::npos);
    }
  }
}

TEST(ConfigFromEnvironment, DefaultsAndOverrides) {
  ::unsetenv("BACKUP_DIR");
  ::setenv("APP_ROOT", "/srv/app", 1);
  ::unsetenv("BACKUP_DB_COMPRESSION");
  Config c = Config::from_environment();
  EXPECT_EQ(c.backup_dir, "/srv/app/infra/data/backup");
  EXPECT_EQ(c.retention_days, 30);
  EXPECT_EQ(c.db_compression.str(), "gzip:1");
  ::setenv("BACKUP_DIR", "/backups/", 1);
  ::setenv("BACKUP_DB_COMPRESSION", "zstd:5", 1);
  c = Config::from_environment();
  EXPECT_EQ(c.backup_dir, "/backups");
  EXPECT_EQ(c.db_compression.str(), "zstd:5");
  ::setenv("PGPORT", "not-a-port", 1);
  EXPECT_THROW(Config::from_environment(), Error);
  ::unsetenv("PGPORT");
  ::unsetenv("APP_ROOT");
  ::unsetenv("BACKUP_DIR");
  ::unsetenv("BACKUP_DB_COMPRESSION");
}

}  // namespace backupctl
