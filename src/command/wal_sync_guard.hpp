// WAL_SYNCHRONOUS=yes: commits on the primary wait until the receiver has fsynced them (RPO 0),
// and a receiver that is gone or stuck never holds them for long.
//
// PostgreSQL waits for a synchronous standby for ever: a receiver named in
// synchronous_standby_names that dies blocks every commit until someone changes the setting. So
// the setting is owned by a guard, a process of its own beside the receiver (`wal sync-guard`,
// started by `wal stream`; a kill -9 of the receiver leaves it running):
//   - it names the receiver in synchronous_standby_names (ALTER SYSTEM, reload) once the receiver
//     streams caught up (pg_stat_replication.state = 'streaming'; after a fallback for a stuck
//     receiver, once its flush position moved again);
//   - it clears the setting at once when the receiver's stream is gone, when commits have waited
//     for it kFallbackAfter while its flush position stood still (a stuck disk, a network gone
//     quiet: the server would notice only at wal_sender_timeout), when the receiver that started
//     it ended (its stdin, a pipe, reads end-of-file), and when it is told to stop (SIGTERM,
//     SIGINT, SIGHUP);
//   - it sets and clears only its own value: an operator's synchronous standbys are refused by
//     `wal stream`, never overwritten.
// What is left: a guard and a receiver both killed with SIGKILL while the setting is on (a kill
// of the whole process group, a host that lost power while the primary runs elsewhere). Commits
// then wait until the next `wal stream` starts its guard, which clears it within a second;
// `backupctl status` fails and says so meanwhile (wal_status.cpp).
#pragma once

#include <chrono>
#include <optional>
#include <string>

#include "config/config.hpp"
#include "pg/target.hpp"
#include "util/process.hpp"

namespace backupctl {

class PgConnection;

inline constexpr std::chrono::seconds kFallbackAfter{5};

// synchronous_standby_names as the guard sets it for `application_name`: the name quoted.
std::string sync_standby_value(const std::string& application_name);
// Whether `setting` is a value a guard sets for this receiver (its application_name: backupctl's
// default, PGAPPNAME, or the slot's name), when no stream says which.
bool names_the_receiver(const std::string& setting, const std::string& slot);

// Why WAL_SYNCHRONOUS=yes cannot work on this server ("" when it can): another value of
// synchronous_standby_names (an operator's standbys), or a role that may not ALTER SYSTEM it.
std::string sync_refusal(PgConnection& conn, const std::string& slot);

// `backupctl wal sync-guard`: the guard's loop (above). Returns 0 once the setting is cleared.
int wal_sync_guard(const Config& config, const PgTarget& target);

// The guard as the receiver runs it: started with a pipe on its stdin, started again when it
// ended, stopped (SIGTERM, then waited for: it clears the setting) before the receiver stops.
class SyncGuard {
 public:
  SyncGuard() { start(); }
  ~SyncGuard() { stop(); }
  SyncGuard(const SyncGuard&) = delete;
  SyncGuard& operator=(const SyncGuard&) = delete;

  void round();  // every second: started again when it ended
  void stop();

 private:
  void start();
  std::optional<Child> m_child;
};

}  // namespace backupctl
