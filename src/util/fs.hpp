// File-system helpers. Every function throws backupctl::Error (via errno_error) on failure.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "util/fd.hpp"

namespace backupctl {

namespace fs = std::filesystem;

// Creates `dir` and its missing parents with `mode` (existing directories are left as they are).
void make_dirs(const fs::path& dir, mode_t mode = 0700);

// fsync on a directory, so that a rename or create inside it survives a crash.
void fsync_dir(const fs::path& dir);

// Writes `content` to `path` atomically: a temporary file beside it, fsync, rename over `path`,
// fsync of the directory. Readers see the old content or the new one, never a mix.
void write_file_atomic(const fs::path& path, std::string_view content, mode_t mode = 0600);

// How folder `a` stands to folder `b` by what they are on disk, not by their spelling: the device
// and inode of each folder along each path (symbolic links resolved; a bind mount of a folder is
// that folder), and of `b`'s own subfolders (a bind mount of one of them elsewhere). A path that
// does not exist yet is judged by its nearest existing parent.
enum class FolderRelation { apart, same, a_inside_b, b_inside_a };
FolderRelation folder_relation(const fs::path& a, const fs::path& b);

// The bytes an unprivileged writer may still put on the file system of `dir` (statvfs: f_bavail).
std::uint64_t free_bytes(const fs::path& dir);

// Throws Error(io) naming `what`, `dir`, what it needs and what is free, when the file system of
// `dir` has less than `need` bytes free for it.
void require_room(const fs::path& dir, std::uint64_t need, const std::string& what);

// Reads a whole (small) file.
std::string read_file(const fs::path& path);

// Opens for reading; throws not_found/io with the path in the message.
Fd open_read(const fs::path& path);

// write(2) until all of `data` is written, retrying on EINTR. Throws with `what` in the message.
void write_all(int fd, const void* data, std::size_t size, std::string_view what);

// A directory under $TMPDIR (or /tmp) removed with its contents on destruction.
class TempDir {
 public:
  explicit TempDir(std::string_view prefix = "backupctl");
  // A name for one not made yet, "$TMPDIR/<prefix>.<random>": for a caller that records it (in a
  // journal) before it exists, so no moment has a folder no record names.
  static fs::path unused_name(std::string_view prefix);
  // Makes exactly `path` (0700; one that exists already is an error) and owns it.
  struct Exactly {};
  TempDir(const fs::path& path, Exactly);
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir();
  const fs::path& path() const { return m_path; }

 private:
  fs::path m_path;
};

}  // namespace backupctl

namespace backupctl {

// An anonymous in-memory file (memfd) to collect a child's output without a pipe that could
// fill up while we are busy feeding its stdin. read_all() rewinds and reads everything.
class MemFile {
 public:
  explicit MemFile(const char* name);
  int fd() const { return m_fd.get(); }
  std::string read_all() const;

 private:
  Fd m_fd;
};

}  // namespace backupctl
