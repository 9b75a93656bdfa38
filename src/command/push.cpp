// push: copies to the remote what it lacks, checked on arrival and read back; and the remote's
// retention (prune_remote).
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
#include "command/backup_base.hpp"
#include "command/prune.hpp"
#include "command/remote_owner.hpp"
#include "command/sets.hpp"
#include "command/verify.hpp"
#include "command/wal_push.hpp"
#include "io/atomic_file.hpp"
#include "io/pipeline.hpp"
#include "util/env.hpp"
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

// A remote bucket that is one of the attachment buckets on the same server: a later `restore
// objects --mode exact` would delete the copies, and every objects backup would hold them.
void warn_if_remote_is_attachments(const Config& config) {
  const RemoteConfig& rc = *config.remote;
  if (rc.type != RemoteConfig::Type::s3 || config.object_storage != ObjectStorage::minio) return;
  auto host_of = [](std::string url) {
    if (auto p = url.find("://"); p != std::string::npos) url = url.substr(p + 3);
    while (!url.empty() && url.back() == '/') url.pop_back();
    return url;
  };
  if (host_of(rc.endpoint) != host_of(config.minio_endpoint)) return;
  const bool listed = config.minio_buckets.empty() ||
                      std::find(config.minio_buckets.begin(), config.minio_buckets.end(), rc.bucket) != config.minio_buckets.end();
  if (!listed) return;
  spdlog::warn("remote: the bucket {} of BACKUP_REMOTE_URL is also an attachment bucket ({}): every objects backup "
               "holds the copies, and `restore objects --mode exact` would delete them; give the copies a bucket of "
               "their own (and list the attachment buckets in MINIO_BUCKETS)",
               rc.bucket, config.minio_buckets.empty() ? "MINIO_BUCKETS is empty: all buckets" : "MINIO_BUCKETS");
}

}  // namespace

void every_local_backup(const Config& config, std::vector<fs::path>& files, std::vector<fs::path>& set_files) {
  for (const auto& e : scan_catalog(config.backup_dir)) {
    if (e.meta) files.push_back(e.path);
  }
  std::error_code ec;
  fs::path sets = config.backup_dir / "sets";
  if (fs::is_directory(sets, ec)) {
    for (const auto& de : fs::directory_iterator(sets, ec)) {
      if (is_set_name(de.path().filename().string()) && fs::is_regular_file(de.symlink_status(ec))) {
        set_files.push_back(de.path());
      }
    }
  }
  std::sort(set_files.begin(), set_files.end());
}

namespace {

// The local backups the remote's retention would delete as soon as they arrived (older than
// BACKUP_REMOTE_RETENTION_DAYS and not kept by its rules): a push does not send them, or every
// push would send and delete them again.
std::set<fs::path> beyond_remote_retention(const Config& config, Clock::time_point now) {
  Config c = config;
  c.retention_days = config.remote->retention_days;
  const auto cutoff = now - std::chrono::hours(24) * c.retention_days;
  const auto entries = scan_catalog(config.backup_dir);
  std::set<fs::path> out;
  for (const auto& [source, list] : group_by_source(entries)) {
    auto keep = kept_of_source(c, list, now);
    for (const CatalogEntry* e : list) {
      if (e->time < cutoff && !keep.count(e)) out.insert(e->path);
    }
  }
  return out;
}

}  // namespace

namespace {

// One push: each backup in turn (push_backup), the read-back of what it put (read_back), then the
// sets whose backups are all there (push_set).
class PushRun {
 public:
  PushRun(const Config& config, Remote& remote, Progress& progress)
      : m_config(config), m_rc(*config.remote), m_remote(remote), m_progress(progress),
        m_owner_id(backup_dir_id(config.backup_dir)) {}

  PushReport run(const std::vector<fs::path>& files, const std::vector<fs::path>& set_files, TakeOver take_over) {
    if (m_config.age_recipients.empty() && !m_rc.allow_plaintext) {
      throw Error(ErrorCode::usage,
                  "refusing to copy unencrypted backups to " + m_rc.url +
                      ": they hold every secret of the stack (BACKUP_AGE_RECIPIENTS is not set)",
                  "set BACKUP_AGE_RECIPIENTS (age-keygen makes a key; keep the identity off this host), or "
                  "BACKUP_REMOTE_ALLOW_PLAINTEXT=yes for a remote you trust as much as this host");
    }
    require_remote_owner(m_config, m_remote, take_over);
    warn_if_remote_is_attachments(m_config);
    m_report.remote = m_rc.url;
    m_listing = m_remote.list();
    m_too_old = beyond_remote_retention(m_config, Clock::now());
    m_progress.start("push to " + m_rc.url);
    for (const fs::path& file : files) {
      check_interrupted();
      push_backup(file);
    }
    if (!m_copies.empty()) read_back();
    for (const fs::path& set : set_files) {
      check_interrupted();
      push_set(set);
    }
    m_progress.finish();
    return m_report;
  }

