// Which server and database a connection reaches, by what the server says about itself (its
// system identifier and port), never by how the URL spells it: `localhost` and `127.0.0.1`, a
// socket directory, another port through a pooler, extra options all reach the same database.
// Used to refuse a staging target that is the live database, and by the journal to find the
// server of an interrupted run again (and to be sure it is the same one).
#pragma once

#include <nlohmann/json.hpp>

#include <string>

#include "pg/target.hpp"

namespace backupctl {

class PgConnection;

struct ServerIdentity {
  std::string system_identifier;  // pg_control_system(): unique per cluster (initdb)
  std::string port;               // the port the server listens on (its own setting)
  bool operator==(const ServerIdentity&) const = default;
  std::string describe() const;   // "system 7714…, port 5432"
};

ServerIdentity server_identity(PgConnection& conn);

// The journal's record of the server `conn` reached: how libpq reached it (host, port, user;
// never the password) and its identity.
nlohmann::json server_record(PgConnection& conn);

// Connects to a maintenance database of the recorded server, with the password `current` carries
// (DATABASE_URL's) or libpq finds (PGPASSWORD, ~/.pgpass). Throws Error(connection) when it cannot,
// Error(verification) when the server found there is another one than was recorded.
PgConnection open_recorded_server(const nlohmann::json& record, const PgTarget& current);

// Refuses (Error(usage), before anything changes) a target database `target` that is the live one
// (`live`): the same server, by identity, and the same database name. `what` names the setting
// ("STAGING_DATABASE_URL", "--target-db").
void refuse_live_target(const PgTarget& live, const PgTarget& target, const std::string& what);

}  // namespace backupctl
