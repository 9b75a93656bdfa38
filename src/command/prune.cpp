#include "command/prune.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "catalog/catalog.hpp"
#include "catalog/health.hpp"
#include "catalog/naming.hpp"
#include "command/backup_base.hpp"
#include "command/sets.hpp"
#include "pg/connection.hpp"
#include "pg/swap.hpp"
#include "pg/wal_archive.hpp"
#include "util/error.hpp"
#include "util/fault.hpp"
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

void remove_file(const fs::path& p) {
  std::error_code ec;
  fs::remove(p, ec);
  if (ec) spdlog::warn("prune: cannot remove {}: {}", p.string(), ec.message());
}

std::string source_label(const CatalogEntry& e) {
  std::string s = e.source();
  return std::string(kind_name(e.kind)) + (s.empty() ? "" : " of " + s);
}

}  // namespace

bool all_dated_ahead(const std::vector<const CatalogEntry*>& list, Clock::time_point now) {
  return !list.empty() && std::all_of(list.begin(), list.end(), [&](const CatalogEntry* e) { return e->wrong_clock(now); });
}

// Decides, for the backups of one source (newest first), which are kept and why.
std::map<const CatalogEntry*, std::string> kept_of_source(const Config& config,
                                                          const std::vector<const CatalogEntry*>& list,
                                                          Clock::time_point now) {
  std::map<const CatalogEntry*, std::string> keep;
  int newest = 0, verified = 0;
  std::set<std::string> days, weeks, months;
  for (const CatalogEntry* e : list) {
    // Neither deleted (a clock problem is no reason to) nor counted among the newest (it would
    // take the place of a backup made at the right time).
    if (e->wrong_clock(now)) {
      keep[e] = "dated in the future: made with a wrong clock (`backupctl prune --wrong-clock`)";
      continue;
    }
    if (newest < config.keep_min) {
      ++newest;
      keep[e] = fmt::format("one of the {} newest (BACKUP_KEEP_MIN)", config.keep_min);
    }
    if (e->verified_ok() && verified < config.keep_min) {
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
  return keep;
}

namespace {

// One prune: what goes by the rules (choose), what killed runs left (find_leftovers), the sets
// left without backups (find_dead_sets), then the deletions under one journal entry, and the
// databases kept by restores.
class PruneRun {
 public:
  PruneRun(const Config& config, DryRun mode, Clock::time_point now, PruneWhat what)
      : m_config(config), m_dry_run(mode == DryRun::yes), m_now(now), m_what(what) {}

  PruneResult run(const std::optional<PgTarget>& pg, Journal* journal) {
    choose();
    find_leftovers();
    find_dead_sets();
    delete_files(journal);
    if (m_what == PruneWhat::retention) prune_wal();
    if (pg) drop_previous_databases(*pg);
    for (const auto& a : m_result.deleted) {
      spdlog::info("prune: {}{} ({})", m_dry_run ? "would delete " : "deleted ", a.what, a.reason);
    }
    return m_result;
  }

 private:
  // The rules hold per source: each database, each objects source, the config. The backups of
  // one database never count for another's (its only backup stays, however many newer ones the
  // other has).
  void choose() {
    const auto cutoff = m_now - std::chrono::hours(24) * m_config.retention_days;
    std::vector<CatalogEntry> entries = scan_catalog(m_config.backup_dir);
    for (const auto& [source, list] : group_by_source(entries)) {
      auto keep = kept_of_source(m_config, list, m_now);
      // Every backup of a source ahead of the clock: this host's clock is more likely behind (a
      // dead RTC, no NTP) than every backup wrong; --wrong-clock deletes none of them.
      const bool all_ahead = all_dated_ahead(list, m_now);
      for (const CatalogEntry* e : list) {
        std::optional<std::string> why = m_what == PruneWhat::wrong_clock ? wrong_clock_reason(*e, all_ahead)
                                                                          : retention_reason(*e, keep, cutoff);
        if (!why) {
          m_remaining.insert(e->path);
          if (e->kind == Kind::base && e->meta) note_base_kept(*e);
          continue;
        }
        m_doomed.emplace_back(own_files(*e), *why);
      }
    }
  }

  // Why `e` goes with --wrong-clock; nullopt when it stays.
  std::optional<std::string> wrong_clock_reason(const CatalogEntry& e, bool all_ahead) {
    if (e.wrong_clock(m_now) && !all_ahead) {
      return "dated " + iso8601(e.time) + ", ahead of this host's clock (--wrong-clock)";
    }
    if (all_ahead) {
      m_result.kept.push_back({e.path.string(), "every backup of the " + source_label(e) +
                                                    " is dated ahead: this host's clock is more likely behind; set it right"});
    }
    return std::nullopt;
  }

  // Why `e` goes by the retention rules; nullopt when it stays.
  std::optional<std::string> retention_reason(const CatalogEntry& e, const std::map<const CatalogEntry*, std::string>& keep,
                                              Clock::time_point cutoff) {
    if (e.time >= cutoff) return std::nullopt;
    if (auto k = keep.find(&e); k != keep.end()) {
      m_result.kept.push_back({e.path.string(), k->second + " of the " + source_label(e)});
      return std::nullopt;
    }
    // Not copied off-site yet (the remote fails, or was added since): kept until it is, or until
    // the remote would not keep it either (catalog/health.hpp).
    if (needs_remote_copy(m_config, e, m_now)) {
      m_result.kept.push_back({e.path.string(), "not on " + m_config.remote->url + " yet (`backupctl push --all`)"});
      return std::nullopt;
    }
    return fmt::format("older than BACKUP_RETENTION_DAYS={} ({})", m_config.retention_days, iso8601(e.time).substr(0, 10));
  }

  // Only the backup's own files: the file (a backup name inside BACKUP_DIR/<kind>, as
  // scan_catalog found it), its meta, and the roles file its meta names beside it. A meta naming
  // anything else is reported, not followed.
  static std::vector<fs::path> own_files(const CatalogEntry& e) {
    std::vector<fs::path> files = {e.path, e.path.string() + ".meta"};
    if (e.meta && e.meta->parts.contains("roles")) {
      try {
        if (auto roles = meta_part_file(e.path, *e.meta, "roles")) files.push_back(*roles);
      } catch (const Error& err) {
        spdlog::warn("prune: {}", err.what());
      }
    }
    return files;
  }

  // Leftovers: .partial and temporary files, metas without their backup, roles files without
  // their dump (not those of the backups deleted here: they go with them).
  void find_leftovers() {
    for (auto& [p, why] : interrupted_leftovers(m_config.backup_dir)) {
      bool doomed_already = false;
      for (const auto& [files, reason] : m_doomed) {
        doomed_already = doomed_already || std::find(files.begin(), files.end(), p) != files.end();
      }
      if (!doomed_already) m_leftovers.emplace_back(p, why);
    }
  }

  // Set files whose parts are all gone.
  void find_dead_sets() {
    fs::path sets = m_config.backup_dir / "sets";
    std::error_code ec;
    if (!fs::is_directory(sets, ec)) return;
    for (const auto& de : fs::directory_iterator(sets, ec)) {
      if (de.path().extension() != ".json" || !de.is_regular_file(ec)) continue;
      auto j = nlohmann::json::parse(read_file(de.path()), nullptr, false);
      if (j.is_discarded() || !j.is_object()) {
        spdlog::warn("prune: {} is not a set file; left alone", de.path().string());
        continue;
      }
      bool any = false;
      for (const char* kind : {"db", "objects", "config"}) {
        try {
          auto p = set_part_path(m_config, j, kind);
          any = any || (p && m_remaining.count(*p));
        } catch (const Error& err) {
          spdlog::warn("prune: {}", err.what());
          any = true;  // not understood: not ours to delete
        }
      }
      if (!any) m_dead_sets.push_back(de.path());
    }
  }

  // Every deletion is announced in the journal first: a prune cut short is finished by the repair.
  void delete_files(Journal* journal) {
    Journal::Entry entry;
    if (!m_dry_run && journal && (!m_doomed.empty() || !m_leftovers.empty() || !m_dead_sets.empty())) {
      nlohmann::json files = nlohmann::json::array();
      for (const auto& [group, why] : m_doomed) {
        for (const auto& f : group) files.push_back(fs::relative(f, m_config.backup_dir).string());
      }
      entry = journal->add("prune", {{"files", files}});
    }
    int n = 0;
    for (const auto& [group, why] : m_doomed) {
      m_result.deleted.push_back({group.front().string(), why});
      if (m_dry_run) continue;
      if (n++ == 1) fault_point("prune.deleting");
      // The meta goes last: a backup file without its meta is never left behind looking finished.
      for (std::size_t i = group.size(); i-- > 0;) {
        if (i != 1) remove_file(group[i]);
      }
      remove_file(group[1]);
    }
    for (const auto& [p, why] : m_leftovers) {
      m_result.deleted.push_back({p.string(), why});
      if (!m_dry_run) remove_file(p);
    }
    for (const auto& p : m_dead_sets) {
      m_result.deleted.push_back({p.string(), "a set whose backups are all gone"});
      if (!m_dry_run) remove_file(p);
    }
    entry.settle();
  }

  // The oldest base backup kept of each cluster: the WAL before its start is needed by none.
  void note_base_kept(const CatalogEntry& e) {
    try {
      BaseBackup b = base_backup_of(*e.meta, e.path);
      auto [it, added] = m_first_wal.try_emplace(b.sysid, b.first_segment(), e.path.filename().string());
      if (!added && b.first_segment().substr(8) < it->second.first.substr(8)) it->second = {b.first_segment(), e.path.filename().string()};
    } catch (const Error& err) {
      // Not understood: no WAL of any cluster is removed on its account.
      spdlog::warn("prune: {}: {}; the WAL stays", e.path.string(), err.what());
      m_wal_unsure = true;
    }
  }

  // The WAL before the oldest base backup kept: a restore's window starts at that backup's end,
  // so it shrinks with the base backups and never breaks. A cluster without a base backup kept
  // keeps its WAL.
  void prune_wal() {
    if (m_wal_unsure) return;
    for (const auto& [id, first] : m_first_wal) {
      WalArchive archive(m_config.backup_dir, id);
      for (const auto& f : archive.remove_before(first.first, m_dry_run)) {
        m_result.deleted.push_back({(archive.dir() / f).string(), "WAL from before the oldest base backup kept (" + first.second + ")"});
      }
    }
  }

  // Databases kept by restores (`<db>__pre_restore_*`) older than RESTORE_KEEP_PREVIOUS_DAYS.
  void drop_previous_databases(const PgTarget& pg) {
    try {
      PgConnection conn = PgConnection::open(maintenance_target(pg));
      auto cutoff = m_now - std::chrono::hours(24) * m_config.restore_keep_previous_days;
      for (const auto& p : previous_databases(conn, pg.dbname())) {
        if (p.time >= cutoff) continue;
        m_result.deleted.push_back({"database " + p.name, fmt::format("older than RESTORE_KEEP_PREVIOUS_DAYS={}",
                                                                      m_config.restore_keep_previous_days)});
        if (!m_dry_run) drop_database(conn, p.name);
      }
    } catch (const Error& e) {
      spdlog::warn("prune: cannot check previous databases on the server: {}", e.what());
    }
  }

  const Config& m_config;
  const bool m_dry_run;
  const Clock::time_point m_now;
  const PruneWhat m_what;
  PruneResult m_result;
  std::set<fs::path> m_remaining;
  std::vector<std::pair<std::vector<fs::path>, std::string>> m_doomed;  // files of one backup, why
  std::vector<std::pair<fs::path, std::string>> m_leftovers;
  std::vector<fs::path> m_dead_sets;
  std::map<std::uint64_t, std::pair<std::string, std::string>> m_first_wal;  // cluster: first segment kept, its base backup
  bool m_wal_unsure = false;
};

}  // namespace

PruneResult prune(const Config& config, DryRun mode, const std::optional<PgTarget>& pg,
                  Clock::time_point now, Journal* journal, PruneWhat what) {
  return PruneRun(config, mode, now, what).run(pg, journal);
}

}  // namespace backupctl
