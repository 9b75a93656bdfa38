// Database-level operations of a restore: side databases, the rename swap that puts a restored
// database in place in one step (and back again for undo), ending sessions, and the previous
// copies a restore keeps (`<db>__pre_restore_<YYYYMMDD_HHMMSS>`).
// REQUIRES for all: `conn` is connected to a maintenance database, not to the ones named.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "util/time.hpp"

namespace backupctl {

class PgConnection;

bool database_exists(PgConnection& conn, const std::string& name);

// "<db>__pre_restore_<ts>" and "<db>__restore_<ts>"; Error(usage) when longer than PostgreSQL's
// 63-byte identifier limit.
std::string previous_database_name(const std::string& db, const std::string& ts);
std::string side_database_name(const std::string& db, const std::string& ts);

// A timestamp for "<db>__pre_restore_<ts>" and "<db>__restore_<ts>" that no database has yet: two
// restores (or a restore and its undo) in one second would otherwise collide; the second waits for
// the next second, as backup file names do.
std::string unused_restore_timestamp(PgConnection& conn, const std::string& db);

// Ends every session on `db` (other than ours) and waits until they are gone.
void end_sessions(PgConnection& conn, const std::string& db);

// Drops `db`, ending its sessions first. Missing is fine.
void drop_database(PgConnection& conn, const std::string& db);

// Puts `side` in place of `target` in one step: target is renamed to `previous` (if it exists) and
// side to target. New connections to target are refused meanwhile (ALLOW_CONNECTIONS false) and
// its sessions ended; the flag is put back on `previous` afterwards. If the second rename fails,
// the first is undone. Returns whether a target existed.
bool swap_databases(PgConnection& conn, const std::string& side, const std::string& target,
                    const std::string& previous);

struct PreviousDatabase {
  std::string name;
  std::string timestamp;  // YYYYMMDD_HHMMSS from the name
  Clock::time_point time;
};

// The `<db>__pre_restore_*` databases on the server, newest first.
std::vector<PreviousDatabase> previous_databases(PgConnection& conn, const std::string& db);

// Drops the previous copies whose name is older than `keep_days` days. Returns their names.
std::vector<std::string> prune_previous_databases(PgConnection& conn, const std::string& db,
                                                  int keep_days, Clock::time_point now);

}  // namespace backupctl
