#include "command/wal_push.hpp"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>

#include "command/remote_owner.hpp"
#include "io/age.hpp"
#include "io/atomic_file.hpp"
#include "io/pipeline.hpp"
#include "io/zstd.hpp"
#include "pg/wal.hpp"
#include "util/error.hpp"
#include "util/fd.hpp"
#include "util/fs.hpp"
#include "util/json.hpp"
#include "util/signals.hpp"

namespace backupctl {

namespace fs = std::filesystem;

namespace {

constexpr std::uint64_t kMaxWalFile = 1ull << 30;  // PostgreSQL's largest wal_segment_size

std::string remote_prefix(std::uint64_t sysid) { return "wal/" + std::to_string(sysid) + "/"; }

bool is_hex24(const std::string& s) {
  return s.size() == 24 && std::all_of(s.begin(), s.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F'); });
}

// "<segment>.zst[.age]" -> segment; "" for other names.
std::string segment_of_remote(const std::string& file) {
  std::string f = file.ends_with(".age") ? file.substr(0, file.size() - 4) : file;
  if (f.size() == 28 && f.ends_with(".zst") && is_hex24(f.substr(0, 24))) return f.substr(0, 24);
  return "";
}

// "<segment>.partial.zst[.age]" -> segment; "" for other names.
std::string partial_of_remote(const std::string& file) {
  std::string f = file.ends_with(".age") ? file.substr(0, file.size() - 4) : file;
  if (f.size() == 36 && f.ends_with(".partial.zst") && is_hex24(f.substr(0, 24))) return f.substr(0, 24);
  return "";
}

// The bytes of `file` as they go to the remote: the file itself, or its encryption in the spool
// folder (removed by the caller).
fs::path outgoing(const Config& config, const fs::path& file, const fs::path& spool) {
  if (config.age_recipients.empty()) return file;
  make_dirs(spool, 0700);
  const fs::path out = spool / (file.filename().string() + ".age");
  std::error_code ec;
  fs::remove(out, ec);
  fs::remove(fs::path(out.string() + ".partial"), ec);
  auto sink = io::AtomicFileSink::try_create(out);
  if (!sink) throw Error(ErrorCode::io, "cannot create " + out.string() + ".partial", "check the folder's permissions");
  {
    io::AgeEncryptSink age(*sink, config.age_recipients);
    Fd fd = open_read(file);
    io::FdSource in(fd.get(), file.string());
    io::copy(in, age);  // finishes the sinks
  }
  sink->commit();
  return out;
}

// The spool folders (.push-<pid>, .fetch-<pid>) of processes that are gone: a pusher or a fetch
// killed while it held an encrypted copy. Each process has its own (the receiver and a `push`
// may copy the same segment at once).
void remove_dead_spools(const fs::path& dir) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    std::string pid;
    if (name.starts_with(".push-")) pid = name.substr(6);
    if (name.starts_with(".fetch-")) pid = name.substr(7);
    if (pid.empty() || pid.size() > 9 || pid.find_first_not_of("0123456789") != std::string::npos) continue;
    if (::kill(static_cast<pid_t>(std::stol(pid)), 0) == 0 || errno != ESRCH) continue;
    fs::remove_all(e.path(), ec);
  }
}

}  // namespace

std::string remote_wal_name(const Config& config, std::uint64_t sysid, const std::string& file) {
  return remote_prefix(sysid) + file + (config.age_recipients.empty() ? "" : ".age");
}

std::optional<std::string> wal_push_refused(const Config& config) {
  if (!config.remote) return "no BACKUP_REMOTE_URL";
  if (config.age_recipients.empty() && !config.remote->allow_plaintext) {
    return "the WAL holds every row written: it goes off-site encrypted (set BACKUP_AGE_RECIPIENTS), or "
           "BACKUP_REMOTE_ALLOW_PLAINTEXT=yes for a remote you trust as much as this host";
  }
  return std::nullopt;
}

