// `backupctl status [--json]`: per kind, the newest good backup (a meta, and not failed by verify)
// and its age, the last failure, the last verify and rehearsal; with BACKUP_WAL=stream, the WAL
// receiver and the window a restore to a moment can reach. Exits 10 when the newest good backup of
// a kind is older than BACKUP_MAX_AGE_HOURS (or there is none), or the receiver does not run.
#pragma once

#include <nlohmann/json.hpp>

#include <string>

#include "config/config.hpp"
#include "util/time.hpp"

namespace backupctl {

struct StatusReport {
  nlohmann::json json;
  bool stale = false;
  bool wrong_clock = false;  // a backup dated ahead of this host's clock (exit 13)
  std::string wal_text;      // continuous protection's lines (BACKUP_WAL=stream)
  std::string describe() const;
};

StatusReport backup_status(const Config& config, Clock::time_point now);

// A crontab line, or a systemd service and timer, running `backup all` then `verify --latest`
// daily at `time` (HH:MM). Throws Error(usage) for a bad time.
std::string schedule_text(const Config& config, bool systemd, const std::string& time,
                          const std::string& backupctl_path, const std::string& env_file);

}  // namespace backupctl
