#include "storage/remote.hpp"

#include <fcntl.h>

#include <algorithm>
#include <sys/stat.h>
#include <unistd.h>

#include "storage/object_store.hpp"
#include "storage/remote_files.hpp"
#include "util/digest.hpp"
#include "util/encoding.hpp"
#include "util/error.hpp"
#include "util/fs.hpp"
#include "util/signals.hpp"

namespace backupctl {

namespace fs = std::filesystem;

// A remote name is "<db|objects|config|base|sets>/<file>": one plain file name below one of the
// folders (or the owner record at the root), or a WAL file "wal/<system identifier>/<file>" of
// the characters WAL names are made of. A listing is input someone else may have written:
// anything else is not ours.
bool remote_name_ok(const std::string& name) {
  if (name == kRemoteOwnerName) return true;
  auto slash = name.find('/');
  if (slash == std::string::npos) return false;
  std::string dir = name.substr(0, slash), file = name.substr(slash + 1);
  if (dir == "wal") {
    auto second = file.find('/');
    if (second == std::string::npos || second == 0 || second > 20) return false;
    const std::string cluster = file.substr(0, second), wal = file.substr(second + 1);
    auto plain = [](char c) { return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '.'; };
    return std::all_of(cluster.begin(), cluster.end(), ::isdigit) && !wal.empty() && wal[0] != '.' &&
           std::all_of(wal.begin(), wal.end(), plain);
  }
  bool known = false;
  for (const char* d : kRemoteDirs) known = known || dir == d;
  return known && !file.empty() && file != "." && file != ".." && file.find('/') == std::string::npos &&
         file.find('\0') == std::string::npos && file.find('\\') == std::string::npos;
}

void require_remote_name(const std::string& name) {
  if (!remote_name_ok(name)) {
    throw Error(ErrorCode::internal, "not a remote backup name: " + name, "this is a bug in backupctl");
  }
}

// pread() until `n` bytes are read (or the end of the file).
std::size_t read_at(int fd, char* buf, std::size_t n, std::uint64_t offset, const fs::path& file) {
  std::size_t got = 0;
  while (got < n) {
    ssize_t k = ::pread(fd, buf + got, n - got, static_cast<off_t>(offset + got));
    if (k < 0) {
      if (errno == EINTR) {
        check_interrupted();
        continue;
      }
      throw_errno("cannot read " + file.string());
    }
    if (k == 0) break;
    got += static_cast<std::size_t>(k);
  }
  return got;
}

std::uint64_t size_of(int fd, const fs::path& file) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw_errno("cannot stat " + file.string());
  return static_cast<std::uint64_t>(st.st_size);
}

Error changed_since(const fs::path& local) {
  return Error(ErrorCode::verification,
               local.filename().string() + " does not match the sha256 of its meta: not copied off-site",
               "the local file is damaged or changed since the backup; `backupctl verify " + local.string() + "`");
}

std::string expected_etag(const fs::path& file, std::uint64_t part_size) {
  Fd fd = open_read(file);
  const std::uint64_t size = size_of(fd.get(), file);
  std::vector<char> buf(1 << 20);
  std::string md5s;
  int count = 0;
  for (std::uint64_t offset = 0; offset < size || count == 0; offset += part_size) {
    Digest md5(DigestKind::md5);
    std::uint64_t len = std::min(part_size, size - offset);
    for (std::uint64_t done = 0; done < len;) {
      std::size_t n = read_at(fd.get(), buf.data(), static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), len - done)),
                              offset + done, file);
      if (n == 0) break;
      md5.update(buf.data(), n);
      done += n;
    }
    md5s += md5.finish_raw();
    ++count;
    if (size == 0) break;
  }
  if (size <= kRemoteSinglePut) return hex_encode(reinterpret_cast<const unsigned char*>(md5s.data()), md5s.size());
  return multipart_etag(md5s, count);
}

std::unique_ptr<Remote> make_remote(const Config& config) {
  if (!config.remote) throw Error(ErrorCode::usage, "no remote: BACKUP_REMOTE_URL is not set", "set BACKUP_REMOTE_URL=s3://bucket/prefix or file:///path");
  const RemoteConfig& r = *config.remote;
  if (r.type == RemoteConfig::Type::folder) {
    // A copy in BACKUP_DIR (or one that holds it) is no copy, and the remote's retention there
    // would delete local backups: refused by what the folders are, not how they are spelled (a
    // link or a bind mount to BACKUP_DIR is BACKUP_DIR).
    const FolderRelation rel = folder_relation(r.dir, config.backup_dir);
    if (rel != FolderRelation::apart) {
      throw Error(ErrorCode::usage,
                  "BACKUP_REMOTE_URL " + r.url +
                      (rel == FolderRelation::same         ? " is BACKUP_DIR itself"
                       : rel == FolderRelation::a_inside_b ? " is inside BACKUP_DIR"
                                                           : " holds BACKUP_DIR") +
                      " (" + config.backup_dir.string() + "): a copy there is lost with the backups, and the remote's "
                      "retention would delete them",
                  "point BACKUP_REMOTE_URL at a folder on another disk or machine (its mount here)");
    }
    return make_folder_remote(r);
  }
  if (r.access_key.empty() || r.secret_key.empty()) {
    throw Error(ErrorCode::usage, "the S3 remote " + r.url + " needs BACKUP_REMOTE_ACCESS_KEY and BACKUP_REMOTE_SECRET_KEY",
                "a key of the off-site account (put and read; see README: off-site copies)");
  }
  return make_s3_remote(r);
}

}  // namespace backupctl
