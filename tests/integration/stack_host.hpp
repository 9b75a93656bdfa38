// The stack on one host, for the off-site tests: database `archive` on a cluster of its own,
// attachments in a folder, the three config paths, backups encrypted to an age key kept apart
// from BACKUP_DIR. Each test that needs "a host" (or two, or a lost one) makes them from this.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "fixture.hpp"
#include "s3_fixture.hpp"

namespace backupctl::test {

// The JSON a `--json` run printed (a test failure when it is not JSON).
nlohmann::json json_of(const CliResult& r);

// Flips one bit of the byte at `at`.
void flip_byte(const fs::path& file, std::uint64_t at);

// What the bucket holds under `prefix`: key (without the prefix) -> bytes.
std::map<std::string, std::string> bucket_files(const S3Server& s3, const std::string& bucket, const std::string& prefix);

// Every path below `root` with the sha256 of each file: equal trees give equal strings.
std::string tree_digest(const fs::path& root);

// `size` bytes of pseudo-random data, the same for the same seed, written to `file`.
void write_random(const fs::path& file, std::size_t size, unsigned seed);

class Host {
 public:
  // `big_attachment`: the size of attachments/2026/scan.pdf (40 MiB makes the objects archive a
  // multipart upload; tests of other things keep it small).
  explicit Host(std::size_t big_attachment = 40u << 20);
  fs::path app() const { return dir.path() / "app"; }
  fs::path backups() const { return dir.path() / "backups"; }
  fs::path objects() const { return dir.path() / "objects"; }
  fs::path key() const { return keys.path() / "key.txt"; }

  // backupctl's environment on this host, and `remote` (BACKUP_REMOTE_* settings).
  EnvList env(const EnvList& remote) const;

  PgCluster pg;
  TempDir dir{"backupctl-host"};
  TempDir keys{"backupctl-keys"};
  std::string recipient;
};

// BACKUP_REMOTE_* for a bucket of `s3` (url "s3://bucket/prefix").
EnvList s3_remote(const S3Server& s3, const std::string& url);

// backupctl (and pg_dump, age: the children inherit it) under a clock `offset` off ("+30d"),
// through Debian's libfaketime.
EnvList faked_clock(EnvList env, const std::string& offset);

// A fresh host's environment: its own cluster and BACKUP_DIR (in `dir`), the age key of `host`,
// `remote`, CONFIRM=YES.
EnvList fresh_host_env(const PgCluster& fresh, const TempDir& dir, const Host& host, const EnvList& remote);

// `env` with `name` set to `value` (replaced when it was there).
EnvList with(EnvList env, const std::string& name, const std::string& value);

}  // namespace backupctl::test
