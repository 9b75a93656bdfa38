// Database-level operations of a restore: side databases, the rename swap that puts a restored
// database in place in one step (and back again for undo), ending sessions, and the previous
// copies a restore keeps (`<db>__pre_restore_<YYYYMMDD_HHMMSS>`).
// REQUIRES for all: `conn` is connected to a maintenance database, not to the ones named.
#pragma once

#include <chrono>
#include <functional>
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

// Puts `side` in place of `target` in one transaction: `target` is renamed to `previous` (when it
// exists) and `side` to `target`, committed together, so no session ever finds no database under
// the live name and a crash at any moment leaves either the old or the new one there. Before the
// transaction, new connections to `target` are refused (ALLOW_CONNECTIONS false, committed: it
// must hold while its sessions are ended) and its sessions ended; `on_lockout(allowed)` is told
// the flag's value first, for the journal. The transaction gives `previous` its flag back; if it
// fails, `target` gets it back. Returns whether a target existed.
// REQUIRES: nobody is connected to `side`.
bool swap_databases(PgConnection& conn, const std::string& side, const std::string& target,
                    const std::string& previous,
                    const std::function<void(bool allowed)>& on_lockout = nullptr);

// After a swap that may have been cut short (the process died, the connection broke): makes the
// live name hold a whole database that accepts connections. The transaction committed when `side`
// is gone and `previous` exists (the restored database is live); otherwise it did not (the old one
// is, with its ALLOW_CONNECTIONS flag put back to `live_allowed`). A live name left empty by
// renames made outside one transaction gets `previous` back. Returns what it found, for the
// operator ("the swap had committed: ...").
std::string settle_swap(PgConnection& conn, const std::string& live, const std::string& side,
                        const std::string& previous, bool live_allowed);

// settle_swap's judgement, from which of the three names exist on the server.
enum class SwapFound {
  live_name_empty,  // only `previous` holds the live database (renames made one at a time): rename it back
  committed,        // the restored database is live (`side` is gone)
  not_committed,    // the database from before the restore is live (`side` still there)
  none,             // there was no live database before the restore, and there is none
};
SwapFound judge_swap(bool has_live, bool has_side, bool has_previous);

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
