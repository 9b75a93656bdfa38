#include "pg/swap.hpp"

#include <spdlog/spdlog.h>

#include <thread>

#include "pg/connection.hpp"
#include "util/error.hpp"
#include "util/fault.hpp"
#include "util/signals.hpp"

namespace backupctl {

bool database_exists(PgConnection& conn, const std::string& name) {
  return !conn.query("SELECT 1 FROM pg_database WHERE datname = $1", {name}).empty();
}

namespace {

std::string checked_name(std::string name, const std::string& db) {
  if (name.size() > 63) {
    throw Error(ErrorCode::usage,
                "the database name \"" + db + "\" is too long for a restore's helper databases",
                "helper names add ~30 characters to it and PostgreSQL allows 63; restore with "
                "--in-place");
  }
  return name;
}

}  // namespace

std::string previous_database_name(const std::string& db, const std::string& ts) {
  return checked_name(db + "__pre_restore_" + ts, db);
}

std::string side_database_name(const std::string& db, const std::string& ts) {
  return checked_name(db + "__restore_" + ts, db);
}

std::string unused_restore_timestamp(PgConnection& conn, const std::string& db) {
  for (int attempt = 0; attempt < 50; ++attempt) {
    std::string ts = name_timestamp(Clock::now());
    if (!database_exists(conn, previous_database_name(db, ts)) && !database_exists(conn, side_database_name(db, ts))) {
      return ts;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  throw Error(ErrorCode::io, "no free name for the helper databases of " + db + " (" + db + "__pre_restore_<now> exists)",
              "is the clock right? drop the " + db + "__pre_restore_* databases dated in the future");
}

void end_sessions(PgConnection& conn, const std::string& db) {
  for (int attempt = 0; attempt < 100; ++attempt) {
    auto rows = conn.query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> "
        "pg_backend_pid()",
        {db});
    if (rows.empty()) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  throw Error(ErrorCode::tool_failed, "sessions on \"" + db + "\" do not end",
              "something reconnects at once; stop it (SERVICE_CONTROL) and run again");
}

void drop_database(PgConnection& conn, const std::string& db) {
  if (!database_exists(conn, db)) return;
  conn.exec("ALTER DATABASE " + quote_ident(db) + " ALLOW_CONNECTIONS false");
  end_sessions(conn, db);
  conn.exec("DROP DATABASE IF EXISTS " + quote_ident(db));
}

bool swap_databases(PgConnection& conn, const std::string& side, const std::string& target,
                    const std::string& previous, const std::function<void(bool)>& on_lockout) {
  if (!database_exists(conn, target)) {
    if (on_lockout) on_lockout(true);
    fault_point("swap.before-commit");
    conn.exec("ALTER DATABASE " + quote_ident(side) + " RENAME TO " + quote_ident(target));
    return false;
  }
  const bool allowed = conn.scalar("SELECT datallowconn FROM pg_database WHERE datname = $1", {target}) == "t";
  if (on_lockout) on_lockout(allowed);
  conn.exec("ALTER DATABASE " + quote_ident(target) + " ALLOW_CONNECTIONS false");
  try {
    // A session may slip in between ending them and the rename (one that was half-way through
    // connecting): the transaction then fails as a whole; try a few times.
    for (int attempt = 0;; ++attempt) {
      end_sessions(conn, target);
      try {
        conn.exec("BEGIN");
        conn.exec("ALTER DATABASE " + quote_ident(target) + " RENAME TO " + quote_ident(previous));
        conn.exec("ALTER DATABASE " + quote_ident(side) + " RENAME TO " + quote_ident(target));
        if (allowed) conn.exec("ALTER DATABASE " + quote_ident(previous) + " ALLOW_CONNECTIONS true");
        fault_point("swap.before-commit");
        conn.exec("COMMIT");
        return true;
      } catch (const Error& e) {
        try {
          conn.exec("ROLLBACK");
        } catch (const Error&) {
          // The connection is gone: the server rolled the transaction back itself.
        }
        if (attempt >= 20 || std::string(e.what()).find("being accessed") == std::string::npos) throw;
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    }
  } catch (...) {
    InterruptShield shield;
    try {
      if (allowed) conn.exec("ALTER DATABASE " + quote_ident(target) + " ALLOW_CONNECTIONS true");
    } catch (const Error& e) {
      spdlog::error("restore: cannot let connections into {} again: {}", target, e.what());
    }
    throw;
  }
}

SwapFound judge_swap(bool has_live, bool has_side, bool has_previous) {
  if (!has_live && has_previous) return SwapFound::live_name_empty;
  if (has_live && !has_side) return SwapFound::committed;
  if (has_live) return SwapFound::not_committed;
  return SwapFound::none;
}

std::string settle_swap(PgConnection& conn, const std::string& live, const std::string& side,
                        const std::string& previous, bool live_allowed) {
  auto allows = [&](const std::string& db) {
    return conn.scalar("SELECT datallowconn FROM pg_database WHERE datname = $1", {db}) == "t";
  };
  bool has_live = database_exists(conn, live);
  const bool has_side = database_exists(conn, side);
  bool has_previous = !previous.empty() && database_exists(conn, previous);
  std::string found;
  switch (judge_swap(has_live, has_side, has_previous)) {
    case SwapFound::live_name_empty:
      // Only renames made one at a time (an older backupctl, or by hand) leave this: the live
      // name empty and the database it held under `previous`. Put it back.
      end_sessions(conn, previous);
      conn.exec("ALTER DATABASE " + quote_ident(previous) + " RENAME TO " + quote_ident(live));
      has_live = true;
      has_previous = false;
      found = "the live name was empty: " + previous + " was renamed back to " + live;
      break;
    case SwapFound::committed:
      found = "the swap had committed: " + live + " is the restored database" +
              (has_previous ? ", " + previous + " the one before" : "");
      break;
    case SwapFound::not_committed:
      found = "the swap had not committed: " + live + " is the database from before the restore";
      break;
    case SwapFound::none:
      found = "there was no " + live + " before the restore, and there is none";
      break;
  }
  if (has_live && live_allowed && !allows(live)) {
    conn.exec("ALTER DATABASE " + quote_ident(live) + " ALLOW_CONNECTIONS true");
    found += "; it accepts connections again";
  }
  if (has_previous && live_allowed && !allows(previous)) {
    conn.exec("ALTER DATABASE " + quote_ident(previous) + " ALLOW_CONNECTIONS true");
  }
  return found;
}

std::vector<PreviousDatabase> previous_databases(PgConnection& conn, const std::string& db) {
  std::string prefix = db + "__pre_restore_";
  std::vector<PreviousDatabase> out;
  for (const auto& row : conn.query(
           "SELECT datname FROM pg_database WHERE left(datname, length($1)) = $1 ORDER BY datname DESC",
           {prefix})) {
    std::string name = *row[0];
    std::string ts = name.substr(prefix.size());
    auto t = parse_name_timestamp(ts);
    if (!t) continue;
    out.push_back({name, ts, *t});
  }
  return out;
}

std::vector<std::string> prune_previous_databases(PgConnection& conn, const std::string& db,
                                                  int keep_days, Clock::time_point now) {
  std::vector<std::string> dropped;
  auto cutoff = now - std::chrono::hours(24) * keep_days;
  for (const PreviousDatabase& p : previous_databases(conn, db)) {
    if (p.time >= cutoff) continue;
    spdlog::info("restore: dropping {} (older than RESTORE_KEEP_PREVIOUS_DAYS={})", p.name, keep_days);
    drop_database(conn, p.name);
    dropped.push_back(p.name);
  }
  return dropped;
}

}  // namespace backupctl
