#include "pg/identity.hpp"

#include <fmt/format.h>

#include "pg/connection.hpp"
#include "util/error.hpp"
#include "util/json.hpp"

namespace backupctl {

std::string ServerIdentity::describe() const {
  return fmt::format("system {}, port {}", system_identifier, port);
}

ServerIdentity server_identity(PgConnection& conn) {
  auto rows = conn.query("SELECT (SELECT system_identifier::text FROM pg_control_system()), current_setting('port')");
  return {rows.at(0).at(0).value_or(""), rows.at(0).at(1).value_or("")};
}

nlohmann::json server_record(PgConnection& conn) {
  ServerIdentity id = server_identity(conn);
  auto str = [](const char* s) { return std::string(s ? s : ""); };
  return {{"host", str(PQhost(conn.get()))},
          {"port", str(PQport(conn.get()))},
          {"user", str(PQuser(conn.get()))},
          {"system_identifier", id.system_identifier},
          {"server_port", id.port}};
}

PgConnection open_recorded_server(const nlohmann::json& record, const PgTarget& current) {
  PgTarget t = current.with_server(json_string(record, "host"), json_string(record, "port"), json_string(record, "user"));
  PgConnection conn = PgConnection::open(maintenance_target(t));
  ServerIdentity want{json_string(record, "system_identifier"), json_string(record, "server_port")};
  ServerIdentity got = server_identity(conn);
  if (!(got == want)) {
    throw Error(ErrorCode::verification,
                fmt::format("the PostgreSQL server at {} is not the one the interrupted run used ({} now, {} then)",
                            conn.describe(), got.describe(), want.describe()),
                "run `backupctl repair` where that server is reachable as it was");
  }
  return conn;
}

void refuse_live_target(const PgTarget& live, const PgTarget& target, const std::string& what) {
  if (target.dbname() != live.dbname()) return;  // another name is another database on any server
  PgConnection live_conn = PgConnection::open(maintenance_target(live));
  PgConnection target_conn = PgConnection::open(maintenance_target(target));
  ServerIdentity a = server_identity(live_conn), b = server_identity(target_conn);
  if (a == b) {
    throw Error(ErrorCode::usage,
                fmt::format("{} names the live database {} ({}; the same server as DATABASE_URL/PG*, {})", what,
                            target.dbname(), target_conn.describe(), a.describe()),
                "nothing was changed; point it at a database of its own (e.g. " + live.dbname() +
                    "_rehearsal, or another server)");
  }
}

}  // namespace backupctl
