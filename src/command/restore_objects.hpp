// `backupctl restore objects --file F`: checks the archive whole first (sha256 against the meta,
// every entry against the manifest), then creates missing buckets and uploads the objects in
// parallel with their Content-Type and user metadata, then checks every uploaded object (size, and
// the ETag against the MD5 of the bytes sent). `--mode merge` (default) leaves other objects alone;
// `--mode exact` also deletes objects the backup does not have (listed in the plan first).
// `--target` restores elsewhere: a folder for OBJECT_STORAGE=disk, `bucket[/prefix]` for S3 (each
// object then goes to <prefix>/<its bucket>/<key> there).
#pragma once

#include <nlohmann/json.hpp>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "tar/attachment_scan.hpp"
#include "tar/tar.hpp"
#include "catalog/journal.hpp"
#include "catalog/meta.hpp"
#include "config/config.hpp"
#include "storage/object_store.hpp"

namespace backupctl {

struct RestoreObjectsOptions {
  std::filesystem::path file;
  std::string mode = "merge";  // merge | exact
  std::string target;          // empty: the objects' own buckets and keys
  bool allow_no_meta = false;
};

// Where an object of the backup goes.
struct Placement {
  std::string bucket;
  std::string key;
};

struct ObjectsPlan {
  std::filesystem::path file;
  std::optional<Meta> meta;
  AttachmentTarScan scan;
  std::string checksum_state;
  std::string mode;
  std::string target;  // where, for messages
  std::string target_bucket, target_prefix;  // S3 --target
  std::vector<std::string> buckets_to_create;
  std::vector<Placement> to_delete;  // --mode exact

  Placement place(const ManifestObject& o) const;
  std::string describe() const;
  nlohmann::json to_json() const;
};

struct ObjectsReport {
  std::size_t uploaded = 0;
  std::uint64_t bytes = 0;
  std::size_t verified = 0;
  std::size_t deleted = 0;
  std::vector<std::string> buckets_created;
  double seconds = 0;
  std::string describe() const;
  nlohmann::json to_json() const;
};

// Reads the archive whole and asks the store; changes nothing.
ObjectsPlan plan_restore_objects(const Config& config, ObjectStore& store,
                                 const RestoreObjectsOptions& options, Progress& progress);

// REQUIRES: confirmed; the caller holds the lock and owns `journal`. On a failed upload, throws
// after the others finished, naming how many were and were not uploaded and where the full list
// is; running it again completes it. Steps: restore-objects.create-buckets, .upload (with the
// fault point restore-objects.half-uploaded), .verify, .delete (--mode exact).
ObjectsReport run_restore_objects(const Config& config, ObjectStore& store, const ObjectsPlan& plan,
                                  Journal& journal, Progress& progress);

}  // namespace backupctl
