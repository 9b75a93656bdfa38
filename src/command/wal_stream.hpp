// Continuous protection, the receiving side: `backupctl wal check` (what the server must allow)
// and `backupctl wal stream` (the long-running receiver).
//
// The receiver is a replication client of our own (pg/wal_receiver.hpp: files exactly as
// pg_receivewal writes them, fsynced in groups, at most 20 a second, instead of once per message),
// fed by a physical replication slot so the server keeps what was not received yet, and
// connected again with backoff when the server goes away. Each finished segment is checked
// against its name and the cluster (pg/wal_archive.hpp), compressed, fsynced and recorded.
#pragma once

#include <string>
#include <vector>

#include "config/config.hpp"
#include "pg/target.hpp"
#include "util/time.hpp"

namespace backupctl {

struct WalCheckItem {
  std::string name;    // "replication connection", "wal_level", ...
  bool ok = false;
  std::string detail;  // the value, or what to set
};

// Asks the server what continuous protection needs; changes nothing.
std::vector<WalCheckItem> wal_check(const Config& config, const PgTarget& target);

// Runs the receiver until SIGTERM or SIGINT; returns 0 after a clean stop. Throws Error(usage)
// when the server cannot be used safely (an unbounded slot without WAL_ALLOW_UNBOUNDED_SLOT=yes).
int wal_stream(const Config& config, const PgTarget& target);

}  // namespace backupctl