WalPusher::WalPusher(const Config& config, Remote& remote, const WalArchive& archive)
    : m_config(config), m_remote(remote), m_archive(archive),
      m_spool(archive.dir() / (".push-" + std::to_string(::getpid()))) {
  remove_dead_spools(archive.dir());
}

WalPusher::~WalPusher() {
  std::error_code ec;
  fs::remove_all(m_spool, ec);
}

void WalPusher::put(const fs::path& local, const std::string& remote_name) {
  const fs::path out = outgoing(m_config, local, m_spool);
  std::atomic<std::uint64_t> sent{0};
  std::error_code ec;
  try {
    m_remote.put(out, remote_name, io::digest_file(out.string()).sha256, sent);
  } catch (...) {
    if (out != local) fs::remove(out, ec);  // never instead of the error that matters
    throw;
  }
  if (out != local) fs::remove(out, ec);
}

void WalPusher::claim() {
  const auto now = std::chrono::steady_clock::now();
  if (m_claimed && now - *m_claimed < std::chrono::minutes(5)) return;
  require_remote_owner(m_config, m_remote);
  m_claimed = now;
}

std::vector<std::string> WalPusher::push_finished() {
  claim();
  const std::string prefix = remote_prefix(m_archive.system_identifier());
  if (!m_there) {
    m_there.emplace();
    for (const auto& [name, file] : m_remote.list()) {
      if (name.starts_with(prefix)) m_there->insert(name);
    }
  }
  std::vector<std::string> sent;
  for (const std::string& file : m_archive.archived_files()) {
    check_interrupted();
    const std::string name = remote_wal_name(m_config, m_archive.system_identifier(), file);
    if (m_there->count(name)) continue;
    put(m_archive.dir() / file, name);
    m_there->insert(name);
    sent.push_back(name);
  }
  return sent;
}

bool WalPusher::push_partial() {
  const std::optional<std::string> partial = m_archive.partial();
  if (!partial) return false;
  claim();
  const fs::path file = m_archive.incoming() / (*partial + ".partial");
  struct stat st{};
  if (::lstat(file.c_str(), &st) != 0 || !S_ISREG(st.st_mode) || static_cast<std::uint64_t>(st.st_size) > kMaxWalFile) {
    return false;
  }
  const std::string stamp = *partial + " " + std::to_string(st.st_size) + " " + std::to_string(st.st_mtim.tv_sec) + "." +
                            std::to_string(st.st_mtim.tv_nsec);
  if (stamp == m_partial_sent) return false;
  const std::uint64_t id = m_archive.system_identifier();
  if (m_there && m_there->count(remote_wal_name(m_config, id, *partial + ".zst"))) return false;

  // zstd of what has arrived so far (the rest of a segment is zeros: it compresses to little).
  make_dirs(m_spool, 0700);
  const fs::path z = m_spool / (*partial + ".partial.zst");
  {
    std::error_code ec;
    fs::remove(fs::path(z.string() + ".partial"), ec);
    auto sink = io::AtomicFileSink::try_create(z);
    if (!sink) throw Error(ErrorCode::io, "cannot create " + z.string() + ".partial", "check the folder's permissions");
    io::ZstdCompressSink zs(*sink, 1, 0);
    Fd fd = open_read(file);
    io::FdSource in(fd.get(), file.string());
    io::copy(in, zs);
    sink->commit();
  }
  std::error_code ec;
  try {
    put(z, remote_wal_name(m_config, id, z.filename().string()));
  } catch (...) {
    fs::remove(z, ec);
    throw;
  }
  fs::remove(z, ec);
  m_partial_sent = stamp;
  // The remote's older unfinished segments: finished since (their segment went up before). Known
  // from the first listing and from what this pusher sent.
  const std::string name = remote_wal_name(m_config, id, z.filename().string());
  if (m_there) {
    std::vector<std::string> old;
    for (const auto& there : *m_there) {
      const std::string seg = partial_of_remote(there.substr(remote_prefix(id).size()));
      if (!seg.empty() && seg < *partial) old.push_back(there);
    }
    if (!old.empty()) m_remote.remove(old);
    for (const auto& o : old) m_there->erase(o);
    m_there->insert(name);
  }
  return true;
}

