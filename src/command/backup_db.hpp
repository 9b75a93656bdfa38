// `backupctl backup db`: one pg_dump, streamed once through sha256 and a byte count (and zstd when
// chosen) into db/archive_<db>_<ts>.dump.partial; fsync, rename, directory fsync; then the cluster's
// roles beside it, and only then the .meta.
#pragma once

#include <filesystem>
#include <string>

#include "catalog/meta.hpp"
#include "config/config.hpp"
#include "pg/target.hpp"
#include "util/progress.hpp"

namespace backupctl {

struct BackupResult {
  std::filesystem::path file;  // the finished backup
  Meta meta;                   // as written to <file>.meta
};

struct BackupDbOptions {
  std::string set_id;  // empty: a new set id of its own
};

BackupResult backup_db(const Config& config, const PgTarget& target, Progress& progress,
                       const BackupDbOptions& options = {});

}  // namespace backupctl
