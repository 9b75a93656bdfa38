// The `.meta` sidecar: a JSON document written atomically after its backup file is complete.
// Its sha256 is of the stored file, so `sha256sum` alone can check a backup.
#pragma once

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace backupctl {

struct Verification {
  std::string at;  // ISO-8601
  bool ok = false;
  std::string detail;  // what was checked, or why it failed
};

struct Meta {
  static constexpr int kVersion = 1;

  std::string kind;  // "db", "objects", "config"
  std::string file;  // file name, in the meta's directory
  std::uint64_t size = 0;
  std::string sha256;
  std::string profile;
  std::string created_at;   // ISO-8601 with offset: when the backup started
  std::string finished_at;  // when the file was complete
  double duration_seconds = 0;
  std::string set_id;
  std::string tool_version;
  std::string hostname;      // the machine that made the backup
  std::string format;        // "pg_custom", ...
  std::string compression;   // "gzip:1", "zstd:3", ...
  nlohmann::json source = nlohmann::json::object();  // kind-specific: database, server, ...
  nlohmann::json parts = nlohmann::json::object();   // companion files, e.g. "roles"
  std::optional<Verification> verification;          // the last `backupctl verify`
  nlohmann::json other = nlohmann::json::object();   // fields of newer versions, kept on rewrite

  nlohmann::json to_json() const;
  // Throws Error(verification) naming `origin` when required fields are missing or mistyped.
  static Meta from_json(const nlohmann::json& j, const std::string& origin);
};

// A new backup's meta with the fields every kind fills the same way: the file's name, size and
// sha256 (of the bytes stored), when it started and how long it took (finished now), the set,
// this backupctl and machine, and the age recipients it is encrypted to (none: not encrypted).
// The caller adds format, compression, source and parts.
Meta new_backup_meta(std::string kind, const std::filesystem::path& file, std::uint64_t size,
                     std::string sha256, std::string profile, std::chrono::system_clock::time_point created,
                     double duration_seconds, std::string set_id,
                     const std::vector<std::string>& age_recipients);

// Reads a meta file; throws not_found when missing, verification when malformed.
Meta read_meta(const std::filesystem::path& path);

// Writes it atomically, mode 0600.
void write_meta(const std::filesystem::path& path, const Meta& meta);

}  // namespace backupctl