 private:
  // What this push put, to be read back before the sets go: a push reports success only for
  // copies that are its own bytes (another host writing to the same names between our check and
  // our write is caught here).
  struct Copy {
    fs::path local;
    std::string name;
    std::uint64_t size;
    std::string etag;
    std::string sha256;
  };
  // Where each backup of this push stands on the remote once it is done.
  enum class State { there, refused, skipped };

  PutResult put(const fs::path& local, const std::string& name, const std::string& sha256) {
    PutResult r = m_remote.put(local, name, sha256, m_sent);
    m_progress.update(m_sent.load());
    m_report.bytes += r.sent;
    m_report.sent.push_back(name);
    spdlog::info("remote: {} {} ({})", r.resumed ? "resumed" : "copied", name, human_bytes(r.sent));
    return r;
  }

  // The local meta's record of the copy (added, or taken back when the copy is not there).
  void record_copy(const fs::path& file, Meta meta, std::optional<nlohmann::json> record) {
    if (!meta.other.contains("remote_copies") || !meta.other["remote_copies"].is_object()) {
      meta.other["remote_copies"] = nlohmann::json::object();
    }
    if (record) {
      meta.other["remote_copies"][m_rc.url] = *record;
    } else {
      meta.other["remote_copies"].erase(m_rc.url);
    }
    write_meta(file.string() + ".meta", meta);
  }

  nlohmann::json copy_record(std::uint64_t size, const std::string& etag) const {
    return {{"at", iso8601(Clock::now())}, {"size", size}, {"etag", etag}, {"by", m_owner_id}};
  }

  void push_backup(const fs::path& file) {
    CatalogEntry e = catalog_entry(file);
    const std::string dir(kind_name(e.kind));
    const std::string name = dir + "/" + file.filename().string();
    auto fail = [&](const std::string& why) {
      m_report.failed.push_back(name + ": " + why);
      m_states[name] = State::refused;
    };
    if (!e.meta) return fail(e.meta_problem);
    if (e.damaged()) return fail("its size is not its meta's (damaged since the backup)");
    if (!encrypted(*e.meta) && !m_rc.allow_plaintext) {
      return fail("not encrypted (made before BACKUP_AGE_RECIPIENTS was set); BACKUP_REMOTE_ALLOW_PLAINTEXT=yes copies it anyway");
    }
    auto there = m_listing.find(name);
    if (m_listing.count(name + ".meta")) {
      // A backup of this name is there: this one (same sha256), or another never overwritten.
      std::string foreign;
      try {
        Meta theirs = remote_meta(m_remote, name + ".meta");
        if (theirs.sha256 != e.meta->sha256) foreign = made_by(theirs);
      } catch (const Error& err) {
        if (err.code() == ErrorCode::interrupted) throw;
        foreign = err.what();
      }
      if (!foreign.empty()) {
        return fail("the remote holds another backup of this name (" + foreign +
                    "): not overwritten; does another host push to " + m_rc.url + "?");
      }
      if (there != m_listing.end() && there->second.size == e.meta->size) {
        m_report.present.push_back(name);
        m_states[name] = State::there;
        // There, but this meta has no record of it (copied under another spelling of the URL,
        // or before its meta here was rewritten): recorded now, so retention and status see it.
        if (!copied_at(e, m_rc.url)) record_copy(file, *e.meta, copy_record(e.meta->size, there->second.etag));
        return;
      }
    }
    if (m_too_old.count(file)) {
      m_report.skipped.push_back(name + ": older than BACKUP_REMOTE_RETENTION_DAYS=" +
                                 std::to_string(m_rc.retention_days) + " (the remote's retention would delete it)");
      m_states[name] = State::skipped;
      return;
    }
    PutResult copied = put(file, name, e.meta->sha256);
    for (const fs::path& c : companions(file, *e.meta)) put(c, dir + "/" + c.filename().string(), "");
    // The copy's record in the local meta, and that meta last: on the remote it marks the backup
    // finished and carries the digests a listing is checked against.
    record_copy(file, *e.meta, copy_record(e.meta->size, copied.etag));
    put(file.string() + ".meta", name + ".meta", "");
    m_copies.push_back({file, name, e.meta->size, copied.etag, e.meta->sha256});
    m_states[name] = State::there;
  }

