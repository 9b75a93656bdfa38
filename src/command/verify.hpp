// `backupctl verify`: proves a backup file is what its meta says and that it reads.
//   every kind: size > 0 and equal to the meta, sha256 equal to the meta;
//   db .dump: `pg_restore --list` reads the whole table of contents, then every data block is
//   decoded (each zlib stream inflated and checked, each table's COPY data read); `quick`: the
//   table of contents only;
//   db .dump.zst: one pass hashes the file, decompresses every frame (zstd checksums) and feeds
//   pg_restore --list, then the data blocks are decoded as for .dump;
//   the roles file beside a dump: its own sha256.
// The verdict is recorded in the meta ("verification"), so `list` shows it.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "util/progress.hpp"

namespace backupctl {

struct VerifyVerdict {
  std::filesystem::path file;
  std::string kind;
  bool ok = false;
  std::string detail;  // what was checked, or the first problem found
};

// How far a verify reads: every byte against the meta's sha256 and, for a custom-format dump,
// every data block (full), or the sha256 alone (quick: `verify --quick`).
enum class VerifyDepth { full, quick };

VerifyVerdict verify_backup(const Config& config, const std::filesystem::path& file,
                            Progress& progress, VerifyDepth depth = VerifyDepth::full);

enum class VerifySelection { all, latest };

// The files `verify --all` (every backup) or `--latest` (the newest of each source: each
// database, each attachments store, the config; never one made with a wrong clock) checks.
std::vector<std::filesystem::path> select_backups(const Config& config, VerifySelection which);

}  // namespace backupctl
