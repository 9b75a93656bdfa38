#include "util/fs.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <algorithm>
#include <random>
#include <vector>

#include "util/error.hpp"

namespace backupctl {

Pipe Pipe::create() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw_errno("cannot create a pipe");
  return Pipe{Fd(fds[0]), Fd(fds[1])};
}

void make_dirs(const fs::path& dir, mode_t mode) {
  if (dir.empty()) return;
  struct stat st{};
  if (::stat(dir.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) {
      throw Error(ErrorCode::io, "cannot use " + dir.string() + ": it exists and is not a directory",
                  "remove it or point BACKUP_DIR elsewhere");
    }
    return;
  }
  if (dir.has_parent_path() && dir.parent_path() != dir) make_dirs(dir.parent_path(), mode);
  if (::mkdir(dir.c_str(), mode) != 0 && errno != EEXIST) {
    throw_errno("cannot create directory " + dir.string());
  }
}

void fsync_dir(const fs::path& dir) {
  Fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) throw_errno("cannot open directory " + dir.string());
  if (::fsync(fd.get()) != 0) throw_errno("cannot fsync directory " + dir.string());
}

void write_all(int fd, const void* data, std::size_t size, std::string_view what) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = ::write(fd, p, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno(what);
    }
    p += n;
    size -= static_cast<std::size_t>(n);
  }
}

void write_file_atomic(const fs::path& path, std::string_view content, mode_t mode) {
  fs::path tmp = path;
  tmp += ".tmp." + std::to_string(::getpid());
  Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode));
  if (!fd) throw_errno("cannot create " + tmp.string());
  try {
    write_all(fd.get(), content.data(), content.size(), "cannot write " + tmp.string());
    if (::fchmod(fd.get(), mode) != 0) throw_errno("cannot chmod " + tmp.string());
    if (::fsync(fd.get()) != 0) throw_errno("cannot fsync " + tmp.string());
    fd.reset();
    if (::rename(tmp.c_str(), path.c_str()) != 0) throw_errno("cannot rename to " + path.string());
  } catch (...) {
    ::unlink(tmp.c_str());
    throw;
  }
  fsync_dir(path.has_parent_path() ? path.parent_path() : fs::path("."));
}

Fd open_read(const fs::path& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) throw_errno("cannot open " + path.string());
  return fd;
}

std::string read_file(const fs::path& path) {
  Fd fd = open_read(path);
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno("cannot read " + path.string());
    }
    if (n == 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  return out;
}

TempDir::TempDir(std::string_view prefix) {
  const char* base = std::getenv("TMPDIR");
  std::string pattern = std::string(base && *base ? base : "/tmp") + "/" + std::string(prefix) + ".XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) throw_errno("cannot create a temporary directory");
  m_path = pattern;
}

fs::path TempDir::unused_name(std::string_view prefix) {
  static constexpr char kChars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  std::random_device rd;
  std::string name = std::string(prefix) + ".";
  for (int i = 0; i < 12; ++i) name += kChars[rd() % (sizeof kChars - 1)];
  const char* base = std::getenv("TMPDIR");
  return fs::path(base && *base ? base : "/tmp") / name;
}

TempDir::TempDir(const fs::path& path, Exactly) {
  if (::mkdir(path.c_str(), 0700) != 0) throw_errno("cannot create the temporary directory " + path.string());
  m_path = path;
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(m_path, ec);
}

}  // namespace backupctl

#include <sys/mman.h>

namespace backupctl {

MemFile::MemFile(const char* name) : m_fd(::memfd_create(name, MFD_CLOEXEC)) {
  if (!m_fd) throw_errno("memfd_create");
}

std::string MemFile::read_all() const {
  std::string out;
  char buf[65536];
  off_t off = 0;
  for (;;) {
    ssize_t n = ::pread(m_fd.get(), buf, sizeof buf, off);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno("cannot read a memfd");
    }
    if (n == 0) break;
    out.append(buf, static_cast<std::size_t>(n));
    off += n;
  }
  return out;
}

namespace {

using FileId = std::pair<dev_t, ino_t>;

std::optional<FileId> id_of(const fs::path& p) {
  struct stat st {};
  if (::stat(p.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) return std::nullopt;
  return FileId{st.st_dev, st.st_ino};
}

// The ids of `p` (or its nearest existing parent) and of every folder above it.
std::vector<FileId> chain_of(const fs::path& p) {
  std::error_code ec;
  fs::path at = fs::weakly_canonical(fs::absolute(p, ec), ec);
  if (ec) at = fs::absolute(p).lexically_normal();
  std::vector<FileId> out;
  for (;;) {
    if (auto id = id_of(at)) out.push_back(*id);
    if (at == at.root_path() || at.empty()) break;
    at = at.parent_path();
  }
  return out;
}

}  // namespace

FolderRelation folder_relation(const fs::path& a, const fs::path& b) {
  const std::vector<FileId> ca = chain_of(a), cb = chain_of(b);
  const auto ida = id_of(a), idb = id_of(b);
  if (ida && idb && *ida == *idb) return FolderRelation::same;
  auto has = [](const std::vector<FileId>& chain, const std::optional<FileId>& id) {
    return id && std::find(chain.begin(), chain.end(), *id) != chain.end();
  };
  if (has(ca, idb)) return FolderRelation::a_inside_b;
  if (has(cb, ida)) return FolderRelation::b_inside_a;
  // `a` is (a bind mount of) one of `b`'s subfolders.
  std::error_code ec;
  if (ida && idb) {
    for (const auto& de : fs::directory_iterator(b, ec)) {
      if (de.is_directory(ec) && !de.is_symlink(ec) && id_of(de.path()) == ida) return FolderRelation::a_inside_b;
    }
  }
  return FolderRelation::apart;
}

std::uint64_t free_bytes(const fs::path& dir) {
  struct statvfs st {};
  if (::statvfs(dir.c_str(), &st) != 0) throw_errno("cannot read the free space of " + dir.string());
  return static_cast<std::uint64_t>(st.f_bavail) * st.f_frsize;
}

void require_room(const fs::path& dir, std::uint64_t need, const std::string& what) {
  const std::uint64_t free = free_bytes(dir);
  if (free >= need) return;
  auto mib = [](std::uint64_t b) { return std::to_string((b + (1u << 20) - 1) >> 20) + " MiB"; };
  throw Error(ErrorCode::io, what + " needs " + mib(need) + " in " + dir.string() + ": only " + mib(free) + " free",
              "make room on that file system (older backups: `backupctl prune`), or set BACKUP_DIR to a larger one");
}

}  // namespace backupctl
