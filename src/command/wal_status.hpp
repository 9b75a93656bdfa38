// Continuous protection as `status` and the metrics file report it: per cluster in
// BACKUP_DIR/wal, the receiver (whether a `wal stream` holds the folder's lock), the newest WAL,
// the window, a gap after the newest base backup, the slot as the server sees it, and the moment
// before which everything received is off-site.
#pragma once

#include <nlohmann/json.hpp>

#include <string>

#include "config/config.hpp"
#include "util/time.hpp"

namespace backupctl {

// What `status` says of continuous protection (BACKUP_WAL=stream): per cluster in BACKUP_DIR/wal,
// whether a receiver runs (holds the folder's lock), when the newest WAL arrived, and the window a
// restore can reach (from the oldest base backup's end to the newest WAL). `failing` when no
// receiver runs or no base backup is there: the operator must hear of it.
struct WalStatus {
  nlohmann::json json;
  bool failing = false;
  std::string describe() const;
};
WalStatus wal_status(const Config& config, Clock::time_point now);

// The same as Prometheus metrics (per cluster: receiver up, newest WAL, window start, gap, the
// moment the remote has everything before, slot lost and safe_wal_size; backupctl_wal_ok),
// appended to BACKUP_METRICS_FILE by every run and rewritten by the receiver every 15 s.
std::string wal_metrics(const Config& config, Clock::time_point now);

}  // namespace backupctl
