// What `status` and the metrics file say of continuous protection (command/wal_status.hpp).
#include "command/wal_status.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <functional>
#include <optional>

#include "command/backup_base.hpp"
#include "command/verify_wal.hpp"
#include "command/wal_push.hpp"
#include "command/wal_sync_guard.hpp"
#include "pg/connection.hpp"
#include "pg/wal_archive.hpp"
#include "util/error.hpp"
#include "util/fd.hpp"
#include "util/format.hpp"

namespace backupctl {

namespace fs = std::filesystem;

namespace {

// Whether a `wal stream` holds the cluster folder's lock now.
bool receiver_running(const WalArchive& archive) {
  const fs::path path = archive.dir() / ".receiver.lock";
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) return false;
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) == 0) {
    ::flock(fd.get(), LOCK_UN);
    return false;
  }
  return errno == EWOULDBLOCK;
}

// When the newest WAL of the cluster arrived: the newest file's time, archived or in incoming/.
std::optional<Clock::time_point> newest_wal(const WalArchive& archive) {
  std::optional<Clock::time_point> newest;
  std::error_code ec;
  for (const fs::path& dir : {archive.dir(), archive.incoming()}) {
    for (const auto& e : fs::directory_iterator(dir, ec)) {
      const std::string name = e.path().filename().string();
      struct stat st{};
      if (name.starts_with(".") || name.ends_with(".rejected") || name.ends_with(".conflict") ||
          ::lstat(e.path().c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
        continue;
      }
      const Clock::time_point t = Clock::from_time_t(st.st_mtim.tv_sec) +
                                  std::chrono::duration_cast<Clock::duration>(std::chrono::nanoseconds(st.st_mtim.tv_nsec));
      if (!newest || t > *newest) newest = t;
    }
  }
  return newest;
}

// The slot as the server sees it (wal_status, safe_wal_size); null when the server cannot be asked.
nlohmann::json slot_state(const Config& config) {
  try {
    PgConnection conn = PgConnection::open(PgTarget::from_environment());
    PgRows rows = conn.query(
        "SELECT coalesce(wal_status, ''), safe_wal_size, active, current_setting('synchronous_standby_names'), "
        "pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn() ELSE pg_current_wal_lsn() END, restart_lsn)::bigint "
        "FROM pg_replication_slots WHERE slot_name = $1",
        {config.wal_slot});
    if (rows.empty()) return {{"name", config.wal_slot}, {"wal_status", "missing"}};
    nlohmann::json j = {{"name", config.wal_slot}, {"wal_status", rows[0][0].value_or("")}, {"active", rows[0][2].value_or("") == "t"}};
    j["safe_wal_size"] = rows[0][1] ? nlohmann::json(std::stoll(*rows[0][1])) : nlohmann::json(nullptr);
    // How much WAL the server wrote that the receiver has not flushed yet (the RPO in bytes).
    j["behind_bytes"] = rows[0][4] ? nlohmann::json(std::stoll(*rows[0][4])) : nlohmann::json(nullptr);
    // WAL_SYNCHRONOUS: commits wait for the receiver; with no stream on the slot they wait for
    // nothing that will come (a receiver and its guard both killed): the next `wal stream` clears it.
    const std::string sync = rows[0][3].value_or("");
    j["synchronous"] = !sync.empty() && names_the_receiver(sync, config.wal_slot);
    j["commits_held"] = j["synchronous"].get<bool>() && rows[0][2].value_or("") != "t";
    return j;
  } catch (const Error& e) {
    if (e.code() == ErrorCode::interrupted) throw;
    return nullptr;
  } catch (const std::exception&) {
    return nullptr;
  }
}

nlohmann::json time_or_null(const std::optional<Clock::time_point>& t) { return t ? nlohmann::json(iso8601(*t)) : nlohmann::json(nullptr); }

double age_seconds(Clock::time_point now, Clock::time_point t) { return std::chrono::duration<double>(now - t).count(); }

}  // namespace

