// A libpq connection (RAII) with one-line, hinted errors for the usual failures.
#pragma once

#include <libpq-fe.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "pg/target.hpp"

namespace backupctl {

// Rows of text values; a NULL is nullopt.
using PgRows = std::vector<std::vector<std::optional<std::string>>>;

// A physical replication session (replication=true, as pg_receivewal and pg_basebackup open)
// takes the replication commands (IDENTIFY_SYSTEM, START_REPLICATION, TIMELINE_HISTORY); it needs
// the REPLICATION attribute and a `host replication` line in pg_hba.conf.
enum class Session { normal, replication };

// What IDENTIFY_SYSTEM says about the server.
struct SystemIdentity {
  std::uint64_t system_identifier = 0;
  std::uint32_t timeline = 0;
  std::string wal_position;  // "0/16B3F48"
};

class PgConnection {
 public:
  // Connects; throws Error(connection) when the server is unreachable or refuses the login,
  // Error(not_found) when the database does not exist.
  static PgConnection open(const PgTarget& target, Session session = Session::normal);

  PgConnection(PgConnection&& other) noexcept;
  PgConnection& operator=(PgConnection&&) = delete;
  ~PgConnection();

  // Runs one or more statements; throws Error(tool_failed) with the server's message.
  void exec(std::string_view sql);
  // Runs a query with text parameters $1..$n and returns every row.
  PgRows query(std::string_view sql, const std::vector<std::string>& params = {});
  // The first column of the first row (throws when there is none).
  std::string scalar(std::string_view sql, const std::vector<std::string>& params = {});

  int server_version_num() const;  // 150018
  int server_major() const { return server_version_num() / 10000; }
  std::string server_version() const;  // "15.18"
  // "user@host:port/db" without the password.
  std::string describe() const;
  std::string dbname() const;

  // IDENTIFY_SYSTEM, on a Session::replication connection.
  SystemIdentity identify_system();

  PGconn* get() { return m_conn; }

 private:
  explicit PgConnection(PGconn* conn) : m_conn(conn) {}
  PGconn* m_conn;
};

// Connects to a maintenance database of the target's server ("postgres", else "template1"), for
// work on other databases (create, rename, drop). Its name is target.dbname() of the result's
// target; see maintenance_target().
PgTarget maintenance_target(const PgTarget& target);

// Quotes an identifier for SQL ("my db" -> "\"my db\"").
std::string quote_ident(std::string_view name);
// Quotes a literal for SQL ('it''s').
std::string quote_literal(std::string_view text);

}  // namespace backupctl
