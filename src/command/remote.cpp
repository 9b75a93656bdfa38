#include "command/remote.hpp"

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

bool is_set_name(const std::string& file) {
  return file.starts_with("set_") && file.ends_with(".json") && file.find('/') == std::string::npos;
}

bool encrypted(const Meta& meta) { return meta.other.contains("encryption"); }

// The companion files a meta names (a dump's roles file) that are beside `file`.
std::vector<fs::path> companions(const fs::path& file, const Meta& meta) {
  std::vector<fs::path> out;
  if (meta.parts.contains("roles")) {
    if (auto roles = meta_part_file(file, meta, "roles")) out.push_back(*roles);
  }
  return out;
}

// A meta read from the remote: input someone else may have written. It must describe the file
// of that name, a backup name of that folder.
// What backupctl writes as a meta or a roles file is far smaller: anything larger is not read
// into memory.
constexpr std::uint64_t kRemoteMetaLimit = 1u << 20;
constexpr std::uint64_t kRemoteRolesLimit = 64u << 20;

// What a roles file may be: the size its meta records, else the limit.
std::uint64_t roles_limit(const Meta& meta) {
  if (meta.parts.contains("roles") && meta.parts["roles"].is_object()) {
    return std::min<std::uint64_t>(json_uint(meta.parts["roles"], "size", kRemoteRolesLimit), kRemoteRolesLimit);
  }
  return kRemoteRolesLimit;
}

Meta remote_meta(Remote& remote, const std::string& meta_name) {
  io::StringSink sink;
  io::LimitSink limited(sink, kRemoteMetaLimit, meta_name + " on the remote");
  remote.get(meta_name, limited);
  auto j = nlohmann::json::parse(sink.data(), nullptr, false);
  if (j.is_discarded()) {
    throw Error(ErrorCode::verification, meta_name + " on the remote is not JSON", "push the backup again");
  }
  Meta meta = Meta::from_json(j, meta_name + " on the remote");
  std::string file = fs::path(meta_name).filename().string();
  file = file.substr(0, file.size() - 5);
  auto parsed = parse_backup_filename(file);
  std::string dir = meta_name.substr(0, meta_name.find('/'));
  if (meta.file != file || !parsed || std::string(kind_name(parsed->kind)) != dir) {
    throw Error(ErrorCode::verification, meta_name + " on the remote does not describe " + dir + "/" + file,
                "the remote's meta was changed; push the backup again");
  }
  return meta;
}

// The roles file a remote meta names, as a remote name beside its dump ("" when none). A name
// that is not a plain file name is reported, never followed.
std::string remote_roles(const Meta& meta, const std::string& backup_name) {
  if (!meta.parts.contains("roles") || !meta.parts["roles"].is_object()) return "";
  std::string roles = json_string(meta.parts["roles"], "file");
  if (roles.empty()) return "";
  std::string name = backup_name.substr(0, backup_name.find('/')) + "/" + roles;
  if (!remote_name_ok(name) || roles.ends_with(".meta") || name == backup_name) {
    throw Error(ErrorCode::verification, "the remote meta of " + backup_name + " names \"" + roles + "\" as its roles file: not followed",
                "the remote's meta was changed; push the backup again");
  }
  return name;
}

// "sha256 ab12cd34…, made on host H at T": whose a backup is, from its meta.
std::string made_by(const Meta& meta) {
  return "sha256 " + meta.sha256.substr(0, 12) + "…, made on host " + (meta.hostname.empty() ? "?" : meta.hostname) + " at " +
         (meta.created_at.empty() ? "?" : meta.created_at);
}

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

