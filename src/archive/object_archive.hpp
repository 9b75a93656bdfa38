// The attachments archive: a pax tar (libarchive) of the objects, in bucket and key order, with a
// JSON manifest as its last entry. Stock `tar xzf` (or `tar --zstd -xf`) unpacks it.
//
//   <bucket>/<key>                          an object whose key is a safe relative path
//   .backupctl/encoded/<bucket>/<sha256>    any other key (leading '/', '..', '//', control
//                                           characters, a trailing '/'); the manifest maps it
//   .backupctl/manifest.json                bucket, key, path, size, ETag, sha256, Content-Type,
//                                           user metadata and last-modified of every object
//
// Compression is ours, not libarchive's: gzip switches its level per entry (stored for data that
// is already compressed: JPEG, PDF, ZIP, ...; level 1 for the rest), which keeps one valid gzip
// stream while spending no CPU on bytes that do not shrink; zstd (opt-in) runs multithreaded.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <ctime>
#include <exception>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "io/pipeline.hpp"
#include "util/progress.hpp"

struct archive;

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

// Where an object goes in the archive (see above).
std::string archive_path(const std::string& bucket, const std::string& key);

// Whether an object's bytes are worth deflating: no for already-compressed types (by Content-Type,
// else by the entropy of the first bytes).
bool looks_compressible(const std::string& content_type, std::span<const char> sample);

enum class ArchiveCompression { gzip, zstd };

// gzip whose level can change between entries (deflateParams) within one stream.
class GzipCompressSink : public io::Sink {
 public:
  GzipCompressSink(io::Sink& next, int level);
  ~GzipCompressSink() override;
  GzipCompressSink(const GzipCompressSink&) = delete;
  GzipCompressSink& operator=(const GzipCompressSink&) = delete;
  void set_level(int level);
  void write(std::span<const char> data) override;
  void finish() override;

 private:
  void drive(int flush);
  io::Sink& m_next;
  void* m_stream;  // z_stream*
  std::vector<char> m_out;
  int m_level;
};

// Who owns an entry, by number and by name (pax keeps both): config backups restore the owner
// by name when this system has it, else by number. uid/gid -1: not recorded.
struct EntryOwner {
  long uid = -1, gid = -1;
  std::string user, group;
};

class ObjectArchiveWriter {
 public:
  ObjectArchiveWriter(io::Sink& out, ArchiveCompression compression, int zstd_threads);
  ~ObjectArchiveWriter();
  ObjectArchiveWriter(const ObjectArchiveWriter&) = delete;
  ObjectArchiveWriter& operator=(const ObjectArchiveWriter&) = delete;

  // A regular file entry of exactly `size` bytes.
  void begin(const std::string& path, std::uint64_t size, std::time_t mtime, bool compressible,
             unsigned mode = 0600, const EntryOwner& owner = {});
  void add_directory(const std::string& path, unsigned mode, std::time_t mtime, const EntryOwner& owner = {});
  // A symbolic link, stored as a link (its target is not read).
  void add_symlink(const std::string& path, const std::string& target, std::time_t mtime,
                   const EntryOwner& owner = {});
  void write(std::span<const char> data);
  // Throws Error(internal) when fewer or more bytes than declared were written.
  void end();
  // Writes the manifest as the last entry, ends the archive and the compression stream.
  void finish(const Manifest& manifest);
  // Ends the archive and the compression stream (an archive without a manifest).
  void close();

 private:
  struct archive* m_archive = nullptr;
  std::unique_ptr<io::Sink> m_compressor;
  GzipCompressSink* m_gzip = nullptr;
  std::exception_ptr m_error;
  std::uint64_t m_declared = 0, m_written = 0;
  bool m_in_entry = false;
  friend struct WriterCallbacks;
};

struct ArchiveEntry {
  std::string path;
  std::uint64_t size = 0;
  bool regular = false;  // anything else (link, directory, device) is refused by readers
  std::string type;      // "file", "symlink", "hardlink", "directory", "other"
  unsigned mode = 0;     // permission bits
  std::time_t mtime = 0;
  std::string symlink;   // the target, for "symlink"
  EntryOwner owner;
};

// Reads a .tar.gz / .tar.zst (detected from its bytes).
class ObjectArchiveReader {
 public:
  explicit ObjectArchiveReader(io::Source& in);
  ~ObjectArchiveReader();
  ObjectArchiveReader(const ObjectArchiveReader&) = delete;
  ObjectArchiveReader& operator=(const ObjectArchiveReader&) = delete;

  // The next entry; false at the end. Throws Error(verification) on a damaged archive.
  bool next(ArchiveEntry& entry);
  // The current entry's bytes; 0 at its end.
  std::size_t read(std::span<char> buf);

 private:
  struct archive* m_archive = nullptr;
  io::Source& m_in;
  std::vector<char> m_buf;
  std::exception_ptr m_error;
  friend struct ReaderCallbacks;
};

// One pass over an objects archive: the file's sha256 and size, every entry a regular file at a
// path the manifest names (nothing outside its folders, no links), every object's sha256 and size
// equal to the manifest's, the manifest last. Throws Error(verification) naming the first problem.
struct ObjectArchiveScan {
  std::uint64_t size = 0;
  std::string sha256;
  Manifest manifest;
  std::uint64_t object_bytes = 0;
};
// An encrypted archive (.age) is hashed as stored and read through `age -d -i identity`.
ObjectArchiveScan scan_object_archive(const std::string& file, Progress& progress,
                                      const std::filesystem::path& identity = {});

}  // namespace backupctl