WalStatus wal_status(const Config& config, Clock::time_point now) {
  WalStatus w;
  nlohmann::json clusters = nlohmann::json::array();
  const std::vector<BaseBackup> bases = list_base_backups(config);
  const nlohmann::json slot = slot_state(config);
  for (std::uint64_t id : wal_clusters(config.backup_dir)) {
    WalArchive archive(config.backup_dir, id);
    const bool running = receiver_running(archive);
    std::optional<Clock::time_point> oldest_base, newest = newest_wal(archive);
    const BaseBackup* newest_base = nullptr;
    for (const auto& b : bases) {
      if (b.sysid != id) continue;
      if (!oldest_base || b.finished < *oldest_base) oldest_base = b.finished;
      if (!newest_base || b.finished > newest_base->finished) newest_base = &b;
    }
    // A gap after the newest base backup ends the window there (a lost slot, WAL removed).
    const std::string gap = newest_base ? wal_reach(archive, *newest_base).gap : "";
    nlohmann::json c = {{"system_identifier", std::to_string(id)},
                        {"receiver", running ? "running" : "not running"},
                        {"newest_wal", time_or_null(newest)},
                        {"newest_wal_age_seconds", newest ? nlohmann::json(age_seconds(now, *newest)) : nlohmann::json(nullptr)},
                        {"window_from", time_or_null(oldest_base)},
                        {"window_to", oldest_base && newest ? time_or_null(newest) : nlohmann::json(nullptr)},
                        {"gap", gap},
                        {"slot", slot}};
    bool failing = !running || !oldest_base || !gap.empty();
    // The slot: `lost` means the server removed WAL we had not received (a gap); `unreserved`
    // that it is about to.
    if (slot.is_object() && slot.value("wal_status", "") == "lost") failing = true;
    if (slot.is_object() && slot.value("commits_held", false)) failing = true;
    if (config.remote) {
      // The RPO off-site: everything received before this moment is on the remote.
      auto rec = read_wal_remote_record(archive);
      const bool ours = rec && rec->remote == config.remote->url;
      const double age = ours ? age_seconds(now, rec->received_by) : -1;
      c["offsite"] = {{"remote", config.remote->url},
                      {"received_by", ours ? time_or_null(rec->received_by) : nlohmann::json(nullptr)},
                      {"age_seconds", ours ? nlohmann::json(age) : nlohmann::json(nullptr)}};
      // Stale after ten push intervals and a minute (a remote down for longer than that).
      c["offsite"]["stale"] = !ours || age > 10.0 * config.wal_push_interval + 60;
      failing = failing || c["offsite"]["stale"].get<bool>();
    }
    w.failing = w.failing || failing;
    clusters.push_back(c);
  }
  if (clusters.empty()) w.failing = true;  // switched on, and nothing received yet
  w.json = {{"clusters", clusters}, {"ok", !w.failing}};
  return w;
}

std::string WalStatus::describe() const {
  if (json["clusters"].empty()) {
    return "  wal      FAIL   BACKUP_WAL=stream and no WAL received yet: start the receiver (`make wal-stream`)\n";
  }
  std::string out;
  for (const auto& c : json["clusters"]) {
    const bool running = c["receiver"] == "running";
    const bool base = !c["window_from"].is_null();
    const std::string gap = c.value("gap", "");
    std::string line = fmt::format("cluster {}: receiver {}", c["system_identifier"].get<std::string>(), c["receiver"].get<std::string>());
    if (!c["newest_wal"].is_null()) line += ", newest WAL " + c["newest_wal"].get<std::string>();
    line += base && !c["window_to"].is_null()
                ? "; restorable from " + c["window_from"].get<std::string>() + " to " + c["window_to"].get<std::string>()
                : "; no base backup yet (`make backup-base`): nothing can be restored to a moment";
    if (!gap.empty()) line += "; GAP at segment " + gap + ": moments after it cannot be restored until the next base backup";
    const auto& slot = c["slot"];
    std::string slot_text;
    if (slot.is_object()) {
      slot_text = "slot " + slot.value("name", "") + " " + slot.value("wal_status", "");
      if (slot.contains("safe_wal_size") && slot["safe_wal_size"].is_number()) {
        slot_text += ", " + human_bytes(static_cast<std::uint64_t>(std::max<std::int64_t>(0, slot["safe_wal_size"].get<std::int64_t>()))) +
                     " before the server drops WAL for it";
      }
      if (slot.value("wal_status", "") == "lost") slot_text += " (the server removed WAL not received: a gap)";
    }
    const bool slot_lost = slot.is_object() && slot.value("wal_status", "") == "lost";
    out += fmt::format("  {:<8} {:<6} {}\n", "wal", running && base && gap.empty() && !slot_lost ? "ok" : "FAIL", line);
    if (!slot_text.empty()) {
      const std::string st = slot.value("wal_status", "");
      out += fmt::format("  {:<8} {:<6} {}\n", "", st == "lost" ? "FAIL" : st == "extended" || st == "unreserved" ? "warn" : "ok", slot_text);
    }
    if (slot.is_object() && slot.value("synchronous", false)) {
      out += slot.value("commits_held", false)
                 ? fmt::format("  {:<8} {:<6} {}\n", "", "FAIL",
                               "commits wait for the receiver (WAL_SYNCHRONOUS) and it is not streaming: start `backupctl wal "
                               "stream` (its guard clears the setting within a second), or ALTER SYSTEM RESET "
                               "synchronous_standby_names; SELECT pg_reload_conf()")
                 : fmt::format("  {:<8} {:<6} {}\n", "", "ok", "commits wait for the receiver's fsync (WAL_SYNCHRONOUS)");
    }
    if (c.contains("offsite")) {
      const auto& o = c["offsite"];
      out += fmt::format("  {:<8} {:<6} {}\n", "", o["stale"].get<bool>() ? "FAIL" : "ok",
                         o["received_by"].is_null() ? "no WAL copied to " + o["remote"].get<std::string>() + " yet"
                                                    : fmt::format("WAL received before {} is on {} ({:.0f} s ago)",
                                                                  o["received_by"].get<std::string>(), o["remote"].get<std::string>(),
                                                                  o["age_seconds"].get<double>()));
    }
  }
  return out;
}

