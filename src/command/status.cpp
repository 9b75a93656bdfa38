#include "command/status.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "catalog/catalog.hpp"
#include "catalog/health.hpp"
#include "command/wal_status.hpp"
#include "monitor/state.hpp"
#include "util/error.hpp"
#include "util/format.hpp"
#include "util/json.hpp"
#include "util/time.hpp"

namespace backupctl {

StatusReport backup_status(const Config& config, Clock::time_point now) {
  StatusReport r;
  RunState state = RunState::load(config.backup_dir);
  auto entries = scan_catalog(config.backup_dir);
  const CatalogHealth health = catalog_health(config, entries, now);
  nlohmann::json kinds = nlohmann::json::object();
  for (const auto& [kind, h] : health.kinds) {
    // Base backups are part of continuous protection: held to BACKUP_BASE_EVERY_HOURS while it
    // is on, not counted once it is off.
    if (kind == Kind::base && !config.wal_stream) continue;
    const double max_age = kind == Kind::base ? std::max<double>(config.max_age_hours, config.base_every_hours + 2)
                                              : config.max_age_hours;
    std::string name(kind_name(kind));
    nlohmann::json k = {{"backups", h.count}, {"newest", nullptr}, {"stale", true}};
    if (const CatalogEntry* e = h.newest_good) {
      double age_h = std::chrono::duration<double>(now - e->time).count() / 3600.0;
      k["newest"] = {{"file", e->path.string()}, {"created_at", e->meta->created_at}, {"age_hours", age_h},
                     {"size", e->size}, {"verified", e->verify_state()}};
      k["stale"] = age_h > max_age;
    }
    if (state.json().contains("last_failure") && state.json()["last_failure"].contains(name)) {
      k["last_failure"] = state.json()["last_failure"][name];
    }
    r.stale = r.stale || k["stale"].get<bool>();
    kinds[name] = k;
  }
  // Backups dated ahead of this host's clock were made with a wrong clock: they are not the
  // newest (above), not `latest`, and status fails on them until they are dealt with.
  nlohmann::json wrong_clock = nlohmann::json::array();
  for (const CatalogEntry* e : health.wrong_clock) {
    wrong_clock.push_back({{"file", e->path.string()},
                           {"created_at", e->meta ? e->meta->created_at : iso8601(e->time)},
                           {"ahead_hours", std::chrono::duration<double>(e->time - now).count() / 3600.0}});
  }
  r.wrong_clock = !wrong_clock.empty();
  // The off-site copy: its newest copy (recorded in the local metas as each arrived, checked by
  // the remote against its digests) is held to BACKUP_MAX_AGE_HOURS like the backups: copies that
  // stop arriving make status stale.
  nlohmann::json remote = nullptr;
  if (config.remote) {
    const std::string& url = config.remote->url;
    nlohmann::json newest = nullptr;
    if (health.newest_copy) {
      newest = {{"file", health.newest_copy->path.string()}, {"copied_at", iso8601(health.newest_copy_at)},
                {"age_hours", std::chrono::duration<double>(now - health.newest_copy_at).count() / 3600.0}};
    }
    bool stale = newest.is_null() || newest["age_hours"].get<double>() > config.max_age_hours;
    nlohmann::json waiting = nlohmann::json::array();
    for (const CatalogEntry* e : health.not_on_remote) waiting.push_back(e->path.string());
    remote = {{"url", url}, {"newest_copy", newest}, {"stale", stale}, {"not_copied", waiting}};
    auto from_state = [&](const char* section, const char* kind) {
      const auto& j = state.json();
      return j.is_object() && j.contains(section) && j[section].contains(kind) ? j[section][kind] : nlohmann::json(nullptr);
    };
    remote["last_push"] = from_state("last_success", "remote");
    remote["last_failure"] = from_state("last_failure", "remote");
    remote["last_verify"] = from_state("last_success", "remote_verify_data");
    remote["last_rehearsal"] = from_state("last_success", "remote_rehearsal");
    remote["last_rehearsal_failure"] = from_state("last_failure", "remote_rehearsal");
    r.stale = r.stale || stale;
  }
  // Continuous protection: a receiver that stopped or no base backup is as stale as an old backup.
  nlohmann::json wal = nullptr;
  if (config.wal_stream) {
    WalStatus w = wal_status(config, now);
    wal = w.json;
    r.stale = r.stale || w.failing;
    r.wal_text = w.describe();
  }
  r.json = {{"ok", !r.stale && !r.wrong_clock},
            {"remote", remote},
            {"wal", wal},
            {"max_age_hours", config.max_age_hours},
            {"backup_dir", config.backup_dir.string()},
            {"kinds", kinds},
            {"wrong_clock", wrong_clock},
            {"last_verify", state.json().is_object() && state.json().contains("last_verify") ? state.json()["last_verify"] : nlohmann::json(nullptr)},
            {"last_rehearsal", state.json().is_object() && state.json().contains("last_rehearsal") ? state.json()["last_rehearsal"] : nlohmann::json(nullptr)}};
  return r;
}

std::string StatusReport::describe() const {
  std::string out = fmt::format("backups in {} (stale after {} h):\n", json["backup_dir"].get<std::string>(),
                                json["max_age_hours"].get<int>());
  for (auto it = json["kinds"].begin(); it != json["kinds"].end(); ++it) {
    const auto& k = it.value();
    std::string line;
    if (k["newest"].is_null()) {
      line = "none";
    } else {
      line = fmt::format("{} ({} h old, {}, verified: {})", k["newest"]["file"].get<std::string>(),
                         static_cast<int>(k["newest"]["age_hours"].get<double>()),
                         human_bytes(k["newest"]["size"].get<std::uint64_t>()),
                         k["newest"]["verified"].get<std::string>());
    }
    out += fmt::format("  {:<8} {:<6} {}\n", it.key(), k["stale"].get<bool>() ? "STALE" : "ok", line);
    if (k.contains("last_failure")) {
      out += fmt::format("           last failure {}: {}\n", json_string(k["last_failure"], "at"),
                         json_string(k["last_failure"], "error"));
    }
  }
  if (json.contains("remote") && !json["remote"].is_null()) {
    const auto& rm = json["remote"];
    std::string line = rm["newest_copy"].is_null()
                           ? std::string("no copy made from this BACKUP_DIR yet (`backupctl push`; `backupctl list "
                                         "--remote` shows what the remote holds)")
                           : fmt::format("newest copy {} h old ({})", static_cast<int>(rm["newest_copy"]["age_hours"].get<double>()),
                                         json_string(rm["newest_copy"], "file"));
    out += fmt::format("  {:<8} {:<6} {}: {}\n", "remote", rm["stale"].get<bool>() ? "STALE" : "ok", json_string(rm, "url"), line);
    if (!rm["last_failure"].is_null()) {
      out += fmt::format("           last failure {}: {}\n", json_string(rm["last_failure"], "at"),
                         json_string(rm["last_failure"], "error"));
    }
    if (rm.contains("not_copied") && !rm["not_copied"].empty()) {
      out += fmt::format("           {} backup(s) not on the remote yet, kept here until they are "
                         "(`backupctl push --all`), e.g. {}\n",
                         rm["not_copied"].size(), rm["not_copied"][0].get<std::string>());
    }
    if (!rm["last_verify"].is_null()) out += fmt::format("           last verify --read-data: {}\n", json_string(rm["last_verify"], "at"));
    if (!rm["last_rehearsal"].is_null()) {
      out += fmt::format("           last rehearsal from the remote: {} (passed)\n", json_string(rm["last_rehearsal"], "at"));
    }
    if (!rm["last_rehearsal_failure"].is_null()) {
      out += fmt::format("           last failed rehearsal from the remote: {}\n", json_string(rm["last_rehearsal_failure"], "at"));
    }
  }
  out += wal_text;
  for (const auto& w : json["wrong_clock"]) {
    out += fmt::format("  WRONG CLOCK: {} is dated {}, {:.1f} h ahead of this host's clock: it is not \"latest\" "
                       "and not counted as the newest\n",
                       json_string(w, "file"), json_string(w, "created_at"), w["ahead_hours"].get<double>());
  }
  if (!json["wrong_clock"].empty()) {
    bool any_good = false;
    for (const auto& k : json["kinds"]) any_good = any_good || !k["newest"].is_null();
    out += any_good ? "  made with a wrong clock: fix the clock (timedatectl set-ntp true), make a new backup (`backupctl "
                      "backup all`), then `CONFIRM=YES backupctl prune --wrong-clock` deletes them (to keep one, move it "
                      "and its .meta out of BACKUP_DIR first)\n"
                    : "  every backup is dated ahead: this host's clock is more likely behind; compare `date` with another "
                      "machine and set it right (timedatectl set-ntp true)\n";
  }
  if (!json["last_verify"].is_null()) {
    out += fmt::format("  last verify: {} ({})\n", json_string(json["last_verify"], "at"),
                       json_bool(json["last_verify"], "ok", false) ? "ok" : "FAILED");
  }
  if (!json["last_rehearsal"].is_null()) {
    out += fmt::format("  last rehearsal: {} ({})\n", json_string(json["last_rehearsal"], "at"),
                       json_bool(json["last_rehearsal"], "ok", false) ? "passed" : "FAILED");
  }
  return out;
}

std::string schedule_text(const Config& config, bool systemd, const std::string& time,
                          const std::string& backupctl_path, const std::string& env_file) {
  int h = -1, m = -1;
  if (std::sscanf(time.c_str(), "%d:%d", &h, &m) != 2 || h < 0 || h > 23 || m < 0 || m > 59) {
    throw Error(ErrorCode::usage, "invalid --time '" + time + "'", "use HH:MM, e.g. 03:15");
  }
  std::string env = env_file.empty() ? "" : " --env-file " + env_file;
  // With continuous protection the daily run also takes a base backup (where a restore to a moment
  // starts), and the receiver runs as a service of its own: cron cannot keep it running.
  const std::string base = config.wal_stream ? fmt::format(" && {}{} backup base", backupctl_path, env) : "";
  if (!systemd) {
    std::string out = fmt::format(
        "# backupctl: every day at {:02}:{:02} (off hours), a backup set, then verify the newest backups.\n"
        "{} {} * * * cd {} && ({}{} backup all{} && {}{} verify --latest) >> {}/backupctl.log 2>&1\n",
        h, m, m, h, config.app_root.string(), backupctl_path, env, base, backupctl_path, env,
        config.backup_dir.string());
    if (config.wal_stream) {
      out += "# BACKUP_WAL=stream: run the WAL receiver (`" + backupctl_path + env +
             " wal stream`) as a service that restarts it (`schedule --systemd` prints one), not from cron\n";
    }
    return out;
  }
  std::string receiver;
  if (config.wal_stream) {
    receiver = fmt::format(
        "\n"
        "# /etc/systemd/system/backupctl-wal.service (BACKUP_WAL=stream: the WAL receiver)\n"
        "[Unit]\n"
        "Description=backupctl: WAL receiver of the document archive (restores to any moment)\n"
        "Wants=network-online.target\n"
        "After=network-online.target\n"
        "\n"
        "[Service]\n"
        "WorkingDirectory={0}\n"
        "ExecStart={1}{2} wal stream\n"
        "Restart=always\n"
        "RestartSec=10\n"
        "TimeoutStopSec=30\n"
        "\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
        "# then: systemctl daemon-reload && systemctl enable --now backupctl-wal.service\n",
        config.app_root.string(), backupctl_path, env);
  }
  return fmt::format(
      "# /etc/systemd/system/backupctl.service\n"
      "[Unit]\n"
      "Description=backupctl: backup set of the document archive (db, attachments, config)\n"
      "Wants=network-online.target\n"
      "After=network-online.target\n"
      "\n"
      "[Service]\n"
      "Type=oneshot\n"
      "WorkingDirectory={0}\n"
      "ExecStart={1}{2} backup all\n"
      "{5}"
      "ExecStartPost={1}{2} verify --latest\n"
      "Nice=10\n"
      "IOSchedulingClass=idle\n"
      "\n"
      "# /etc/systemd/system/backupctl.timer\n"
      "[Unit]\n"
      "Description=backupctl daily at {3:02}:{4:02}\n"
      "\n"
      "[Timer]\n"
      "OnCalendar=*-*-* {3:02}:{4:02}:00\n"
      "Persistent=true\n"
      "RandomizedDelaySec=10min\n"
      "\n"
      "[Install]\n"
      "WantedBy=timers.target\n"
      "# then: systemctl daemon-reload && systemctl enable --now backupctl.timer\n"
      "{6}",
      config.app_root.string(), backupctl_path, env, h, m,
      config.wal_stream ? fmt::format("ExecStartPost={}{} backup base\n", backupctl_path, env) : "", receiver);
}

}  // namespace backupctl
