#include <gtest/gtest.h>

#include "io/pipeline.hpp"
#include "io/zstd.hpp"
#include "pg/dump_file.hpp"
#include "pg/dump_parser.hpp"
#include "pg/roles.hpp"
#include "util/error.hpp"
#include "util/words.hpp"

namespace backupctl {

TEST(Roles, OnlyMissingRolesAreCreatedWithTheirAttributesAndMemberships) {
  const std::string roles =
      "--\n-- PostgreSQL database cluster dump\n--\n\n\\restrict abc\n\n"
      "SET default_transaction_read_only = off;\n\n"
      "CREATE ROLE archive_owner;\n"
      "ALTER ROLE archive_owner WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB LOGIN NOREPLICATION NOBYPASSRLS;\n"
      "CREATE ROLE \"Odd \"\"Role\";\n"
      "ALTER ROLE \"Odd \"\"Role\" WITH NOLOGIN;\n"
      "CREATE ROLE postgres;\n"
      "ALTER ROLE postgres WITH SUPERUSER INHERIT CREATEROLE CREATEDB LOGIN REPLICATION BYPASSRLS;\n"
      "COMMENT ON ROLE archive_owner IS 'owns the\narchive; really';\n"
      "ALTER ROLE archive_owner SET work_mem TO '8MB';\n"
      "GRANT \"Odd \"\"Role\" TO archive_owner GRANTED BY postgres;\n"
      "GRANT pg_read_all_data TO postgres GRANTED BY postgres;\n"
      "\\unrestrict abc\n";
  RolesScript s = missing_roles_script(roles, {"postgres", "pg_read_all_data"});
  EXPECT_EQ(s.created, (std::vector<std::string>{"archive_owner", "Odd \"Role"}));
  EXPECT_EQ(s.statements,
            (std::vector<std::string>{
                "CREATE ROLE archive_owner;",
                "CREATE ROLE \"Odd \"\"Role\";",
                "ALTER ROLE archive_owner WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB LOGIN NOREPLICATION NOBYPASSRLS;",
                "ALTER ROLE \"Odd \"\"Role\" WITH NOLOGIN;",
                "COMMENT ON ROLE archive_owner IS 'owns the\narchive; really';",
                "ALTER ROLE archive_owner SET work_mem TO '8MB';",
                "GRANT \"Odd \"\"Role\" TO archive_owner;",
            }));
  EXPECT_TRUE(missing_roles_script(roles, {"postgres", "archive_owner", "Odd \"Role"}).statements.empty());
}

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

TEST(Words, SplitsLikeAShellWithoutRunningOne) {
  EXPECT_EQ(split_words("systemctl stop 'archive api' \"a \\\"b\\\"\" c\\ d $HOME", "X"),
            (std::vector<std::string>{"systemctl", "stop", "archive api", "a \"b\"", "c d", "$HOME"}));
  EXPECT_THROW(split_words("echo 'open", "SERVICE_STOP_CMD"), Error);
  EXPECT_THROW(split_words("   ", "SERVICE_STOP_CMD"), Error);
}

TEST(ZstdSource, PullsWhatWasPushed) {
  std::string data;
  for (int i = 0; i < 200000; ++i) data += std::to_string(i) + "\n";
  io::StringSink compressed;
  {
    io::ZstdCompressSink z(compressed, 3, 1);
    z.write(std::span<const char>(data.data(), data.size()));
    z.finish();
  }
  class StrSource : public io::Source {
   public:
    explicit StrSource(std::string s) : m_s(std::move(s)) {}
    std::size_t read(std::span<char> buf) override {
      std::size_t n = std::min<std::size_t>({buf.size(), m_s.size() - m_pos, 777});
      std::copy_n(m_s.data() + m_pos, n, buf.data());
      m_pos += n;
      return n;
    }
    std::string m_s;
    std::size_t m_pos = 0;
  };
  StrSource src(compressed.data());
  io::ZstdSource unz(src);
  io::StringSink out;
  io::copy(unz, out);
  EXPECT_EQ(out.data(), data);

  StrSource cut(compressed.data().substr(0, compressed.data().size() / 2));
  io::ZstdSource unz2(cut);
  io::NullSink null;
  EXPECT_THROW(io::copy(unz2, null), Error);
}

// A signal (or a file that does not decrypt) while the archive's first bytes are read is that
// error, not "no PGDMP header": a restore hung up at its load exits 129, not "malformed".
TEST(CustomArchive, TheSourcesErrorIsNotANoHeader) {
  struct Interrupted : io::Source {
    std::size_t read(std::span<char>) override {
      throw Error(ErrorCode::interrupted, "interrupted by SIGHUP");
    }
  } interrupted;
  try {
    (void)read_dump_header(interrupted);
    FAIL() << "the header reader swallowed the interruption";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::interrupted) << e.what();
  }
  io::StringSink sink;
  DumpInflater inflater(sink);
  try {
    inflater.run(interrupted);
    FAIL() << "the inflater swallowed the interruption";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::interrupted) << e.what();
  }
  // Shorter than the magic: not an archive, still.
  struct Short : io::Source {
    bool done = false;
    std::size_t read(std::span<char> buf) override {
      if (std::exchange(done, true)) return 0;
      buf[0] = 'P';
      return 1;
    }
  } short_file;
  EXPECT_FALSE(read_dump_header(short_file).has_value());
}

}  // namespace backupctl
