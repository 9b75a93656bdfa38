// `backupctl backup objects`: every object of the chosen buckets (MINIO_BUCKETS, or all) listed
// first, then downloaded in parallel (OBJECT_PARALLEL) and written in key order into one streaming
// archive, objects/objects_<minio|disk>_<ts>.tar.gz (or .tar.zst), with its .meta. Memory stays
// bounded: small objects are prefetched within a byte budget, large ones stream straight through.
#pragma once

#include "command/backup_db.hpp"
#include "storage/object_store.hpp"

namespace backupctl {

struct BackupObjectsOptions {
  std::string set_id;  // empty: a new set id of its own
};

BackupResult backup_objects(const Config& config, ObjectStore& store, Progress& progress,
                            const BackupObjectsOptions& options = {});

}  // namespace backupctl