std::string wal_metrics(const Config& config, Clock::time_point now) {
  const WalStatus w = wal_status(config, now);
  std::string out;
  auto family = [&](const char* name, const char* help) { out += fmt::format("# HELP {} {}\n# TYPE {} gauge\n", name, help, name); };
  auto unix_of = [](const nlohmann::json& iso) {
    if (!iso.is_string()) return 0.0;
    auto t = parse_precise_time(iso.get<std::string>());
    return t ? std::chrono::duration<double>(t->time_since_epoch()).count() : 0.0;
  };
  struct Family {
    const char* name;
    const char* help;
    std::function<std::optional<double>(const nlohmann::json&)> value;
  };
  const std::vector<Family> families = {
      {"backupctl_wal_receiver_up", "1 while `backupctl wal stream` receives the cluster's WAL.",
       [](const nlohmann::json& c) { return c["receiver"] == "running" ? 1.0 : 0.0; }},
      {"backupctl_wal_newest_timestamp_seconds", "When the newest WAL arrived in BACKUP_DIR (the RPO here is now minus this).",
       [&](const nlohmann::json& c) { return unix_of(c["newest_wal"]); }},
      {"backupctl_wal_window_start_timestamp_seconds", "The oldest moment a point-in-time restore reaches (0: no base backup).",
       [&](const nlohmann::json& c) { return unix_of(c["window_from"]); }},
      {"backupctl_wal_gap", "1 when WAL is missing after the newest base backup (the window ends at the gap).",
       [](const nlohmann::json& c) { return c.value("gap", "").empty() ? 0.0 : 1.0; }},
      {"backupctl_wal_offsite_timestamp_seconds", "Everything received before this moment is on the remote (the RPO off-site).",
       [&](const nlohmann::json& c) -> std::optional<double> {
         if (!c.contains("offsite")) return std::nullopt;
         return unix_of(c["offsite"]["received_by"]);
       }},
      {"backupctl_wal_slot_lost", "1 when the server removed WAL the slot had not delivered (wal_status lost).",
       [](const nlohmann::json& c) -> std::optional<double> {
         if (!c["slot"].is_object()) return std::nullopt;
         return c["slot"].value("wal_status", "") == "lost" ? 1.0 : 0.0;
       }},
      {"backupctl_wal_slot_behind_bytes", "WAL the server wrote that the receiver has not flushed yet (the RPO, in bytes).",
       [](const nlohmann::json& c) -> std::optional<double> {
         if (!c["slot"].is_object() || !c["slot"].contains("behind_bytes") || !c["slot"]["behind_bytes"].is_number()) return std::nullopt;
         return c["slot"]["behind_bytes"].get<double>();
       }},
      {"backupctl_wal_slot_safe_bytes", "Bytes of WAL the server can still write before it drops WAL for the slot (safe_wal_size).",
       [](const nlohmann::json& c) -> std::optional<double> {
         if (!c["slot"].is_object() || !c["slot"].contains("safe_wal_size") || !c["slot"]["safe_wal_size"].is_number()) return std::nullopt;
         return c["slot"]["safe_wal_size"].get<double>();
       }},
  };
  for (const auto& f : families) {
    family(f.name, f.help);
    for (const auto& c : w.json["clusters"]) {
      if (auto v = f.value(c)) {
        out += fmt::format("{}{{profile=\"{}\",cluster=\"{}\"}} {}\n", f.name, config.profile, c["system_identifier"].get<std::string>(), *v);
      }
    }
  }
  family("backupctl_wal_ok", "1 when continuous protection is whole: receiver up, a base backup, no gap, slot not lost, copies off-site fresh.");
  out += fmt::format("backupctl_wal_ok{{profile=\"{}\"}} {}\n", config.profile, w.failing ? 0 : 1);
  return out;
}

}  // namespace backupctl
