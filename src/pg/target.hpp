// Which PostgreSQL database to talk to: DATABASE_URL when set, else the standard libpq variables
// (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE, PGSSLMODE, ... and ~/.pgpass). Child programs
// (pg_dump, pg_restore, psql) get the same target through PG* environment variables, so a password
// never appears on a command line.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace backupctl {

class PgTarget {
 public:
  // From DATABASE_URL or the PG* variables; the database defaults to "archive" (the stack's
  // database) when neither names one. Throws Error(usage) on a malformed DATABASE_URL.
  static PgTarget from_environment();
  // From a connection URL (e.g. STAGING_DATABASE_URL); the PG* variables fill what it leaves out.
  static PgTarget from_url(const std::string& url, const std::string& setting = "DATABASE_URL");

  // The same server and credentials, another database.
  PgTarget with_database(std::string dbname) const;

  // Another server (host, port, user as the journal recorded them), with this target's password
  // when it carries one (DATABASE_URL's); libpq finds PGPASSWORD and ~/.pgpass itself.
  PgTarget with_server(const std::string& host, const std::string& port, const std::string& user) const;

  const std::string& dbname() const { return m_dbname; }

  // libpq keyword/value pairs for PQconnectdbParams (the password included, if any).
  const std::vector<std::pair<std::string, std::string>>& params() const { return m_params; }

  // PG* variables for a child process: every connection setting plus PGDATABASE.
  std::vector<std::pair<std::string, std::optional<std::string>>> child_env() const;

 private:
  std::vector<std::pair<std::string, std::string>> m_params;  // from DATABASE_URL
  std::vector<std::pair<std::string, std::string>> m_env;     // the same, as PG* variables
  std::string m_dbname;
};

}  // namespace backupctl
