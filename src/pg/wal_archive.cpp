#include "pg/wal_archive.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <algorithm>

#include "io/atomic_file.hpp"
#include "io/pipeline.hpp"
#include "io/zstd.hpp"
#include "util/error.hpp"
#include "util/fd.hpp"
#include "util/fs.hpp"

namespace backupctl {

namespace fs = std::filesystem;

namespace {

constexpr std::uint64_t kMaxSegment = 1ull << 30;  // PostgreSQL's largest wal_segment_size
constexpr std::uint64_t kMaxHistory = 1u << 20;

std::string decompress(const fs::path& file, std::uint64_t limit) {
  io::StringSink out;
  io::LimitSink limited(out, limit, file.filename().string());
  io::ZstdDecompressSink z(limited);
  Fd fd = open_read(file);
  io::FdSource in(fd.get(), file.string());
  io::copy(in, z);
  z.finish();
  return out.take();
}

// A file of incoming/ (anyone who can write BACKUP_DIR can put one there): read only when it is
// no larger than a segment can be.
std::string read_bounded(const fs::path& file, std::uint64_t limit) {
  std::error_code ec;
  const auto size = fs::file_size(file, ec);
  if (ec) throw Error(ErrorCode::io, "cannot read " + file.string() + ": " + ec.message());
  if (size > limit) {
    throw Error(ErrorCode::verification, file.string() + " is larger than a WAL segment can be",
                "it is not the receiver's; remove it");
  }
  return read_file(file);
}

// Passes everything on, keeping the first bytes (a segment's first page) and the count.
class HeadSink : public io::Sink {
 public:
  explicit HeadSink(io::Sink& next) : m_next(next) {}
  void write(std::span<const char> data) override {
    if (m_head.size() < kHead) m_head.append(data.data(), std::min(data.size(), kHead - m_head.size()));
    m_bytes += data.size();
    m_next.write(data);
  }
  void finish() override { m_next.finish(); }
  const std::string& head() const { return m_head; }
  std::uint64_t bytes() const { return m_bytes; }

 private:
  static constexpr std::size_t kHead = 8192;
  io::Sink& m_next;
  std::string m_head;
  std::uint64_t m_bytes = 0;
};

void write_new(const fs::path& to, const std::string& data) {
  Fd fd(::open(to.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fd) throw_errno("cannot create " + to.string());
  write_all(fd.get(), data.data(), data.size(), to.string());
}

}  // namespace

bool is_segment_name(const std::string& name) {
  return name.size() == 24 && std::all_of(name.begin(), name.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F');
         });
}

WalArchive::WalArchive(const fs::path& backup_dir, std::uint64_t system_identifier)
    : m_sysid(system_identifier), m_dir(backup_dir / "wal" / std::to_string(system_identifier)) {}

std::vector<std::string> WalArchive::archive_incoming() {
  std::vector<std::string> done;
  std::error_code ec;
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(incoming(), ec)) {
    const std::string name = e.path().filename().string();
    if ((is_segment_name(name) || parse_history_name(name)) && e.is_regular_file(ec) && !e.is_symlink(ec)) {
      files.push_back(e.path());
    }
  }
  std::sort(files.begin(), files.end());
  for (const auto& f : files) {
    if (archive_one(f)) done.push_back(f.filename().string());
  }
  return done;
}

bool WalArchive::archive_one(const fs::path& file) {
  const std::string name = file.filename().string();
  const bool history = parse_history_name(name).has_value();
  std::error_code ec;
  std::string data, why;
  if (fs::file_size(file, ec) > (history ? kMaxHistory : kMaxSegment) || ec) {
    why = "larger than a WAL file can be";  // never read into memory
  } else {
    data = read_file(file);
    why = history ? "" : check_wal_segment(name, data, m_sysid);
  }
  if (!why.empty()) {
    spdlog::warn("wal: {} in {} is not taken: {}; kept as {}.rejected", name, incoming().string(), why, name);
    fs::rename(file, fs::path(file.string() + ".rejected"));
    return false;
  }
  const fs::path dest = m_dir / (name + ".zst");
  if (fs::exists(fs::symlink_status(dest, ec))) {
    // The receiver sent it again (it restarts at the slot's position): the same bytes are
    // nothing new; other bytes under an archived name are never taken in its place.
    std::string have;
    try {
      have = decompress(dest, history ? kMaxHistory : kMaxSegment);
    } catch (const Error&) {
    }
    if (have != data) {
      spdlog::warn("wal: {} arrived again with other bytes than the archived copy; kept aside as {}.conflict", name, name);
      fs::rename(file, fs::path(file.string() + ".conflict"));
      return false;
    }
    fs::remove(file);
    return false;
  }
  store(name, data);
  fs::remove(file);
  return true;
}

void WalArchive::store(const std::string& name, const std::string& data) {
  const fs::path dest = m_dir / (name + ".zst");
  // One receiver per cluster folder (wal_stream holds its lock): a .partial here is a killed
  // receiver's.
  std::error_code ec;
  fs::remove(fs::path(dest.string() + ".partial"), ec);
  auto sink = io::AtomicFileSink::try_create(dest);
  if (!sink) throw Error(ErrorCode::io, "cannot create " + dest.string() + ".partial", "check the folder's permissions");
  io::ZstdCompressSink z(*sink, 3, 0);
  z.write(data);
  z.finish();
  sink->commit();
  fsync_dir(m_dir);
}

