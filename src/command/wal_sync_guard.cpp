#include "command/wal_sync_guard.hpp"

#include <poll.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <unistd.h>


#include "pg/connection.hpp"
#include "util/error.hpp"
#include "util/fs.hpp"
#include "util/signals.hpp"

namespace backupctl {

namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;

// Whether the receiver that started this guard ended: its end of the stdin pipe closed.
bool parent_gone() {
  struct pollfd p{STDIN_FILENO, POLLIN, 0};
  if (::poll(&p, 1, 0) <= 0) return false;
  char c;
  return ::read(STDIN_FILENO, &c, 1) <= 0;
}

// The receiver's stream as the server sees it: the walsender holding the slot.
struct Stream {
  std::optional<std::string> application_name;  // none: no stream on the slot
  bool caught_up = false;                        // state 'streaming'
  std::string flush_lsn;
  std::string setting;  // synchronous_standby_names now
  bool waiting = false;  // a commit waits for a synchronous standby
};

Stream look(PgConnection& conn, const std::string& slot) {
  PgRows rows = conn.query(
      "SELECT r.application_name, r.state = 'streaming', coalesce(r.flush_lsn::text, ''), "
      "current_setting('synchronous_standby_names'), "
      "EXISTS (SELECT 1 FROM pg_stat_activity WHERE wait_event = 'SyncRep') "
      "FROM (SELECT 1) one LEFT JOIN pg_replication_slots s ON s.slot_name = $1 "
      "LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid",
      {slot});
  Stream s;
  if (rows.empty()) return s;
  const auto& row = rows[0];
  s.application_name = row[0];
  s.caught_up = row[1].value_or("") == "t";
  s.flush_lsn = row[2].value_or("");
  s.setting = row[3].value_or("");
  s.waiting = row[4].value_or("") == "t";
  return s;
}

void set_standby(PgConnection& conn, const std::string& value) {
  if (value.empty()) {
    conn.exec("ALTER SYSTEM RESET synchronous_standby_names");
  } else {
    conn.exec(conn.scalar("SELECT format('ALTER SYSTEM SET synchronous_standby_names = %L', $1::text)", {value}));
  }
  conn.scalar("SELECT pg_reload_conf()");
}

}  // namespace

