// The off-site copy of BACKUP_DIR (BACKUP_REMOTE_URL): files by their name relative to
// BACKUP_DIR ("db/archive_archive_20261201_031500.dump", "sets/set_….json"), in an S3 bucket
// under a prefix or in a folder. Every copy is checked on arrival: on S3 by the server (each
// part's and each small file's Content-MD5, a small file's signed sha256) and the multipart
// ETag; in a folder by the sha256 of what was written. A copy cut short resumes: on S3 the open
// multipart upload is taken up again and parts already there (same size and MD5) are not sent
// again; in a folder the `.partial` is kept and appended to after its bytes are compared.
// Nothing looks finished before it is: a multipart upload exists as an object only once
// completed, a folder file only after its rename, and a backup's meta goes up after its file.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "io/pipeline.hpp"
#include "util/time.hpp"

namespace backupctl {

struct RemoteFile {
  std::string name;  // relative: "db/…", "objects/…", "config/…", "base/…", "sets/…", "wal/<id>/…"
  std::uint64_t size = 0;
  std::string etag;  // S3: the server's ETag ("" in a folder)
};

struct PutResult {
  std::string etag;         // S3: the ETag the server answered (checked against ours); folder: ""
  std::uint64_t sent = 0;   // bytes sent this time (a resumed copy sends only what was missing)
  bool resumed = false;
};

class Remote {
 public:
  virtual ~Remote() = default;
  virtual std::string describe() const = 0;
  // Every finished file, by name (unfinished uploads and .partial files are not listed).
  virtual std::map<std::string, RemoteFile> list() = 0;
  // Copies `local` to `name`. `sha256`, when given, is what the file must hash to (its meta's):
  // a file that changed since is not copied. `sent` counts bytes as they go (for progress and
  // for tests of the resume).
  virtual PutResult put(const std::filesystem::path& local, const std::string& name, const std::string& sha256,
                        std::atomic<std::uint64_t>& sent) = 0;
  // Streams the file into `sink` (not finished: the caller does).
  virtual void get(const std::string& name, io::Sink& sink) = 0;
  virtual void remove(const std::vector<std::string>& names) = 0;
  // Unfinished copies (S3: open multipart uploads; folder: .partial files) of the names for which
  // `abandoned(name, started)` says so are dropped; returns their names. A copy cut short that
  // the next push no longer resumes (its file pruned meanwhile) would otherwise stay, paid for.
  virtual std::vector<std::string> drop_unfinished(
      const std::function<bool(const std::string& name, Clock::time_point started)>& abandoned) = 0;
};

// Whether `name` is one a remote holds: "<db|objects|config|base|sets>/<plain file name>",
// "wal/<system identifier>/<WAL file name>", or
// kRemoteOwnerName at its root. Names from a listing or a meta are input someone else may have
// written: anything else is not followed.
bool remote_name_ok(const std::string& name);

// The remote's owner record (command/remote_owner.hpp), at the remote's root.
inline constexpr const char* kRemoteOwnerName = "backupctl-owner.json";

// REQUIRES: config.remote. Throws Error(usage) for settings that cannot work (an S3 remote
// without keys).
std::unique_ptr<Remote> make_remote(const Config& config);

// The ETag S3 gives an object uploaded in parts of `part_size` (md5 of the parts' md5s, "-N"),
// or one PUT (the md5): what a listing of a good copy shows. Reads the file.
std::string expected_etag(const std::filesystem::path& file, std::uint64_t part_size);

// Files up to kRemoteSinglePut go as one PUT; larger ones in parts of part_size_for(size)
// (storage/object_store.hpp).
inline constexpr std::uint64_t kRemoteSinglePut = 16u << 20;

}  // namespace backupctl