void WalArchive::adopt(const std::string& name, const std::string& data, bool partial) {
  const bool history = parse_history_name(name).has_value();
  if (!history && !is_segment_name(name)) throw Error(ErrorCode::verification, "not a WAL file name: " + name);
  if (!history) {
    if (std::string why = check_wal_segment(name, data, m_sysid, partial); !why.empty()) {
      throw Error(ErrorCode::verification, "the WAL file " + name + " from the remote is not what its name says: " + why,
                  "the remote's copy was changed; a restore can reach moments before it only");
    }
  }
  make_dirs(m_dir, 0700);
  if (!partial) return store(name, data);
  make_dirs(incoming(), 0700);
  const fs::path dest = incoming() / (name + ".partial");
  write_file_atomic(dest, data);
}

std::vector<std::string> WalArchive::archived_files() const {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(m_dir, ec)) {
    const std::string name = e.path().filename().string();
    if (!name.ends_with(".zst") || !e.is_regular_file(ec) || e.is_symlink(ec)) continue;
    const std::string bare = name.substr(0, name.size() - 4);
    if (is_segment_name(bare) || parse_history_name(bare)) out.push_back(name);
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> WalArchive::remove_before(const std::string& first, bool dry_run) {
  std::vector<std::string> out;
  if (!is_segment_name(first)) return out;
  for (const std::string& file : archived_files()) {
    const std::string bare = file.substr(0, file.size() - 4);
    if (!is_segment_name(bare) || bare.substr(8) >= first.substr(8)) continue;
    if (!dry_run) {
      std::error_code ec;
      fs::remove(m_dir / file, ec);
      if (ec) throw Error(ErrorCode::io, "cannot delete " + (m_dir / file).string() + ": " + ec.message());
    }
    out.push_back(file);
  }
  return out;
}

std::vector<std::string> WalArchive::segments() const {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(m_dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.size() == 28 && name.ends_with(".zst") && is_segment_name(name.substr(0, 24))) out.push_back(name.substr(0, 24));
  }
  // Finished by the receiver and not archived yet (it archives every second; a receiver that
  // was killed leaves them for the next): as much a part of the WAL kept.
  for (const auto& e : fs::directory_iterator(incoming(), ec)) {
    const std::string name = e.path().filename().string();
    if (is_segment_name(name) && e.is_regular_file(ec) && !e.is_symlink(ec)) out.push_back(name);
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

void WalArchive::restore_segment(const std::string& name, const fs::path& to) const {
  if (!is_segment_name(name)) throw Error(ErrorCode::usage, "not a WAL segment name: " + name);
  std::error_code ec;
  const fs::path archived = m_dir / (name + ".zst");
  const bool zst = fs::exists(fs::symlink_status(archived, ec));
  // Streamed to the file (a restore stages hundreds of segments: no copy of each in memory),
  // its first page and length checked at the end.
  Fd out(::open(to.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!out) throw_errno("cannot create " + to.string());
  io::FdSink file(out.get(), to.string());
  HeadSink head(file);
  io::LimitSink limited(head, kMaxSegment, name);
  std::string why;
  try {
    Fd in = open_read(zst ? archived : incoming() / name);
    io::FdSource source(in.get(), name);
    if (zst) {
      io::ZstdDecompressSink z(limited);
      io::copy(source, z);
    } else {
      io::copy(source, limited);
    }
    why = check_wal_segment_head(name, head.head(), head.bytes(), m_sysid);
  } catch (const Error& e) {
    if (e.code() == ErrorCode::interrupted) {
      fs::remove(to, ec);
      throw;
    }
    why = e.what();
  }
  if (!why.empty()) {
    fs::remove(to, ec);
    throw Error(ErrorCode::verification, "the archived WAL segment " + name + " is not what its name says: " + why,
                "the WAL archive in " + m_dir.string() + " was changed; restore to a moment before it");
  }
}

void WalArchive::restore_history(const std::string& name, const fs::path& to) const {
  if (!parse_history_name(name)) throw Error(ErrorCode::usage, "not a timeline history name: " + name);
  write_new(to, decompress(m_dir / (name + ".zst"), kMaxHistory));
}

bool WalArchive::restore_partial(const std::string& name, const fs::path& to) const {
  if (!is_segment_name(name)) throw Error(ErrorCode::usage, "not a WAL segment name: " + name);
  const std::string data = read_bounded(incoming() / (name + ".partial"), kMaxSegment);
  if (std::string why = check_wal_segment(name, data, m_sysid, true); !why.empty()) {
    spdlog::warn("wal: the unfinished segment {} is not used: {}", name, why);
    return false;
  }
  write_new(to, data);
  return true;
}

std::optional<std::string> WalArchive::partial() const {
  std::error_code ec;
  std::optional<std::string> newest;
  for (const auto& e : fs::directory_iterator(incoming(), ec)) {
    const std::string name = e.path().filename().string();
    if (name.size() == 32 && name.ends_with(".partial") && is_segment_name(name.substr(0, 24)) && e.is_regular_file(ec) &&
        (!newest || name.substr(0, 24) > *newest)) {
      newest = name.substr(0, 24);
    }
  }
  return newest;
}

std::vector<std::uint64_t> wal_clusters(const fs::path& backup_dir) {
  std::vector<std::uint64_t> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(backup_dir / "wal", ec)) {
    const std::string name = e.path().filename().string();
    if (name.empty() || name.size() > 20 || !std::all_of(name.begin(), name.end(), ::isdigit)) continue;
    out.push_back(std::stoull(name));
  }
  return out;
}

}  // namespace backupctl
