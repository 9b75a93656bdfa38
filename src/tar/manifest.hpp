// The manifest of an attachments tar: its last entry, `.backupctl/manifest.json`, naming every
// object (bucket, key, size, ETag, sha256, Content-Type, user metadata, last-modified) and where
// its bytes are in the tar. Where an object goes follows from its bucket and key alone:
//
//   <bucket>/<key>                          an object whose key is a safe relative path
//   .backupctl/encoded/<bucket>/<sha256>    any other key (leading '/', '..', '//', control
//                                           characters, a trailing '/'); the manifest maps it
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace backupctl {

inline constexpr const char* kManifestPath = ".backupctl/manifest.json";

struct ManifestObject {
  std::string bucket;
  std::string key;
  std::string path;  // the entry in the archive
  std::uint64_t size = 0;
  std::string etag;
  std::string sha256;
  std::string content_type;
  std::map<std::string, std::string> metadata;
  std::string last_modified;
};

struct Manifest {
  static constexpr int kVersion = 1;
  std::string label;   // minio | disk
  std::string source;  // endpoint or directory
  std::vector<std::string> buckets;
  std::vector<ManifestObject> objects;

  nlohmann::json to_json() const;
  // Throws Error(verification) when malformed.
  static Manifest from_json(const nlohmann::json& j);
};

// True when `key` can be stored as <bucket>/<key> in a tar and unpacked without surprises.
bool safe_relative_key(const std::string& key);

// Where an object goes in the tar (see above).
std::string tar_path(const std::string& bucket, const std::string& key);


}  // namespace backupctl