std::vector<std::string> WalPusher::push_all() {
  const Clock::time_point started = Clock::now();
  std::vector<std::string> sent = push_finished();
  if (push_partial()) sent.push_back(remote_wal_name(m_config, m_archive.system_identifier(), *m_archive.partial() + ".partial.zst"));
  record(started);
  return sent;
}

// Everything received before `received_by` is on the remote now. Only ever moves forward (the
// receiver and a `push` may both write it).
void WalPusher::record(Clock::time_point received_by) {
  if (auto r = read_wal_remote_record(m_archive); r && r->remote == m_config.remote->url && r->received_by >= received_by) {
    return;
  }
  const double unix = std::chrono::duration<double>(received_by.time_since_epoch()).count();
  nlohmann::json j = {{"remote", m_config.remote->url}, {"received_by", iso8601(received_by)}, {"received_by_unix", unix}};
  write_file_atomic(m_archive.dir() / ".remote.json", j.dump(2) + "\n");
}

std::optional<WalRemoteRecord> read_wal_remote_record(const WalArchive& archive) {
  try {
    const fs::path path = archive.dir() / ".remote.json";
    std::error_code ec;
    if (!fs::exists(path, ec) || fs::file_size(path, ec) > 4096) return std::nullopt;
    const nlohmann::json j = nlohmann::json::parse(read_file(path));
    const double unix = j.at("received_by_unix").get<double>();
    if (!(unix > 0 && unix < 7.3e9)) return std::nullopt;  // 1970 to 2200, as dates are read elsewhere
    return WalRemoteRecord{json_string(j, "remote"),
                           Clock::time_point(std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(unix)))};
  } catch (const std::exception&) {
    return std::nullopt;  // unreadable: as if nothing had been pushed
  }
}

std::vector<std::string> push_wal(const Config& config, Remote& remote, std::vector<std::string>& failed) {
  std::vector<std::string> sent;
  if (auto why = wal_push_refused(config)) {
    if (!wal_clusters(config.backup_dir).empty()) failed.push_back("wal/: " + *why);
    return sent;
  }
  for (std::uint64_t id : wal_clusters(config.backup_dir)) {
    WalArchive archive(config.backup_dir, id);
    WalPusher pusher(config, remote, archive);
    try {
      for (auto& n : pusher.push_all()) sent.push_back(n);
    } catch (const Error& e) {
      if (e.code() == ErrorCode::interrupted) throw;
      failed.push_back(remote_prefix(id) + ": " + e.what());
    }
  }
  return sent;
}

namespace {

// One WAL file of the remote, its plaintext: downloaded into the spool folder (no larger than a
// WAL file can be), decrypted when it is, and decompressed (no larger than a segment).
std::string fetch_one(const Config& config, Remote& remote, const std::string& name, const fs::path& spool) {
  make_dirs(spool, 0700);
  const fs::path tmp = spool / name.substr(name.rfind('/') + 1);
  std::error_code ec;
  fs::remove(tmp, ec);
  fs::remove(fs::path(tmp.string() + ".partial"), ec);
  {
    auto sink = io::AtomicFileSink::try_create(tmp);
    if (!sink) throw Error(ErrorCode::io, "cannot create " + tmp.string() + ".partial", "check the folder's permissions");
    io::LimitSink limited(*sink, kMaxWalFile + (1u << 20), name);
    remote.get(name, limited);
    limited.finish();
    sink->commit();
  }
  std::string data;
  try {
    auto source = io::open_plaintext(tmp, config.age_identity);
    io::StringSink out;
    io::LimitSink limited(out, kMaxWalFile, name);
    io::ZstdDecompressSink z(limited);
    io::copy(*source, z);
    data = out.take();
  } catch (...) {
    fs::remove(tmp, ec);
    throw;
  }
  fs::remove(tmp, ec);
  return data;
}

}  // namespace

