#include "pg/connection.hpp"

#include <memory>

#include "util/error.hpp"
#include "util/process.hpp"

namespace backupctl {
namespace {

struct ResultDeleter {
  void operator()(PGresult* r) const { PQclear(r); }
};
using Result = std::unique_ptr<PGresult, ResultDeleter>;

std::string endpoint(const PgTarget& target) {
  std::string host, port, user;
  for (const auto& [k, v] : target.params()) {
    if (k == "host" || k == "hostaddr") host = v;
    if (k == "port") port = v;
    if (k == "user") user = v;
  }
  PQconninfoOption* defaults = PQconndefaults();
  if (defaults) {
    for (PQconninfoOption* o = defaults; o->keyword; ++o) {
      if (!o->val) continue;
      std::string k = o->keyword;
      if (k == "host" && host.empty()) host = o->val;
      if (k == "port" && port.empty()) port = o->val;
      if (k == "user" && user.empty()) user = o->val;
    }
    PQconninfoFree(defaults);
  }
  if (host.empty()) host = "local socket";
  return user + "@" + host + ":" + port + "/" + target.dbname();
}

[[noreturn]] void throw_connect_error(PGconn* conn, const PgTarget& target) {
  std::string msg = PQerrorMessage(conn);
  bool needs_password = PQconnectionNeedsPassword(conn) != 0;
  std::string where = endpoint(target);
  std::string line = first_line(msg);
  // libpq prefixes with "connection to server at ... failed: "; keep the server's own words.
  if (auto p = line.find("failed: "); p != std::string::npos) line = line.substr(p + 8);
  if (msg.find("does not exist") != std::string::npos && msg.find("database") != std::string::npos) {
    throw Error(ErrorCode::not_found, "database \"" + target.dbname() + "\" does not exist on " + where,
                "check PGDATABASE (or the database in DATABASE_URL); `psql -l` lists the databases");
  }
  if (needs_password || msg.find("authentication failed") != std::string::npos ||
      msg.find("no password supplied") != std::string::npos ||
      msg.find("pg_hba.conf") != std::string::npos) {
    throw Error(ErrorCode::connection, "authentication failed for " + where + ": " + line,
                "check PGUSER and PGPASSWORD (or DATABASE_URL, ~/.pgpass) and the server's "
                "pg_hba.conf");
  }
  throw Error(ErrorCode::connection, "cannot connect to PostgreSQL at " + where + ": " + line,
              "is the server running and reachable? check PGHOST and PGPORT (or DATABASE_URL)");
}

}  // namespace

PgConnection PgConnection::open(const PgTarget& target, Session session) {
  std::vector<const char*> keys, values;
  bool has_timeout = false, has_keepalive = false;
  for (const auto& [k, v] : target.params()) {
    keys.push_back(k.c_str());
    values.push_back(v.c_str());
    has_timeout = has_timeout || k == "connect_timeout";
    has_keepalive = has_keepalive || k.starts_with("keepalives") || k == "tcp_user_timeout";
  }
  keys.push_back("dbname");
  values.push_back(target.dbname().c_str());
  keys.push_back("fallback_application_name");
  values.push_back("backupctl");
  if (!has_timeout && !std::getenv("PGCONNECT_TIMEOUT")) {
    keys.push_back("connect_timeout");
    values.push_back("10");
  }
  if (session == Session::replication) {
    keys.push_back("replication");
    values.push_back("true");
    if (!has_keepalive) {
      // The receiver's stream is silent while the server is idle (it hears from us, so it sends no
      // keepalives): a server or network that went away without a word is found by TCP within a
      // minute, and the receiver connects again, instead of waiting for hours.
      static const char* const kKeepalive[][2] = {
          {"keepalives_idle", "30"}, {"keepalives_interval", "10"}, {"keepalives_count", "3"}, {"tcp_user_timeout", "60000"}};
      for (const auto& [k, v] : kKeepalive) {
        keys.push_back(k);
        values.push_back(v);
      }
    }
  }
  keys.push_back(nullptr);
  values.push_back(nullptr);
  PGconn* conn = PQconnectdbParams(keys.data(), values.data(), 0);
  if (conn == nullptr) throw Error(ErrorCode::internal, "libpq: out of memory");
  if (PQstatus(conn) != CONNECTION_OK) {
    std::unique_ptr<PGconn, decltype(&PQfinish)> guard(conn, PQfinish);
    throw_connect_error(conn, target);
  }
  return PgConnection(conn);
}

PgConnection::PgConnection(PgConnection&& other) noexcept : m_conn(other.m_conn) {
  other.m_conn = nullptr;
}

PgConnection::~PgConnection() {
  if (m_conn) PQfinish(m_conn);
}

void PgConnection::exec(std::string_view sql) {
  Result r(PQexec(m_conn, std::string(sql).c_str()));
  auto status = PQresultStatus(r.get());
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
    throw Error(ErrorCode::tool_failed, "query failed on " + describe() + ": " +
                                            first_line(PQresultErrorMessage(r.get())));
  }
}

