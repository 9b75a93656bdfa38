// The tars backupctl writes and reads: a pax tar (libarchive), compressed. The attachments tar
// holds the objects in bucket and key order with a JSON manifest as its last entry
// (tar/manifest.hpp); the config tar holds the config files with their owners and modes. Stock
// `tar xzf` (or `tar --zstd -xf`) unpacks both.
//
// Compression is ours, not libarchive's: gzip switches its level per entry (stored for data that
// is already compressed: JPEG, PDF, ZIP, ...; level 1 for the rest), which keeps one valid gzip
// stream while spending no CPU on bytes that do not shrink; zstd (opt-in) runs multithreaded.
#pragma once

#include <cstdint>
#include <ctime>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "io/gzip.hpp"
#include "io/pipeline.hpp"
#include "tar/manifest.hpp"

struct archive;

namespace backupctl {

// Whether an object's bytes are worth deflating: no for already-compressed types (by Content-Type,
// else by the entropy of the first bytes).
bool looks_compressible(const std::string& content_type, std::span<const char> sample);

// none: a plain tar, for a stream unpacked right away (`tar -x` in a container).
enum class TarCompression { gzip, zstd, none };

// Who owns an entry, by number and by name (pax keeps both): config backups restore the owner
// by name when this system has it, else by number. uid/gid -1: not recorded.
struct EntryOwner {
  long uid = -1, gid = -1;
  std::string user, group;
};

class TarWriter {
 public:
  TarWriter(io::Sink& out, TarCompression compression, int zstd_threads);
  ~TarWriter();
  TarWriter(const TarWriter&) = delete;
  TarWriter& operator=(const TarWriter&) = delete;

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
  io::Sink* m_out = nullptr;  // the compressor, or (none) the caller's sink
  io::GzipCompressSink* m_gzip = nullptr;
  std::exception_ptr m_error;
  std::uint64_t m_declared = 0, m_written = 0;
  bool m_in_entry = false;
  friend struct WriterCallbacks;
};

struct TarEntry {
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
class TarReader {
 public:
  explicit TarReader(io::Source& in);
  ~TarReader();
  TarReader(const TarReader&) = delete;
  TarReader& operator=(const TarReader&) = delete;

  // The next entry; false at the end. Throws Error(verification) on a damaged archive.
  bool next(TarEntry& entry);
  // The current entry's bytes; 0 at its end.
  std::size_t read(std::span<char> buf);

 private:
  struct archive* m_archive = nullptr;
  io::Source& m_in;
  std::vector<char> m_buf;
  std::exception_ptr m_error;
  friend struct ReaderCallbacks;
};

}  // namespace backupctl