std::size_t fetch_wal(const Config& config, Remote& remote, std::uint64_t sysid, const std::string& from,
                      Progress& progress) {
  WalArchive archive(config.backup_dir, sysid);
  remove_dead_spools(archive.dir());
  const std::string prefix = remote_prefix(sysid);
  std::set<std::string> have;
  for (const auto& f : archive.archived_files()) have.insert(f.substr(0, f.size() - 4));
  for (const auto& s : archive.segments()) have.insert(s);
  std::vector<std::pair<std::string, std::string>> wanted;  // (remote name, WAL file name)
  std::string newest_partial, newest_partial_name, newest_segment;
  for (const auto& [name, f] : remote.list()) {
    if (!name.starts_with(prefix)) continue;
    const std::string file = name.substr(prefix.size());
    const std::string bare = file.ends_with(".age") ? file.substr(0, file.size() - 4) : file;
    if (std::string seg = segment_of_remote(file); !seg.empty()) {
      newest_segment = std::max(newest_segment, seg);
      if (seg.substr(8) >= from.substr(8) && !have.count(seg)) wanted.emplace_back(name, seg);
    } else if (std::string p = partial_of_remote(file); !p.empty()) {
      if (p > newest_partial) {
        newest_partial = p;
        newest_partial_name = name;  // stored encrypted or not, as it was pushed
      }
    } else if (bare.ends_with(".zst") && parse_history_name(bare.substr(0, bare.size() - 4)) &&
               !have.count(bare.substr(0, bare.size() - 4))) {
      wanted.emplace_back(name, bare.substr(0, bare.size() - 4));
    }
  }
  const fs::path spool = archive.dir() / (".fetch-" + std::to_string(::getpid()));
  progress.start("WAL from " + config.remote->url);
  std::size_t n = 0;
  for (const auto& [name, wal] : wanted) {
    check_interrupted();
    archive.adopt(wal, fetch_one(config, remote, name, spool));
    progress.update(++n);
  }
  // The unfinished segment: when the remote's is newer than anything here.
  const std::optional<std::string> local_partial = archive.partial();
  if (!newest_partial.empty() && newest_partial > newest_segment && !have.count(newest_partial) &&
      (!local_partial || *local_partial < newest_partial)) {
    archive.adopt(newest_partial, fetch_one(config, remote, newest_partial_name, spool), true);
    ++n;
  }
  progress.finish();
  std::error_code ec;
  fs::remove_all(spool, ec);
  return n;
}

std::vector<std::string> prune_remote_wal(Remote& remote, const std::map<std::uint64_t, std::string>& first_kept,
                                          bool dry_run) {
  std::vector<std::string> doomed;
  for (const auto& [name, f] : remote.list()) {
    if (!name.starts_with("wal/")) continue;
    const auto slash = name.find('/', 4);
    if (slash == std::string::npos) continue;
    std::uint64_t id = 0;
    try {
      id = std::stoull(name.substr(4, slash - 4));
    } catch (const std::exception&) {
      continue;
    }
    auto first = first_kept.find(id);
    if (first == first_kept.end()) continue;  // no base backup of it kept: its WAL stays
    const std::string file = name.substr(slash + 1);
    std::string seg = segment_of_remote(file);
    if (seg.empty()) seg = partial_of_remote(file);
    if (!seg.empty() && seg.substr(8) < first->second.substr(8)) doomed.push_back(name);
  }
  if (!dry_run && !doomed.empty()) remote.remove(doomed);
  return doomed;
}

}  // namespace backupctl
