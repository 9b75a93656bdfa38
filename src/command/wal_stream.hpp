// Continuous protection, the receiving side: `backupctl wal check` (what the server must allow)
// and `backupctl wal stream` (the long-running receiver).
//
// The receiver is PostgreSQL's own pg_receivewal (--synchronous: the unfinished segment is
// fsynced as each piece arrives, so a commit is durable in BACKUP_DIR within a second), fed by a
// physical replication slot so the server keeps what was not received yet, and restarted with
// backoff when the server goes away. We chose it over a replication client of our own: it is the
// stock tool every PostgreSQL installation has, it follows timeline switches, and a file it writes
// is exactly PostgreSQL's. backupctl does the rest: each finished segment is checked against its
// name and the cluster (pg/wal_archive.hpp), compressed, fsynced and recorded.
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
