#include "command/prune.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "catalog/catalog.hpp"
#include "catalog/naming.hpp"
#include "pg/connection.hpp"
#include "pg/swap.hpp"
#include "util/error.hpp"
#include "util/fs.hpp"

namespace backupctl {

namespace fs = std::filesystem;

namespace {

std::string day_of(Clock::time_point t, const char* fmt) {
  std::time_t tt = Clock::to_time_t(t);
  std::tm tm{};
  ::localtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, fmt, &tm);
  return buf;
}

void remove_file(const fs::path& p, bool dry_run) {
  if (dry_run) return;
  std::error_code ec;
  fs::remove(p, ec);
  if (ec) spdlog::warn("prune: cannot remove {}: {}", p.string(), ec.message());
}

}  // namespace

PruneResult prune(const Config& config, bool dry_run, const std::optional<PgTarget>& pg,
                  Clock::time_point now) {
  PruneResult result;
  const auto cutoff = now - std::chrono::hours(24) * config.retention_days;
  const auto future = now + std::chrono::minutes(5);
  std::vector<CatalogEntry> entries = scan_catalog(config.backup_dir);
  std::set<fs::path> remaining;

  for (Kind kind : {Kind::db, Kind::objects, Kind::config}) {
    std::vector<const CatalogEntry*> list;
    for (const auto& e : entries) {
      if (e.kind == kind) list.push_back(&e);
    }
    std::map<const CatalogEntry*, std::string> keep;
    int newest = 0, verified = 0;
    std::set<std::string> days, weeks, months;
    for (const CatalogEntry* e : list) {  // newest first
      bool ok = e->meta && e->meta->verification && e->meta->verification->ok;
      if (e->time > future) {
        keep[e] = "dated in the future";
        continue;
      }
      if (newest < config.keep_min) {
        ++newest;
        keep[e] = fmt::format("one of the {} newest (BACKUP_KEEP_MIN)", config.keep_min);
      }
      if (ok && verified < config.keep_min) {
        ++verified;
        if (!keep.count(e)) keep[e] = verified == 1 ? "the newest that verified" : "one of the newest that verified";
      }
      if (config.keep_daily > 0 && days.size() < static_cast<std::size_t>(config.keep_daily) &&
          days.insert(day_of(e->time, "%Y-%m-%d")).second && !keep.count(e)) {
        keep[e] = "the newest of its day (BACKUP_KEEP_DAILY)";
      }
      if (config.keep_weekly > 0 && weeks.size() < static_cast<std::size_t>(config.keep_weekly) &&
          weeks.insert(day_of(e->time, "%G-W%V")).second && !keep.count(e)) {
        keep[e] = "the newest of its week (BACKUP_KEEP_WEEKLY)";
      }
      if (config.keep_monthly > 0 && months.size() < static_cast<std::size_t>(config.keep_monthly) &&
          months.insert(day_of(e->time, "%Y-%m")).second && !keep.count(e)) {
        keep[e] = "the newest of its month (BACKUP_KEEP_MONTHLY)";
      }
    }
    for (const CatalogEntry* e : list) {
      bool old = e->time < cutoff;
      if (!old) {
        remaining.insert(e->path);
        continue;
      }
      auto k = keep.find(e);
      if (k != keep.end()) {
        result.kept.push_back({e->path.string(), k->second});
        remaining.insert(e->path);
        continue;
      }
      std::string reason = fmt::format("older than BACKUP_RETENTION_DAYS={} ({})", config.retention_days,
                                       iso8601(e->time).substr(0, 10));
      result.deleted.push_back({e->path.string(), reason});
      remove_file(e->path, dry_run);
      fs::path meta = e->path;
      meta += ".meta";
      remove_file(meta, dry_run);
      if (e->meta && e->meta->parts.contains("roles")) {
        fs::path roles = e->path.parent_path() / e->meta->parts["roles"].value("file", "");
        remove_file(roles, dry_run);
      }
    }
  }

  // Leftovers: .partial and temporary files, roles files without their dump.
  std::set<std::string> live_roles;
  for (const auto& e : entries) {
    if (remaining.count(e.path) && e.meta && e.meta->parts.contains("roles")) {
      live_roles.insert(e.meta->parts["roles"].value("file", ""));
    }
  }
  for (const char* kind : {"db", "objects", "config"}) {
    fs::path dir = config.backup_dir / kind;
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) continue;
    for (const auto& de : fs::directory_iterator(dir, ec)) {
      std::string name = de.path().filename().string();
      std::string reason;
      if (name.ends_with(".partial")) {
        reason = "an unfinished file left by an interrupted run";
      } else if (name.find(".tmp.") != std::string::npos) {
        reason = "a temporary file left by an interrupted run";
      } else if (std::string(kind) == "db" && (name.ends_with(".roles.sql") || name.ends_with(".roles.sql.age")) &&
                 !live_roles.count(name)) {
        reason = "a roles file whose dump is gone";
      }
      if (reason.empty()) continue;
      result.deleted.push_back({de.path().string(), reason});
      remove_file(de.path(), dry_run);
    }
  }

  // Set files whose parts are all gone.
  fs::path sets = config.backup_dir / "sets";
  std::error_code ec;
  if (fs::is_directory(sets, ec)) {
    for (const auto& de : fs::directory_iterator(sets, ec)) {
      if (de.path().extension() != ".json") continue;
      try {
        auto j = nlohmann::json::parse(read_file(de.path()));
        bool any = false;
        for (auto it = j["parts"].begin(); it != j["parts"].end(); ++it) {
          std::string file = it.value().value("path", "");
          any = any || (!file.empty() && fs::exists(file, ec) && remaining.count(file));
        }
        if (!any) {
          result.deleted.push_back({de.path().string(), "a set whose backups are all gone"});
          remove_file(de.path(), dry_run);
        }
      } catch (const std::exception& e) {
        spdlog::warn("prune: cannot read {}: {}", de.path().string(), e.what());
      }
    }
  }

  // Databases kept by restores.
  if (pg) {
    try {
      PgConnection conn = PgConnection::open(maintenance_target(*pg));
      auto cutoff_prev = now - std::chrono::hours(24) * config.restore_keep_previous_days;
      for (const auto& p : previous_databases(conn, pg->dbname())) {
        if (p.time >= cutoff_prev) continue;
        result.deleted.push_back({"database " + p.name, fmt::format("older than RESTORE_KEEP_PREVIOUS_DAYS={}",
                                                                    config.restore_keep_previous_days)});
        if (!dry_run) drop_database(conn, p.name);
      }
    } catch (const Error& e) {
      spdlog::warn("prune: cannot check previous databases on the server: {}", e.what());
    }
  }
  for (const auto& a : result.deleted) {
    spdlog::info("prune: {}{} ({})", dry_run ? "would delete " : "deleted ", a.what, a.reason);
  }
  return result;
}

}  // namespace backupctl
