// What the remote holds, from its metas (list --remote), and verify --remote [--read-data].
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

namespace {
// This BACKUP_DIR's meta of a file named `name`, when it has a readable one.
std::optional<Meta> local_meta(const Config& config, const std::string& name) {
  std::error_code ec;
  const fs::path mine = config.backup_dir / (name + ".meta");
  if (!fs::is_regular_file(fs::symlink_status(mine, ec))) return std::nullopt;
  try {
    return read_meta(mine);
  } catch (const Error& err) {
    if (err.code() == ErrorCode::interrupted) throw;
    return std::nullopt;
  }
}
}  // namespace

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
    const std::optional<Meta> local = local_meta(config, e.name);
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


}  // namespace backupctl
