// The folder remote (file:///path): a mounted disk or share. A copy is written to `<name>.partial`
// and renamed when its sha256 matched; a copy cut short is resumed after the bytes already there
// are compared with the file's.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <thread>
#include <utility>
#include <vector>

#include "storage/remote_files.hpp"
#include "util/digest.hpp"
#include "util/error.hpp"
#include "util/fault.hpp"
#include "util/fd.hpp"
#include "util/fs.hpp"
#include "util/signals.hpp"

namespace backupctl {

namespace fs = std::filesystem;

namespace {

// Holds back a writer to `rate` bytes per second (0: no limit).
class Throttle {
 public:
  explicit Throttle(std::uint64_t rate) : m_rate(rate), m_start(std::chrono::steady_clock::now()) {}
  void sent(std::uint64_t n) {
    if (m_rate == 0) return;
    m_total += n;
    auto due = m_start + std::chrono::microseconds(m_total * 1000000 / m_rate);
    auto now = std::chrono::steady_clock::now();
    if (due > now) std::this_thread::sleep_until(due);
  }

 private:
  std::uint64_t m_rate;
  std::chrono::steady_clock::time_point m_start;
  std::uint64_t m_total = 0;
};

// The folders a remote holds files in, with the name prefix of their files: db/, objects/, ...,
// and wal/<system identifier>/ for each cluster (symbolic links are not followed).
std::vector<std::pair<fs::path, std::string>> remote_folders(const fs::path& root) {
  std::vector<std::pair<fs::path, std::string>> out;
  std::error_code ec;
  for (const char* d : kRemoteDirs) out.emplace_back(root / d, std::string(d) + "/");
  for (const auto& de : fs::directory_iterator(root / "wal", ec)) {
    if (fs::is_directory(de.symlink_status(ec))) {
      out.emplace_back(de.path(), "wal/" + de.path().filename().string() + "/");
    }
  }
  return out;
}

class FolderRemote : public Remote {
 public:
  explicit FolderRemote(const RemoteConfig& c) : m_config(c) {}

  std::string describe() const override { return m_config.url; }

  std::map<std::string, RemoteFile> list() override {
    std::map<std::string, RemoteFile> out;
    std::error_code ec;
    if (!fs::is_directory(m_config.dir, ec)) {
      throw Error(ErrorCode::not_found, "the remote folder " + m_config.dir.string() + " does not exist",
                  "mount it, or create it: mkdir -p " + m_config.dir.string());
    }
    for (const auto& [dir, prefix] : remote_folders(m_config.dir)) {
      if (!fs::is_directory(fs::symlink_status(dir, ec))) continue;
      for (const auto& de : fs::directory_iterator(dir, ec)) {
        // Symbolic links are not followed: only files really in the remote count.
        if (!fs::is_regular_file(de.symlink_status(ec))) continue;
        std::string name = prefix + de.path().filename().string();
        if (name.ends_with(".partial") || !remote_name_ok(name)) continue;
        out[name] = RemoteFile{name, static_cast<std::uint64_t>(de.file_size(ec)), ""};
      }
    }
    return out;
  }