PgRows PgConnection::query(std::string_view sql, const std::vector<std::string>& params) {
  std::vector<const char*> values;
  for (const auto& p : params) values.push_back(p.c_str());
  Result r(PQexecParams(m_conn, std::string(sql).c_str(), static_cast<int>(values.size()), nullptr,
                        values.data(), nullptr, nullptr, 0));
  auto status = PQresultStatus(r.get());
  if (status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK) {
    throw Error(ErrorCode::tool_failed, "query failed on " + describe() + ": " +
                                            first_line(PQresultErrorMessage(r.get())));
  }
  PgRows rows;
  int n = PQntuples(r.get()), cols = PQnfields(r.get());
  rows.reserve(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    auto& row = rows.emplace_back();
    for (int c = 0; c < cols; ++c) {
      if (PQgetisnull(r.get(), i, c)) {
        row.emplace_back(std::nullopt);
      } else {
        row.emplace_back(std::string(PQgetvalue(r.get(), i, c),
                                     static_cast<std::size_t>(PQgetlength(r.get(), i, c))));
      }
    }
  }
  return rows;
}

SystemIdentity PgConnection::identify_system() {
  Result r(PQexec(m_conn, "IDENTIFY_SYSTEM"));
  if (PQresultStatus(r.get()) != PGRES_TUPLES_OK || PQntuples(r.get()) != 1 || PQnfields(r.get()) < 3) {
    throw Error(ErrorCode::connection,
                "IDENTIFY_SYSTEM failed on " + describe() + ": " + first_line(PQresultErrorMessage(r.get())),
                "the role needs REPLICATION and pg_hba.conf a `host replication` line (`backupctl wal check`)");
  }
  SystemIdentity id;
  try {
    id.system_identifier = std::stoull(PQgetvalue(r.get(), 0, 0));
    id.timeline = static_cast<std::uint32_t>(std::stoul(PQgetvalue(r.get(), 0, 1)));
  } catch (const std::exception&) {
    throw Error(ErrorCode::tool_failed, "IDENTIFY_SYSTEM answered something unreadable on " + describe());
  }
  id.wal_position = PQgetvalue(r.get(), 0, 2);
  return id;
}

std::string PgConnection::scalar(std::string_view sql, const std::vector<std::string>& params) {
  PgRows rows = query(sql, params);
  if (rows.empty() || rows[0].empty()) {
    throw Error(ErrorCode::internal, "query returned no rows: " + std::string(sql));
  }
  return rows[0][0].value_or("");
}

int PgConnection::server_version_num() const { return PQserverVersion(m_conn); }

std::string PgConnection::server_version() const {
  const char* v = PQparameterStatus(m_conn, "server_version");
  std::string s = v ? v : "";
  // "15.18 (Debian 15.18-0+deb12u1)" -> "15.18"
  if (auto sp = s.find(' '); sp != std::string::npos) s = s.substr(0, sp);
  return s;
}

std::string PgConnection::describe() const {
  std::string host = PQhost(m_conn) ? PQhost(m_conn) : "";
  return std::string(PQuser(m_conn)) + "@" + host + ":" + PQport(m_conn) + "/" + PQdb(m_conn);
}

std::string PgConnection::dbname() const { return PQdb(m_conn); }

PgTarget maintenance_target(const PgTarget& target) {
  for (const char* db : {"postgres", "template1"}) {
    PgTarget t = target.with_database(db);
    try {
      PgConnection::open(t);
      return t;
    } catch (const Error& e) {
      if (e.code() != ErrorCode::not_found) throw;
    }
  }
  throw Error(ErrorCode::not_found, "neither database \"postgres\" nor \"template1\" accepts connections",
              "a restore needs a maintenance database to create and rename databases from");
}

std::string quote_ident(std::string_view name) {
  std::string out = "\"";
  for (char c : name) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

std::string quote_literal(std::string_view text) {
  std::string out = "'";
  for (char c : text) {
    if (c == '\'') out += '\'';
    out += c;
  }
  return out + "'";
}

}  // namespace backupctl
