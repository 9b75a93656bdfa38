// `backupctl verify --wal`: the WAL kept is checked for what a point-in-time restore needs, like
// `wal-g wal-verify`: from every base backup kept, segment after segment on its timeline, to the
// newest WAL received; each segment read (zstd checksum) and checked against its name and its
// cluster. Gaps are named with the moments they cut out, as are files that were refused
// (.rejected, .conflict) and WAL of timelines no base backup is on.
#pragma once

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <vector>

#include "command/backup_base.hpp"
#include "config/config.hpp"
#include "pg/wal_archive.hpp"

namespace backupctl {

// How far the WAL kept reaches from a base backup: the segments a restore stages, in order, to
// the first gap, and the receiver's unfinished segment when it follows the last one.
struct WalReach {
  std::vector<std::string> segments;
  std::optional<std::string> partial;
  std::string gap;  // the first missing segment, when WAL was kept after it ("" when none)
};
WalReach wal_reach(const WalArchive& archive, const BaseBackup& base);

struct WalVerifyReport {
  bool ok = true;
  nlohmann::json json;
  std::string text;
};

// `read`: each segment is decompressed and its first page checked (the default); otherwise the
// names only.
WalVerifyReport verify_wal(const Config& config, bool read);

}  // namespace backupctl