std::string sync_standby_value(const std::string& application_name) {
  std::string out = "\"";
  for (char c : application_name) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

bool names_the_receiver(const std::string& setting, const std::string& slot) {
  if (setting.empty()) return false;
  const char* app = std::getenv("PGAPPNAME");
  return setting == sync_standby_value("backupctl") || setting == sync_standby_value(slot) ||
         (app && *app && setting == sync_standby_value(app));
}

std::string sync_refusal(PgConnection& conn, const std::string& slot) {
  const std::string now = conn.scalar("SELECT current_setting('synchronous_standby_names')");
  // A value this guard set (for whatever application name the receiver had) is its own.
  const Stream s = look(conn, slot);
  const bool ours = now.empty() || (s.application_name && now == sync_standby_value(*s.application_name)) ||
                    names_the_receiver(now, slot);
  if (!ours) {
    return "synchronous_standby_names is '" + now +
           "' (standbys of the operator's): WAL_SYNCHRONOUS=yes would replace it; keep the receiver asynchronous "
           "(WAL_SYNCHRONOUS=no) or add it to that list by hand";
  }
  const int version = std::stoi(conn.scalar("SELECT current_setting('server_version_num')"));
  // It changes the setting, and sees the commits that wait (other roles' sessions).
  const std::string may = conn.scalar(
      version >= 150000 ? "SELECT rolsuper OR (has_parameter_privilege(current_user, 'synchronous_standby_names', 'ALTER SYSTEM') "
                          "AND pg_has_role(current_user, 'pg_read_all_stats', 'MEMBER')) FROM pg_roles WHERE rolname = current_user"
                        : "SELECT rolsuper FROM pg_roles WHERE rolname = current_user");
  if (may != "t") {
    const std::string role = conn.scalar("SELECT current_user");
    return "the role " + role + " may not change synchronous_standby_names: GRANT ALTER SYSTEM ON PARAMETER " +
           "synchronous_standby_names TO " + role + "; GRANT pg_read_all_stats TO " + role +
           " (PostgreSQL 15 and later; before, only a superuser may)";
  }
  return "";
}

int wal_sync_guard(const Config& config, const PgTarget& target) {
  std::optional<PgConnection> conn;
  std::string on;  // the value this guard set ("" while the commits do not wait)
  std::string stuck_at;
  Clock::time_point stuck_since{};
  // Where a stuck receiver's flush stood when the guard gave up waiting for it: its stream still
  // says 'streaming', so only a flush past it says it goes on again.
  std::string gave_up_at;
  auto clear = [&](const std::string& why) {
    if (on.empty() || !conn) return;
    try {
      if (conn->scalar("SELECT current_setting('synchronous_standby_names')") == on) set_standby(*conn, "");
      spdlog::warn("wal: commits no longer wait for the receiver ({})", why);
    } catch (const Error& e) {
      spdlog::error("wal: cannot clear synchronous_standby_names ({}): {}", why, e.what());
      conn.reset();
      return;
    }
    on.clear();
  };
  for (;;) {
    if (parent_gone() || interrupt_pending()) {
      InterruptShield shield;
      if (!conn && !on.empty()) {
        try {
          conn.emplace(PgConnection::open(target));
        } catch (const Error&) {
        }
      }
      clear(interrupt_pending() ? "the receiver is stopping" : "the receiver ended");
      return 0;
    }
    try {
      if (!conn) conn.emplace(PgConnection::open(target));
      const Stream s = look(*conn, config.wal_slot);
      // Set by an earlier guard that was killed: ours to clear.
      if (on.empty() && s.application_name && s.setting == sync_standby_value(*s.application_name)) on = s.setting;
      if (on.empty() && names_the_receiver(s.setting, config.wal_slot)) on = s.setting;
      if (!on.empty() && s.setting != on) {
        // Changed by someone else (an operator's ALTER SYSTEM): no longer ours to clear. Cleared,
        // it is set again below once the stream is caught up; another value stays.
        spdlog::warn("wal: synchronous_standby_names was changed to '{}' outside the guard", s.setting);
        on.clear();
      }
      if (!on.empty()) {
        if (!s.application_name) {
          clear("its stream is gone");
        } else if (s.waiting && s.flush_lsn == stuck_at) {
          if (Clock::now() - stuck_since >= kFallbackAfter) {
            clear("commits waited " + std::to_string(kFallbackAfter.count()) + " s while it flushed nothing");
            if (on.empty()) gave_up_at = s.flush_lsn;
          }
        } else {
          stuck_at = s.flush_lsn;
          stuck_since = Clock::now();
        }
      } else if (!s.application_name) {
        gave_up_at.clear();  // a new stream starts afresh
      } else if (s.caught_up && s.setting.empty() && s.flush_lsn != gave_up_at) {
        gave_up_at.clear();
        on = sync_standby_value(*s.application_name);
        set_standby(*conn, on);
        stuck_at = s.flush_lsn;
        stuck_since = Clock::now();
        spdlog::info("wal: commits wait for the receiver from now on (synchronous_standby_names = {})", on);
      }
    } catch (const Error& e) {
      if (e.code() == ErrorCode::interrupted) continue;
      spdlog::warn("wal: the synchronous guard cannot reach the server: {}", e.what());
      conn.reset();
    }
    struct pollfd p{interrupt_fd(), POLLIN, 0};
    ::poll(&p, p.fd >= 0 ? 1 : 0, 250);
  }
}

void SyncGuard::start() {
  std::error_code ec;
  const std::string self = fs::canonical("/proc/self/exe", ec).string();
  if (ec) throw Error(ErrorCode::internal, "cannot find this program to start its synchronous guard: " + ec.message());
  // It outlives a receiver killed with SIGKILL: then its stdin ends, and it clears the setting.
  m_child.emplace(Child::spawn(
      {.argv = {self, "wal", "sync-guard"}, .in = Stdio::pipe, .out = Stdio::null, .err = Stdio::inherit, .outlives_us = true}));
}

void SyncGuard::round() {
  if (!m_child) return;
  try {
    if (auto status = m_child->try_wait()) {
      spdlog::error("wal: the synchronous guard ended ({}); starting it again", status->describe());
      m_child.reset();
      start();
    }
  } catch (const Error& e) {
    if (e.code() == ErrorCode::interrupted) throw;
    spdlog::error("wal: cannot start the synchronous guard: {}", e.what());
  }
}

void SyncGuard::stop() {
  if (!m_child) return;
  InterruptShield shield;
  m_child->stdin_pipe().reset();  // end-of-file: it clears the setting and ends
  m_child->wait_for(std::chrono::seconds(10), std::chrono::milliseconds(50));
  m_child.reset();  // SIGTERM, then SIGKILL, if it did not end
}

}  // namespace backupctl
