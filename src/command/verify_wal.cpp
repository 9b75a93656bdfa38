#include "command/verify_wal.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <set>

#include "pg/wal.hpp"
#include "util/error.hpp"
#include "util/signals.hpp"

namespace backupctl {

namespace fs = std::filesystem;

WalReach wal_reach(const WalArchive& archive, const BaseBackup& base) {
  WalReach r;
  std::set<std::string> kept;
  for (auto& s : archive.segments()) kept.insert(s);
  // The segments up to the backup's end are in its tar (-X fetch): missing here, not a gap.
  const WalSegmentName first = segment_of(base.start, base.timeline, base.segment_size);
  const std::uint64_t last_in_tar = base.stop / base.segment_size;
  std::uint64_t segno = first.segno;
  for (;; ++segno) {
    const std::string name = WalSegmentName{base.timeline, segno}.str(base.segment_size);
    if (kept.count(name)) {
      r.segments.push_back(name);
    } else if (segno > last_in_tar) {
      break;
    }
  }
  const std::string next = WalSegmentName{base.timeline, segno}.str(base.segment_size);
  if (auto p = archive.partial(); p && *p == next) r.partial = p;
  for (const auto& s : kept) {
    auto parsed = parse_wal_segment_name(s, base.segment_size);
    if (parsed && parsed->timeline == base.timeline && parsed->segno > segno && !r.partial) {
      r.gap = next;
      break;
    }
  }
  return r;
}

namespace {

// The files of the cluster's folders a receiver refused: named, never used.
std::vector<std::string> refused_files(const WalArchive& archive) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const fs::path& dir : {archive.dir(), archive.incoming()}) {
    for (const auto& e : fs::directory_iterator(dir, ec)) {
      const std::string name = e.path().filename().string();
      if (name.ends_with(".rejected") || name.ends_with(".conflict")) out.push_back(e.path().string());
    }
  }
  return out;
}

}  // namespace

WalVerifyReport verify_wal(const Config& config, bool read) {
  WalVerifyReport r;
  std::map<std::uint64_t, std::vector<BaseBackup>> by_cluster;
  for (auto& b : list_base_backups(config)) by_cluster[b.sysid].push_back(std::move(b));
  for (std::uint64_t id : wal_clusters(config.backup_dir)) by_cluster[id];
  nlohmann::json clusters = nlohmann::json::array();
  for (auto& [id, bases] : by_cluster) {
    std::sort(bases.begin(), bases.end(), [](const BaseBackup& a, const BaseBackup& b) { return a.start < b.start; });
    WalArchive archive(config.backup_dir, id);
    nlohmann::json c = {{"system_identifier", std::to_string(id)}, {"bases", nlohmann::json::array()}};
    r.text += fmt::format("cluster {}:\n", id);
    const std::vector<std::string> all = archive.segments();
    std::set<std::uint32_t> timelines;
    std::size_t bad = 0;
    if (read) {
      const fs::path scratch = archive.dir() / (".verify-" + std::to_string(::getpid()));
      for (const auto& s : all) {
        check_interrupted();
        std::error_code ec;
        fs::remove(scratch, ec);
        try {
          archive.restore_segment(s, scratch);
        } catch (const Error& e) {
          if (e.code() == ErrorCode::interrupted) throw;
          r.text += fmt::format("  FAIL   {}: {}\n", s, e.what());
          ++bad;
        }
        fs::remove(scratch, ec);
      }
    }
    for (const auto& s : all) {
      if (s.size() == 24) timelines.insert(static_cast<std::uint32_t>(std::stoul(s.substr(0, 8), nullptr, 16)));
    }
    if (bases.empty()) {
      r.text += "  FAIL   no base backup: the WAL kept cannot be replayed from anything (`backupctl backup base`)\n";
      r.ok = false;
    }
    for (std::size_t i = 0; i < bases.size(); ++i) {
      const BaseBackup& b = bases[i];
      timelines.erase(b.timeline);
      const WalReach reach = wal_reach(archive, b);
      const std::string last = reach.partial ? *reach.partial + " (unfinished)"
                               : reach.segments.empty() ? "its own end" : reach.segments.back();
      nlohmann::json j = {{"base", b.file.filename().string()}, {"first", b.first_segment()}, {"last", last},
                          {"segments", reach.segments.size()}, {"gap", reach.gap}};
      c["bases"].push_back(j);
      const bool newest = i + 1 == bases.size();
      if (reach.gap.empty()) {
        r.text += fmt::format("  ok     {}: WAL continuous from {} to {} ({} segments)\n", b.file.filename().string(),
                              b.first_segment(), last, reach.segments.size());
      } else {
        // A gap behind a newer base backup cuts moments out of the window; after the newest, it
        // ends the window.
        r.text += fmt::format("  {}   {}: WAL continuous to {} only: segment {} is missing{}\n", newest ? "FAIL" : "gap ",
                              b.file.filename().string(), last, reach.gap,
                              newest ? " (take a base backup now: `backupctl backup base`)"
                                     : "; moments from there to the next base backup's end cannot be restored");
        r.ok = r.ok && !newest;
      }
    }
    for (auto tli : timelines) {
      r.text += fmt::format("  note   WAL of timeline {} that no base backup kept is on (not replayed from these)\n", tli);
    }
    for (const auto& f : refused_files(archive)) r.text += fmt::format("  note   refused by the receiver, never used: {}\n", f);
    if (bad) r.ok = false;
    c["unreadable"] = bad;
    clusters.push_back(c);
  }
  if (clusters.empty()) {
    r.text = "no WAL and no base backup in " + config.backup_dir.string() + " (BACKUP_WAL=stream, `make wal-stream`)\n";
    r.ok = false;
  }
  r.json = {{"ok", r.ok}, {"clusters", clusters}};
  return r;
}

}  // namespace backupctl