  // Read back: each copy this push made is still its own (size, ETag, and the meta's sha256).
  // One that is not is not copied: its record here is taken back (local retention keeps it).
  void read_back() {
    fault_point("remote.pushed");
    auto after = m_remote.list();
    for (const Copy& c : m_copies) {
      auto f = after.find(c.name);
      std::string why;
      if (f == after.end() || f->second.size != c.size ||
          (!c.etag.empty() && !f->second.etag.empty() && f->second.etag != c.etag)) {
        why = "its bytes there are not the ones sent";
      } else {
        try {
          Meta theirs = remote_meta(m_remote, c.name + ".meta");
          if (theirs.sha256 != c.sha256) why = "its meta there is another backup's (" + made_by(theirs) + ")";
        } catch (const Error& err) {
          if (err.code() == ErrorCode::interrupted) throw;
          why = err.what();
        }
      }
      if (why.empty()) continue;
      m_report.failed.push_back(c.name + ": replaced on the remote during this push: " + why +
                                "; does another host push to " + m_rc.url + "?");
      m_states[c.name] = State::refused;
      best_effort("take back the record of " + c.name + " in its meta",
                  [&] { record_copy(c.local, read_meta(c.local.string() + ".meta"), std::nullopt); });
    }
  }

  // A set goes up only once every backup it names is there, its own (with its meta): a set on the
  // remote is one that `restore all --remote` can restore. One whose backups the remote does not
  // keep (older than its retention) is not sent, and that is no failure.
  void push_set(const fs::path& set) {
    const std::string name = "sets/" + set.filename().string();
    const std::string mine = read_file(set);
    if (m_listing.count(name)) {
      io::StringSink theirs;
      io::LimitSink limited(theirs, kRemoteMetaLimit, name + " on the remote");
      m_remote.get(name, limited);
      if (theirs.data() == mine) {
        m_report.present.push_back(name);
      } else {
        m_report.failed.push_back(name + ": the remote holds another set of this name (set " +
                                  json_string(nlohmann::json::parse(theirs.data(), nullptr, false), "set_id", "?") +
                                  "): not overwritten; does another host push to " + m_rc.url + "?");
      }
      return;
    }
    auto j = nlohmann::json::parse(mine, nullptr, false);
    std::string refused, missing;
    try {
      for (const char* kind : {"db", "objects", "config"}) {
        auto p = j.is_object() ? set_part_path(m_config, j, kind) : std::nullopt;
        if (!p) continue;
        const std::string part = std::string(kind) + "/" + p->filename().string();
        auto st = m_states.find(part);
        if (st != m_states.end() ? st->second == State::refused : false) {
          if (refused.empty()) refused = part;
        } else if (st != m_states.end() ? st->second == State::skipped
                                        : !(m_listing.count(part) && m_listing.count(part + ".meta"))) {
          if (missing.empty()) missing = part;
        }
      }
    } catch (const Error& err) {
      refused = err.what();
    }
    if (!refused.empty()) {
      m_report.failed.push_back(name + ": not sent: " + refused + " is not on the remote");
    } else if (!missing.empty()) {
      m_report.skipped.push_back(name + ": not sent: " + missing + " is not on the remote (not kept there)");
    } else {
      put(set, name, "");
    }
  }

  const Config& m_config;
  const RemoteConfig& m_rc;
  Remote& m_remote;
  Progress& m_progress;
  const std::string m_owner_id;
  PushReport m_report;
  std::map<std::string, RemoteFile> m_listing;
  std::set<fs::path> m_too_old;
  std::atomic<std::uint64_t> m_sent{0};
  std::vector<Copy> m_copies;
  std::map<std::string, State> m_states;
};

}  // namespace

PushReport push(const Config& config, Remote& remote, const std::vector<fs::path>& files,
                const std::vector<fs::path>& set_files, Progress& progress, TakeOver take_over) {
  return PushRun(config, remote, progress).run(files, set_files, take_over);
}

// An unfinished copy (an open multipart upload, a .partial) of a backup still here is resumed by
// the next push; after a week it is dropped anyway.
constexpr auto kUnfinishedCopyKept = std::chrono::hours(24 * 7);

namespace {

// The first WAL segment of the base backup `e` (a remote's), kept as the cluster's first needed
// when it is older than the one noted. A meta not understood leaves every cluster's WAL alone.
void note_first_wal(const CatalogEntry& e, std::map<std::uint64_t, std::string>& first, bool& unsure) {
  try {
    BaseBackup b = base_backup_of(*e.meta, e.path.filename());
    auto [it, added] = first.try_emplace(b.sysid, b.first_segment());
    if (!added && b.first_segment().substr(8) < it->second.substr(8)) it->second = b.first_segment();
  } catch (const Error& err) {
    spdlog::warn("remote: {}: {}; the WAL there stays", e.path.string(), err.what());
    unsure = true;
  }
}

}  // namespace