std::string copy_etag(const Meta& meta, const std::string& remote) {
  const nlohmann::json* r = copy_record(meta, remote);
  return r ? json_string(*r, "etag") : "";
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

PushReport push(const Config& config, Remote& remote, const std::vector<fs::path>& files,
                const std::vector<fs::path>& set_files, Progress& progress, TakeOver take_over) {
  const RemoteConfig& rc = *config.remote;
  if (config.age_recipients.empty() && !rc.allow_plaintext) {
    throw Error(ErrorCode::usage,
                "refusing to copy unencrypted backups to " + rc.url +
                    ": they hold every secret of the stack (BACKUP_AGE_RECIPIENTS is not set)",
                "set BACKUP_AGE_RECIPIENTS (age-keygen makes a key; keep the identity off this host), or "
                "BACKUP_REMOTE_ALLOW_PLAINTEXT=yes for a remote you trust as much as this host");
  }
  require_remote_owner(config, remote, take_over);
  warn_if_remote_is_attachments(config);
  PushReport report;
  report.remote = rc.url;
  auto listing = remote.list();
  const std::set<fs::path> too_old = beyond_remote_retention(config, Clock::now());
  const std::string owner_id = backup_dir_id(config.backup_dir);
  std::atomic<std::uint64_t> sent{0};
  progress.start("push to " + rc.url);
  auto put = [&](const fs::path& local, const std::string& name, const std::string& sha256) {
    PutResult r = remote.put(local, name, sha256, sent);
    progress.update(sent.load());
    report.bytes += r.sent;
    report.sent.push_back(name);
    spdlog::info("remote: {} {} ({})", r.resumed ? "resumed" : "copied", name, human_bytes(r.sent));
    return r;
  };
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
  std::vector<Copy> copies;
  // Where each backup of this push stands on the remote once it is done.
  enum class State { there, refused, skipped };
  std::map<std::string, State> states;
  // The local meta's record of the copy (added, or taken back when the copy is not there).
  auto record_copy = [&](const fs::path& file, Meta meta, std::optional<nlohmann::json> record) {
    if (!meta.other.contains("remote_copies") || !meta.other["remote_copies"].is_object()) {
      meta.other["remote_copies"] = nlohmann::json::object();
    }
    if (record) {
      meta.other["remote_copies"][rc.url] = *record;
    } else {
      meta.other["remote_copies"].erase(rc.url);
    }
    write_meta(file.string() + ".meta", meta);
  };
  for (const fs::path& file : files) {
    check_interrupted();
    CatalogEntry e = catalog_entry(file);
    const std::string dir(kind_name(e.kind));
    const std::string name = dir + "/" + file.filename().string();
    auto fail = [&](const std::string& why) {
      report.failed.push_back(name + ": " + why);
      states[name] = State::refused;
    };
    if (!e.meta) {
      fail(e.meta_problem);
      continue;
    }
    if (e.damaged()) {
      fail("its size is not its meta's (damaged since the backup)");
      continue;
    }
    if (!encrypted(*e.meta) && !rc.allow_plaintext) {
      fail("not encrypted (made before BACKUP_AGE_RECIPIENTS was set); BACKUP_REMOTE_ALLOW_PLAINTEXT=yes copies it anyway");
      continue;
    }
    auto there = listing.find(name);
    if (listing.count(name + ".meta")) {
      // A backup of this name is there: this one (same sha256), or another never overwritten.
      std::string foreign;
      try {
        Meta theirs = remote_meta(remote, name + ".meta");
        if (theirs.sha256 != e.meta->sha256) foreign = made_by(theirs);
      } catch (const Error& err) {
        if (err.code() == ErrorCode::interrupted) throw;
        foreign = err.what();
      }
      if (!foreign.empty()) {
        fail("the remote holds another backup of this name (" + foreign + "): not overwritten; does another host push to " +
             rc.url + "?");
        continue;
      }
      if (there != listing.end() && there->second.size == e.meta->size) {
        report.present.push_back(name);
        states[name] = State::there;
        // There, but this meta has no record of it (copied under another spelling of the URL,
        // or before its meta here was rewritten): recorded now, so retention and status see it.
        if (!copied_at(e, rc.url)) {
          record_copy(file, *e.meta, nlohmann::json{{"at", iso8601(Clock::now())}, {"size", e.meta->size},
                                                    {"etag", there->second.etag}, {"by", owner_id}});
        }
        continue;
      }
    }
    if (too_old.count(file)) {
      report.skipped.push_back(name + ": older than BACKUP_REMOTE_RETENTION_DAYS=" + std::to_string(rc.retention_days) +
                               " (the remote's retention would delete it)");
      states[name] = State::skipped;
      continue;
    }
    PutResult copied = put(file, name, e.meta->sha256);
    for (const fs::path& c : companions(file, *e.meta)) put(c, dir + "/" + c.filename().string(), "");
    // The copy's record in the local meta, and that meta last: on the remote it marks the
    // backup finished and carries the digests a listing is checked against.
    record_copy(file, *e.meta, nlohmann::json{{"at", iso8601(Clock::now())}, {"size", e.meta->size},
                                              {"etag", copied.etag}, {"by", owner_id}});
    put(file.string() + ".meta", name + ".meta", "");
    copies.push_back({file, name, e.meta->size, copied.etag, e.meta->sha256});
    states[name] = State::there;
  }
  // Read back: each copy this push made is still its own (size, ETag, and the meta's sha256).
  // One that is not is not copied: its record here is taken back (local retention keeps it).
  if (!copies.empty()) {
    fault_point("remote.pushed");
    auto after = remote.list();
    for (const Copy& c : copies) {
      auto f = after.find(c.name);
      std::string why;
      if (f == after.end() || f->second.size != c.size || (!c.etag.empty() && !f->second.etag.empty() && f->second.etag != c.etag)) {
        why = "its bytes there are not the ones sent";
      } else {
        try {
          Meta theirs = remote_meta(remote, c.name + ".meta");
          if (theirs.sha256 != c.sha256) why = "its meta there is another backup's (" + made_by(theirs) + ")";
        } catch (const Error& err) {
          if (err.code() == ErrorCode::interrupted) throw;
          why = err.what();
        }
      }
      if (why.empty()) continue;
      report.failed.push_back(c.name + ": replaced on the remote during this push: " + why +
                              "; does another host push to " + rc.url + "?");
      states[c.name] = State::refused;
      try {
        record_copy(c.local, read_meta(c.local.string() + ".meta"), std::nullopt);
      } catch (const Error& err) {
        spdlog::warn("remote: cannot take back the record of {} in its meta: {}", c.name, err.what());
      }
    }
  }
  // A set goes up only once every backup it names is there, its own (with its meta): a set on the
  // remote is one that `restore all --remote` can restore. One whose backups the remote does not
  // keep (older than its retention) is not sent, and that is no failure.
  for (const fs::path& set : set_files) {
    check_interrupted();
    const std::string name = "sets/" + set.filename().string();
    const std::string mine = read_file(set);
    if (listing.count(name)) {
      io::StringSink theirs;
      io::LimitSink limited(theirs, kRemoteMetaLimit, name + " on the remote");
      remote.get(name, limited);
      if (theirs.data() == mine) {
        report.present.push_back(name);
      } else {
        report.failed.push_back(name + ": the remote holds another set of this name (set " +
                                json_string(nlohmann::json::parse(theirs.data(), nullptr, false), "set_id", "?") +
                                "): not overwritten; does another host push to " + rc.url + "?");
      }
      continue;
    }
    auto j = nlohmann::json::parse(mine, nullptr, false);
    std::string refused, missing;
    try {
      for (const char* kind : {"db", "objects", "config"}) {
        auto p = j.is_object() ? set_part_path(config, j, kind) : std::nullopt;
        if (!p) continue;
        const std::string part = std::string(kind) + "/" + p->filename().string();
        auto st = states.find(part);
        if (st != states.end() ? st->second == State::refused : false) {
          if (refused.empty()) refused = part;
        } else if (st != states.end() ? st->second == State::skipped : !(listing.count(part) && listing.count(part + ".meta"))) {
          if (missing.empty()) missing = part;
        }
      }
    } catch (const Error& err) {
      refused = err.what();
    }
    if (!refused.empty()) {
      report.failed.push_back(name + ": not sent: " + refused + " is not on the remote");
    } else if (!missing.empty()) {
      report.skipped.push_back(name + ": not sent: " + missing + " is not on the remote (not kept there)");
    } else {
      put(set, name, "");
    }
  }
  progress.finish();
  return report;
}

std::string RemoteEntry::state() const {
  if (!meta) return "bad meta";
  if (!file) return "missing";
  if (file->size != meta->size) return "size differs";
  return "ok";
}

std::vector<RemoteEntry> remote_catalog(const Config& config, Remote& remote) {
  auto listing = remote.list();
  std::vector<RemoteEntry> out;
  for (const auto& [name, f] : listing) {
    if (!name.ends_with(".meta") || name.starts_with("sets/")) continue;
    std::string file = name.substr(0, name.size() - 5);
    auto parsed = parse_backup_filename(fs::path(file).filename().string());
    if (!parsed || std::string(kind_name(parsed->kind)) != file.substr(0, file.find('/'))) continue;
    RemoteEntry e;
    e.kind = parsed->kind;
    e.name = file;
    try {
      e.meta = remote_meta(remote, name);
    } catch (const Error& err) {
      if (err.code() == ErrorCode::interrupted) throw;
      e.meta_problem = err.what();
    }
    if (auto it = listing.find(file); it != listing.end()) e.file = it->second;
    auto t = e.meta ? parse_iso8601(e.meta->created_at) : std::nullopt;
    e.time = t ? *t : parse_name_timestamp(parsed->timestamp).value_or(Clock::time_point{});
    out.push_back(std::move(e));
  }
  std::sort(out.begin(), out.end(), [](const RemoteEntry& a, const RemoteEntry& b) { return a.time > b.time; });
  (void)config;
  return out;
}

nlohmann::json remote_json(const std::vector<RemoteEntry>& entries, const std::string& remote) {
  nlohmann::json list = nlohmann::json::array();
  for (const auto& e : entries) {
    list.push_back({{"kind", kind_name(e.kind)},
                    {"name", e.name},
                    {"created_at", e.meta ? e.meta->created_at : ""},
                    {"size", e.file ? e.file->size : 0},
                    {"sha256", e.meta ? e.meta->sha256 : ""},
                    {"set_id", e.meta ? e.meta->set_id : ""},
                    {"encrypted", e.meta && encrypted(*e.meta)},
                    {"state", e.state()}});
  }
  return {{"remote", remote}, {"backups", list}};
}

std::string remote_table(const std::vector<RemoteEntry>& entries) {
  std::string out = fmt::format("{:<8} {:<25} {:>10} {:<12} {:<20} {}\n", "KIND", "CREATED", "SIZE", "COPY", "SET", "FILE");
  for (const auto& e : entries) {
    out += fmt::format("{:<8} {:<25} {:>10} {:<12} {:<20} {}\n", kind_name(e.kind), e.meta ? e.meta->created_at : "?",
                       e.file ? human_bytes(e.file->size) : "-", e.state(), e.meta ? e.meta->set_id : "",
                       e.name);
  }
  return out;
}

std::vector<RemoteVerdict> verify_remote(const Config& config, Remote& remote, bool read_data, Progress& progress,
                                         Journal* journal) {
  const std::string url = config.remote->url;
  // --read-data downloads into a scratch folder under BACKUP_DIR (its disk holds backups; /tmp
  // may be RAM), journaled: a run killed there leaves it to the next command's repair.
  const fs::path scratch_root = config.backup_dir / (".remote-verify." + run_tag());
  Journal::Entry scratch;
  if (read_data) {
    if (!journal) throw Error(ErrorCode::internal, "verify --read-data needs a journal");
    remove_stale_verify_scratch(config.backup_dir);
    scratch = journal->add("temp_dir", {{"path", scratch_root.string()}});
  }
  auto listing = remote.list();
  std::vector<RemoteVerdict> out;
  for (const RemoteEntry& e : remote_catalog(config, remote)) {
    check_interrupted();
    RemoteVerdict v{e.name, false, ""};
    if (e.state() != "ok") {
      v.detail = e.meta ? e.state() + (e.file ? fmt::format(" ({} there, {} in the meta)", e.file->size, e.meta->size) : "")
                        : e.meta_problem;
      out.push_back(v);
      continue;
    }
    // This BACKUP_DIR's own record of the copy, where it has one: a copy another host put under
    // the same name (with a meta of its own) is not this host's backup.
    std::optional<Meta> local;
    std::error_code ec;
    if (const fs::path mine = config.backup_dir / (e.name + ".meta"); fs::is_regular_file(fs::symlink_status(mine, ec))) {
      try {
        local = read_meta(mine);
      } catch (const Error& err) {
        if (err.code() == ErrorCode::interrupted) throw;
      }
    }
    if (local && local->sha256 != e.meta->sha256) {
      v.detail = "not this host's backup: the remote's is " + made_by(*e.meta) + ", this BACKUP_DIR's sha256 " +
                 local->sha256.substr(0, 12) + "… (another host pushes to " + url + "?)";
      out.push_back(v);
      continue;
    }
    std::string etag = copy_etag(local && !copy_etag(*local, url).empty() ? *local : *e.meta, url);
    if (!etag.empty() && !e.file->etag.empty() && etag != e.file->etag) {
      v.detail = "ETag " + e.file->etag + " is not the copy's " + etag + " (changed on the remote)";
      out.push_back(v);
      continue;
    }
    if (!read_data) {
      v.ok = true;
      v.detail = etag.empty() || e.file->etag.empty() ? "size as in the meta" : "size and ETag as when copied";
      out.push_back(v);
      continue;
    }
    // Every byte: downloaded into the scratch folder, checked as `verify` checks a local backup,
    // each file no larger than its meta says (a server sending more fills nothing).
    std::error_code rm;
    fs::remove_all(scratch_root, rm);
    const fs::path dir = scratch_root / kind_name(e.kind);
    make_dirs(dir);
    const std::string file = fs::path(e.name).filename().string();
    try {
      auto fetch = [&](const std::string& name, const fs::path& to, std::uint64_t limit) {
        auto sink = io::AtomicFileSink::try_create(to);
        if (!sink) throw Error(ErrorCode::internal, "scratch file exists: " + to.string());
        io::LimitSink limited(*sink, limit, name + " on the remote");
        remote.get(name, limited);
        sink->commit();
      };
      fetch(e.name, dir / file, e.meta->size);
      fetch(e.name + ".meta", dir / (file + ".meta"), kRemoteMetaLimit);
      if (std::string roles = remote_roles(*e.meta, e.name); !roles.empty() && listing.count(roles)) {
        fetch(roles, dir / fs::path(roles).filename(), roles_limit(*e.meta));
      }
      journal->step("remote-verify.fetched");
      VerifyVerdict lv = verify_backup(config, dir / file, progress);
      v.ok = lv.ok;
      v.detail = lv.detail;
    } catch (const Error& err) {
      if (err.code() == ErrorCode::interrupted) throw;
      v.detail = err.what();
    }
    fs::remove_all(scratch_root, rm);
    out.push_back(v);
  }
  return out;  // `scratch`, unsettled, removes the folder
}

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

// `written`: the file this run wrote (fstat of its descriptor): if another file is under the name
// now (renamed over it by someone who can write the folder), nothing is remembered.
void remember_fetched(const fs::path& file, const std::string& sha256, const struct stat& written) {
  auto st = stat_of(file);
  if (!st || st->st_dev != written.st_dev || st->st_ino != written.st_ino) return;
  std::lock_guard<std::mutex> lock(g_fetched_mutex);
  g_fetched[fs::absolute(file).lexically_normal().string()] = {st->st_dev, st->st_ino, st->st_size, st->st_mtim, st->st_ctim, sha256};
}

}  // namespace

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
      if (have_written) remember_fetched(to, sha256, written);
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
  // Tests shrink the spool's window (BACKUPCTL_SPOOL_WINDOW, bytes) so that a dump of a few MiB
  // goes through every state a GB-sized one does: held back before the load, dropped during it.
  std::uint64_t window = io::IncomingFile::kWindow;
  if (auto w = env_value("BACKUPCTL_SPOOL_WINDOW")) window = std::max<std::uint64_t>(std::strtoull(w->c_str(), nullptr, 10), 1);
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

constexpr auto kUnfinishedCopyKept = std::chrono::hours(24 * 7);

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
  for (const auto& [source, list] : group_by_source(as_local)) {
    auto keep = kept_of_source(c, list, now);
    const bool all_ahead = all_dated_ahead(list, now);
    for (const CatalogEntry* e : list) {
      if (what == PruneWhat::wrong_clock ? !e->wrong_clock(now) || all_ahead : e->time >= cutoff || keep.count(e)) continue;
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