  PutResult put(const fs::path& local, const std::string& name, const std::string& sha256,
                std::atomic<std::uint64_t>& sent) override {
    require_remote_name(name);
    std::error_code ec;
    if (!fs::is_directory(m_config.dir, ec)) {
      throw Error(ErrorCode::not_found, "the remote folder " + m_config.dir.string() + " does not exist",
                  "mount it, or create it: mkdir -p " + m_config.dir.string());
    }
    const fs::path dest = m_config.dir / name;
    make_dirs(dest.parent_path());
    const fs::path partial = dest.string() + ".partial";
    Fd in = open_read(local);
    const std::uint64_t size = size_of(in.get(), local);
    PutResult result;
    Digest sha(DigestKind::sha256);
    std::vector<char> buf(1 << 20), theirs(1 << 20);
    // A .partial an earlier push left: kept as far as it matches the file.
    std::uint64_t have = 0;
    Fd out(::open(partial.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!out) throw_errno("cannot write " + partial.string());
    std::uint64_t there = size_of(out.get(), partial);
    if (there > 0 && there <= size) {
      bool same = true;
      for (std::uint64_t off = 0; off < there && same;) {
        std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), there - off));
        same = read_at(in.get(), buf.data(), n, off, local) == n &&
               read_at(out.get(), theirs.data(), n, off, partial) == n && std::memcmp(buf.data(), theirs.data(), n) == 0;
        if (same) sha.update(buf.data(), n);
        off += n;
      }
      if (same) {
        have = there;
        result.resumed = true;
      } else {
        (void)sha.finish_raw();  // starts over
      }
    }
    if (::ftruncate(out.get(), static_cast<off_t>(have)) != 0) throw_errno("cannot truncate " + partial.string());
    Throttle throttle(m_config.bwlimit);
    for (std::uint64_t off = have; off < size;) {
      check_interrupted();
      std::size_t n = read_at(in.get(), buf.data(), static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), size - off)), off, local);
      if (n == 0) throw changed_since(local);
      sha.update(buf.data(), n);
      std::size_t done = 0;
      while (done < n) {
        ssize_t k = ::pwrite(out.get(), buf.data() + done, n - done, static_cast<off_t>(off + done));
        if (k < 0) {
          if (errno == EINTR) {
            check_interrupted();
            continue;
          }
          throw_errno("cannot write " + partial.string());
        }
        done += static_cast<std::size_t>(k);
      }
      off += n;
      sent += n;
      result.sent += n;
      fault_point("remote.chunk-written");
      throttle.sent(n);
    }
    if (!sha256.empty() && sha.finish_hex() != sha256) {
      ::unlink(partial.c_str());
      throw changed_since(local);
    }
    if (::fsync(out.get()) != 0) throw_errno("cannot fsync " + partial.string());
    if (::rename(partial.c_str(), dest.c_str()) != 0) throw_errno("cannot rename " + partial.string());
    fsync_dir(dest.parent_path());
    return result;
  }

  void get(const std::string& name, io::Sink& sink) override {
    require_remote_name(name);
    Fd fd(::open((m_config.dir / name).c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!fd) {
      if (errno == ENOENT) throw Error(ErrorCode::not_found, name + " is not on the remote " + m_config.url);
      throw_errno("cannot read " + (m_config.dir / name).string());
    }
    io::FdSource src(fd.get(), name);
    std::vector<char> buf(1 << 20);
    for (std::size_t n; (n = src.read(buf)) > 0;) {
      check_interrupted();
      sink.write(std::span<const char>(buf.data(), n));
    }
  }

  void remove(const std::vector<std::string>& names) override {
    for (const auto& n : names) {
      require_remote_name(n);
      if (::unlink((m_config.dir / n).c_str()) != 0 && errno != ENOENT) {
        throw_errno("cannot delete " + (m_config.dir / n).string());
      }
    }
  }

  std::vector<std::string> drop_unfinished(
      const std::function<bool(const std::string&, Clock::time_point)>& abandoned) override {
    std::vector<std::string> out;
    std::error_code ec;
    for (const auto& [dir, prefix] : remote_folders(m_config.dir)) {
      if (!fs::is_directory(fs::symlink_status(dir, ec))) continue;
      for (const auto& de : fs::directory_iterator(dir, ec)) {
        std::string file = de.path().filename().string();
        if (!file.ends_with(".partial") || !fs::is_regular_file(de.symlink_status(ec))) continue;
        std::string name = prefix + file.substr(0, file.size() - 8);
        struct stat st {};
        if (!remote_name_ok(name) || ::lstat(de.path().c_str(), &st) != 0) continue;
        auto started = Clock::from_time_t(st.st_mtim.tv_sec);
        if (!abandoned(name, started)) continue;
        if (::unlink(de.path().c_str()) == 0) out.push_back(name);
      }
    }
    return out;
  }

 private:
  RemoteConfig m_config;
};

}  // namespace

std::unique_ptr<Remote> make_folder_remote(const RemoteConfig& config) { return std::make_unique<FolderRemote>(config); }

}  // namespace backupctl
