#include "snapshot.hpp"

#include <regex>

namespace backupctl::test {

std::string snapshot(const PgCluster& cluster, const std::string& db) {
  std::string out;
  RunResult schema = run_command(
      {.argv = {cluster.tool("pg_dump"), "--schema-only", db}, .env = cluster.env(db)});
  EXPECT_TRUE(schema.status.ok()) << schema.err;
  // pg_dump 15.14+ brackets its output with \restrict KEY / \unrestrict KEY, a random key per run.
  std::string text = std::regex_replace(schema.out, std::regex(R"(\\(un)?restrict \S+)"), "\\$1restrict KEY");
  out += "== schema\n" + text;

  out += "== tables\n";
  std::string tables = cluster.psql(
      db,
      "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON "
      "n.oid = c.relnamespace WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN "
      "('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1");
  std::size_t pos = 0;
  while (pos < tables.size()) {
    std::size_t nl = tables.find('\n', pos);
    std::string table = tables.substr(pos, nl - pos);
    pos = nl == std::string::npos ? tables.size() : nl + 1;
    if (table.empty()) continue;
    out += table + " " +
           cluster.psql(db, "SELECT count(*) || ' ' || coalesce(md5(string_agg(t::text, E'\\n' "
                            "ORDER BY t::text)), '-') FROM " + table + " t");
  }
  out += "== large objects\n" +
         cluster.psql(db, "SELECT oid, lomowner::regrole, md5(lo_get(oid)) FROM "
                          "pg_largeobject_metadata ORDER BY oid");
  out += "== sequences\n" +
         cluster.psql(db, "SELECT schemaname, sequencename, last_value FROM pg_sequences ORDER BY 1, 2");
  out += "== database\n" +
         cluster.psql(db,
                      "SELECT datdba::regrole, pg_encoding_to_char(encoding), datcollate, "
                      "datctype, (SELECT array_agg(a::text ORDER BY a::text) FROM unnest(datacl) a), "
                      "shobj_description(oid, 'pg_database') FROM pg_database "
                      "WHERE datname = current_database()");
  out += cluster.psql(db,
                      "SELECT coalesce(nullif(setrole, 0)::regrole::text, '*'), setconfig FROM "
                      "pg_db_role_setting WHERE setdatabase = (SELECT oid FROM pg_database WHERE "
                      "datname = current_database()) ORDER BY 1");
  return out;
}

void create_rich_database(const PgCluster& cluster) {
  cluster.psql("postgres",
               "CREATE ROLE archive_owner LOGIN; CREATE ROLE archive_reader NOLOGIN");
  cluster.psql("postgres",
               "CREATE DATABASE rich OWNER archive_owner TEMPLATE template0 ENCODING 'UTF8' "
               "LC_COLLATE 'C' LC_CTYPE 'C.UTF-8'");
  cluster.psql_file("rich", sql_file("rich_db.sql"));
}

}  // namespace backupctl::test
