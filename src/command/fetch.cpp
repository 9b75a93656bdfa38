// Backups and sets brought back from the remote into BACKUP_DIR, checked against the remote's
// metas; and a dump read as it downloads (IncomingBackup).
#include "command/remote.hpp"
#include "command/remote_meta.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <chrono>
#include <cerrno>
#include <map>
#include <mutex>
#include <set>

#include "catalog/health.hpp"
#include "catalog/naming.hpp"
#include "command/prune.hpp"
#include "command/remote_owner.hpp"
#include "command/sets.hpp"
#include "command/verify.hpp"
#include "io/atomic_file.hpp"
#include "io/pipeline.hpp"
#include "util/error.hpp"
#include "util/fault.hpp"
#include "util/format.hpp"
#include "util/fs.hpp"
#include "util/json.hpp"
#include "util/process.hpp"
#include "util/signals.hpp"
#include "util/time.hpp"

namespace backupctl {

namespace fs = std::filesystem;

namespace {

struct FetchedFile {
  dev_t dev;
  ino_t ino;
  off_t size;
  struct timespec mtime;
  struct timespec ctime;  // no one can set it back (utimensat sets mtime, not ctime)
  std::string sha256;
};
std::mutex g_fetched_mutex;
std::map<std::string, FetchedFile> g_fetched;

std::optional<struct stat> stat_of(const fs::path& file) {
  struct stat st {};
  if (::stat(file.c_str(), &st) != 0) return std::nullopt;
  return st;
}

}  // namespace

// `written`: the file this run wrote (fstat of its descriptor): if another file is under the name
// now (renamed over it by someone who can write the folder), nothing is remembered.
void remember_written_sha256(const fs::path& file, const std::string& sha256, const struct stat& written) {
  auto st = stat_of(file);
  if (!st || st->st_dev != written.st_dev || st->st_ino != written.st_ino) return;
  std::lock_guard<std::mutex> lock(g_fetched_mutex);
  g_fetched[fs::absolute(file).lexically_normal().string()] = {st->st_dev, st->st_ino, st->st_size, st->st_mtim, st->st_ctim, sha256};
}

void remove_stale_verify_scratch(const fs::path& backup_dir) {
  std::error_code ec;
  for (const auto& de : fs::directory_iterator(backup_dir, ec)) {
    const std::string name = de.path().filename().string();
    const std::string prefix = ".remote-verify.";
    if (!name.starts_with(prefix) || de.is_symlink(ec) || !de.is_directory(ec)) continue;
    // Its run is gone. A live one may be another verify at work; one of another container or
    // machine (whose processes this one cannot see) goes when two days old: no verify takes that.
    const std::string tag = name.substr(prefix.size());
    const auto age = fs::file_time_type::clock::now() - de.last_write_time(ec);
    const bool gone = run_is_here(tag) ? run_is_gone(tag) : !ec && age >= std::chrono::hours(48);
    if (!gone) continue;
    std::error_code rm;
    fs::remove_all(de.path(), rm);
    if (!rm) spdlog::info("removed {}, left by a verify --remote --read-data that did not finish", de.path().string());
  }
}

std::optional<std::string> fetched_sha256(const fs::path& file) {
  auto st = stat_of(file);
  if (!st) return std::nullopt;
  std::lock_guard<std::mutex> lock(g_fetched_mutex);
  auto it = g_fetched.find(fs::absolute(file).lexically_normal().string());
  if (it == g_fetched.end()) return std::nullopt;
  const FetchedFile& f = it->second;
  if (f.dev != st->st_dev || f.ino != st->st_ino || f.size != st->st_size || f.mtime.tv_sec != st->st_mtim.tv_sec ||
      f.mtime.tv_nsec != st->st_mtim.tv_nsec || f.ctime.tv_sec != st->st_ctim.tv_sec ||
      f.ctime.tv_nsec != st->st_ctim.tv_nsec) {
    return std::nullopt;
  }
  return f.sha256;
}

namespace {

// The kind of the remote backup `name` ("db/archive_….dump"); anything else is refused.
Kind remote_backup_kind(const std::string& name) {
  const std::string file = fs::path(name).filename().string();
  auto parsed = parse_backup_filename(file);
  if (!parsed || name != std::string(kind_name(parsed->kind)) + "/" + file) {
    throw Error(ErrorCode::usage, "'" + name + "' is not a backup file name",
                "`backupctl list --remote` shows the backups there, e.g. db/archive_archive_20261201_031500.dump");
  }
  return parsed->kind;
}

Error not_the_remotes(const std::string& name, const std::string& what) {
  return Error(ErrorCode::verification, name + " on the remote " + what,
               "the off-site copy is damaged or was replaced (nothing was restored from it); pick another backup "
               "(`backupctl list --remote`)");
}

}  // namespace

fs::path fetch_backup(const Config& config, Remote& remote, const std::string& name, Progress& progress,
                      FetchCheck check) {
  const std::string file = fs::path(name).filename().string();
  const Kind kind = remote_backup_kind(name);
  Meta meta = remote_meta(remote, name + ".meta");
  const fs::path dir = config.kind_dir(kind_name(kind));
  make_dirs(dir);
  const fs::path local = dir / file;
  // FetchCheck::remote_bytes with a good local copy: the remote's bytes are read and hashed (no
  // more than the meta's size), so what is proven is the off-site copy, not this one.
  auto check_remote = [&](const std::string& rname, const std::string& sha256, std::uint64_t limit) {
    io::NullSink null;
    io::LimitSink limited(null, limit, rname + " on the remote");
    io::Sha256Sink hash(limited);
    progress.start("read " + rname);
    remote.get(rname, hash);
    hash.finish();
    progress.finish();
    if (hash.hex() != sha256) throw not_the_remotes(rname, "does not match the sha256 of its meta");
    spdlog::info("remote: {} matches its meta (read from the remote; the copy here is the same)", rname);
  };
  auto fetch_one = [&](const std::string& rname, const fs::path& to, const std::string& sha256, std::uint64_t limit) {
    std::error_code ec;
    const bool companion = rname != name;
    if (fs::exists(fs::symlink_status(to, ec))) {
      if (companion) {  // a companion already there (checked against the meta by its reader)
        if (check == FetchCheck::remote_bytes) check_remote(rname, sha256, limit);
        return;
      }
      CatalogEntry have = catalog_entry(to);
      if (have.meta && have.meta->sha256 == sha256 && !have.damaged()) {
        if (check == FetchCheck::remote_bytes) check_remote(rname, sha256, limit);
        return;
      }
      // A run killed after the file was committed and before its meta was written: the file is
      // the remote's when its bytes are (the meta below is then written from the remote's).
      // Not remembered as fetched: the restore hashes it again, as any file it did not write.
      if (!have.meta && have.size == meta.size && fs::is_regular_file(fs::symlink_status(to, ec)) &&
          io::digest_file(to.string()).sha256 == sha256) {
        return;
      }
      throw Error(ErrorCode::usage, to.string() + " exists and is not the remote's " + rname,
                  "move it away, then run again");
    }
    auto sink = io::AtomicFileSink::try_create(to);
    if (!sink) throw Error(ErrorCode::usage, to.string() + ".partial exists: another run is fetching it", "wait for it, or remove the .partial");
    io::LimitSink limited(*sink, limit, rname + " on the remote");
    io::Sha256Sink hash(limited);
    progress.start("fetch " + rname);
    remote.get(rname, hash);
    hash.finish();
    progress.finish();
    if (!sha256.empty() && hash.hex() != sha256) throw not_the_remotes(rname, "does not match the sha256 of its meta");
    struct stat written {};
    const bool have_written = ::fstat(sink->fd(), &written) == 0;
    sink->commit();
    if (!companion) {
      if (have_written) remember_written_sha256(to, sha256, written);
      fault_point("remote.fetch-committed");  // the file is there, its meta not yet
    }
  };
  const std::string roles = remote_roles(meta, name);  // checked before anything is written
  std::error_code exists;
  if (!fs::exists(fs::symlink_status(local, exists))) require_room(dir, meta.size + (64u << 10), "fetching " + name);
  // The companion first: once the backup file is there, only its meta is left to write. Its
  // sha256 is checked by its reader (the restore) against the meta, as a local one's.
  if (!roles.empty()) {
    fetch_one(roles, dir / fs::path(roles).filename(), json_string(meta.parts["roles"], "sha256"), roles_limit(meta));
  }
  fetch_one(name, local, meta.sha256, meta.size);
  std::error_code ec;
  if (!fs::exists(local.string() + ".meta", ec)) write_meta(local.string() + ".meta", meta);
  spdlog::info("remote: {} is in {}", name, local.string());
  return local;
}

IncomingBackup::IncomingBackup(const Config& config, std::unique_ptr<Remote> remote, const std::string& name)
    : m_remote(std::move(remote)), m_name(name), m_origin(config.remote->url + "/" + name) {
  const Kind kind = remote_backup_kind(name);
  m_meta = remote_meta(*m_remote, name + ".meta");
  const fs::path dir = config.kind_dir(kind_name(kind));
  make_dirs(dir);  // the spool's place: the backups' file system has room for a backup
  const std::string roles = remote_roles(m_meta, name);  // checked before anything is read
  if (!roles.empty()) {
    // SQL run as a superuser: whole and checked before anyone reads it.
    io::StringSink bytes;
    io::LimitSink limited(bytes, kRemoteRolesLimit, roles + " on the remote");
    io::Sha256Sink hash(limited);
    m_remote->get(roles, hash);
    hash.finish();
    if (hash.hex() != json_string(m_meta.parts["roles"], "sha256")) throw not_the_remotes(roles, "does not match the sha256 in the meta");
    m_roles = io::IncomingFile::create(dir / fs::path(roles).filename(), bytes.data().size(), dir);
    m_roles->append(bytes.data());
    m_roles->complete();
  }
  const std::uint64_t window = io::IncomingFile::window_setting();
  // The spool holds a window of the dump (and a table of contents longer than it, rarely): room
  // for it is checked here, so a full volume is named as the spool's, not found later by the lock
  // file or the journal.
  require_room(dir, std::min<std::uint64_t>(m_meta.size, window + io::IncomingFile::kDropGranule) + (64u << 10),
               "the download spool of " + name);
  m_file = io::IncomingFile::create(dir / fs::path(name).filename(), m_meta.size, dir, window);
  try {
    m_thread = std::thread([this] { download(); });
  } catch (const std::system_error& e) {
    throw Error(ErrorCode::internal, std::string("cannot start the download: ") + e.what(), "the system is out of threads or memory");
  }
}

void IncomingBackup::download() {
  // Once the restore gives up (cancel()), the transfers end within a second, not when the server
  // next sends something: the destructor waits for this thread.
  StopScope stop_when_cancelled(m_file->cancel_flag());
  try {
    const auto start = std::chrono::steady_clock::now();
    io::IncomingSink spool(*m_file);
    io::Sha256Sink hash(spool);
    m_remote->get(m_name, hash);
    hash.finish();
    if (m_file->arrived() != m_meta.size) throw not_the_remotes(m_name, "is shorter than its meta says");
    if (hash.hex() != m_meta.sha256) throw not_the_remotes(m_name, "does not match the sha256 of its meta");
    m_file->complete();
    spdlog::info("remote: {} arrived and matches its meta ({} in {})", m_name, human_bytes(m_meta.size),
                 human_duration(seconds_since(start)));
  } catch (...) {
    m_file->fail(std::current_exception());
  }
}

std::optional<fs::path> IncomingBackup::roles_file() const {
  if (!m_roles) return std::nullopt;
  return m_roles->name();
}

void IncomingBackup::wait() {
  // The end is there only once the download completed: a reader of it rethrows the failure. The
  // read comes first: a reader asking for bytes lets on a download the spool's window holds back,
  // which a join alone would wait for forever.
  std::vector<char> byte(1);
  m_file->read_at(m_file->size(), byte, nullptr);
  if (m_thread.joinable()) m_thread.join();
}

IncomingBackup::~IncomingBackup() {
  if (!m_thread.joinable()) return;
  m_file->cancel();
  m_thread.join();
}

namespace {

// Why the remote set `set` cannot be restored from the remote ("" when it can): a part it names
// whose file or meta is not there (a push that did not finish, or a set file sent before its
// parts by an older version).
std::string missing_on_remote(const Config& config, const nlohmann::json& set, const std::map<std::string, RemoteFile>& listing) {
  for (const char* kind : {"db", "objects", "config"}) {
    auto p = set_part_path(config, set, kind);
    if (!p) continue;
    const std::string name = std::string(kind) + "/" + p->filename().string();
    if (!listing.count(name) || !listing.count(name + ".meta")) return "its " + name + " is not on the remote";
  }
  return "";
}

}  // namespace

std::string fetch_set(const Config& config, Remote& remote, const std::string& id, const SetScope& scope,
                      Progress& progress, const std::function<bool(const std::string&)>& streamed, FetchCheck check) {
  auto listing = remote.list();
  std::vector<std::string> sets;
  for (const auto& [name, f] : listing) {
    if (name.starts_with("sets/") && is_set_name(name.substr(5))) sets.push_back(name);
  }
  std::sort(sets.rbegin(), sets.rend());
  std::vector<std::string> skipped;
  for (const auto& name : sets) {
    io::StringSink sink;
    io::LimitSink limited(sink, kRemoteMetaLimit, name + " on the remote");
    remote.get(name, limited);
    auto j = nlohmann::json::parse(sink.data(), nullptr, false);
    if (j.is_discarded() || !j.is_object()) continue;
    const std::string set_id = json_string(j, "set_id", name);
    if (id != "latest") {
      if (set_id != id) continue;
      if (std::string missing = missing_on_remote(config, j, listing); !missing.empty()) {
        throw Error(ErrorCode::not_found, "set " + id + " on " + config.remote->describe() + " is incomplete: " + missing,
                    "push it again from the host that made it (`backupctl push --set " + id +
                        "`), or pick another set (`backupctl list --remote`)");
      }
    } else {
      std::string why = why_not_latest(j, scope);
      if (why.empty()) why = missing_on_remote(config, j, listing);
      if (!why.empty()) {
        skipped.push_back("set " + set_id + ": " + why);
        continue;
      }
      for (const auto& s : skipped) spdlog::warn("latest on the remote: skipped the newer {}", s);
    }
    for (const char* kind : {"db", "objects", "config"}) {
      auto p = set_part_path(config, j, kind);  // a name the set should not give is refused before anything is fetched
      if (!p) continue;
      const std::string part = std::string(kind) + "/" + p->filename().string();
      if (streamed && streamed(part)) continue;
      fetch_backup(config, remote, part, progress, check);
    }
    const fs::path dir = config.backup_dir / "sets";
    make_dirs(dir);
    write_file_atomic(dir / fs::path(name).filename(), sink.data(), 0600);
    return json_string(j, "set_id");
  }
  if (id != "latest") {
    throw Error(ErrorCode::not_found, "no backup set " + id + " on " + config.remote->describe(),
                "`backupctl list --remote` shows what is there; `backupctl push --all` copies what is here");
  }
  throw Error(ErrorCode::not_found,
              "no complete backup set of database " + scope.database + " on " + config.remote->describe() +
                  skipped_note(skipped),
              "`backupctl list --remote` shows what is there; `backupctl push --all` copies what is here");
}

}  // namespace backupctl