std::vector<std::string> prune_remote(const Config& config, Remote& remote, DryRun mode, PruneWhat what) {
  const bool dry_run = mode == DryRun::yes;
  const RemoteConfig& rc = *config.remote;
  if (rc.object_lock_days > 0) {
    spdlog::info("remote: BACKUP_REMOTE_OBJECT_LOCK_DAYS is set: the bucket's lifecycle expires old copies, not prune");
    return {};
  }
  // Deleting is for the remote's writer only: another host's prune would apply its rules to
  // that host's copies (and a prune never claims a remote: only a push does).
  if (!dry_run && !owns_remote(config, remote)) return {};
  Config c = config;
  c.retention_days = rc.retention_days;
  const auto now = Clock::now();
  const auto cutoff = now - std::chrono::hours(24) * rc.retention_days;
  auto entries = remote_catalog(config, remote);
  // As CatalogEntry, for the same rules: a copy counts as verified when its file is there whole.
  std::vector<CatalogEntry> as_local;
  for (const auto& e : entries) {
    if (!e.meta) continue;
    CatalogEntry c2;
    c2.kind = e.kind;
    c2.path = e.name;
    c2.meta = e.meta;
    c2.time = e.time;
    c2.size = e.file ? e.file->size : 0;
    if (e.state() == "ok") c2.meta->verification = Verification{iso8601(now), true, "on the remote"};
    as_local.push_back(std::move(c2));
  }
  std::vector<std::string> doomed;
  std::map<std::uint64_t, std::string> first_wal;  // of the oldest base backup kept, per cluster
  bool wal_unsure = false;
  for (const auto& [source, list] : group_by_source(as_local)) {
    auto keep = kept_of_source(c, list, now);
    const bool all_ahead = all_dated_ahead(list, now);
    for (const CatalogEntry* e : list) {
      if (what == PruneWhat::wrong_clock ? !e->wrong_clock(now) || all_ahead : e->time >= cutoff || keep.count(e)) {
        if (e->kind == Kind::base) note_first_wal(*e, first_wal, wal_unsure);
        continue;
      }
      std::string name = e->path.string();
      std::string dir = name.substr(0, name.find('/'));
      // The meta first: a file without its meta is an unfinished copy, never one that looks whole.
      doomed.push_back(name + ".meta");
      doomed.push_back(name);
      try {
        if (std::string roles = remote_roles(*e->meta, name); !roles.empty()) doomed.push_back(roles);
      } catch (const Error& err) {
        spdlog::warn("remote: {}", err.what());
      }
      spdlog::info("remote: {}{} ({})", dry_run ? "would delete " : "deleting ", name,
                   what == PruneWhat::wrong_clock ? "dated ahead of this host's clock"
                                                  : fmt::format("older than BACKUP_REMOTE_RETENTION_DAYS={}", rc.retention_days));
    }
  }
  if (!dry_run && !doomed.empty()) remote.remove(doomed);
  // The WAL before the oldest base backup kept there (the window shrinks with them, never breaks).
  if (what == PruneWhat::retention && !wal_unsure) {
    for (const auto& name : prune_remote_wal(remote, first_wal, dry_run)) {
      spdlog::info("remote: {}{} (WAL from before the oldest base backup kept)", dry_run ? "would delete " : "deleting ", name);
      doomed.push_back(name);
    }
  }
  // Copies cut short that no push will resume: of a file just pruned here or there, or untouched
  // for a week (a push resumes within a day; the same rule as an S3 lifecycle's
  // AbortIncompleteMultipartUpload).
  if (!dry_run) {
    std::set<std::string> gone(doomed.begin(), doomed.end());
    // The copies are deleted already; unfinished ones that cannot go wait for the next prune.
    best_effort("remote: cannot drop unfinished copies on " + rc.url, [&] {
      for (const auto& name : remote.drop_unfinished([&](const std::string& name, Clock::time_point started) {
             std::error_code ec;
             return gone.count(name) > 0 || started < now - kUnfinishedCopyKept ||
                    !fs::exists(fs::symlink_status(config.backup_dir / name, ec));
           })) {
        spdlog::info("remote: dropped the unfinished copy of {}", name);
      }
    });
  }
  return doomed;
}


}  // namespace backupctl
