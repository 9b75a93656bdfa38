#include "monitor/state.hpp"

#include <curl/curl.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <map>

#include "catalog/catalog.hpp"
#include "catalog/health.hpp"
#include "config/config.hpp"
#include "util/fs.hpp"
#include "util/json.hpp"
#include "util/time.hpp"

namespace backupctl {

namespace fs = std::filesystem;
using nlohmann::json;

RunState RunState::load(const fs::path& backup_dir) {
  RunState s;
  s.m_path = backup_dir / ".backupctl-state.json";
  std::error_code ec;
  if (fs::exists(s.m_path, ec)) {
    try {
      nlohmann::json j = nlohmann::json::parse(read_file(s.m_path), nullptr, false);
      if (j.is_object()) s.m_json = j;
    } catch (const std::exception& e) {
      spdlog::warn("ignoring an unreadable {}: {}", s.m_path.string(), e.what());
    }
  }
  return s;
}

void RunState::save() const {
  make_dirs(m_path.parent_path(), 0700);
  write_file_atomic(m_path, m_json.dump(1) + "\n", 0600);
}

void RunState::record_success(const std::string& kind, double duration, std::uint64_t size, const std::string& file) {
  m_json["last_success"][kind] = {{"at", iso8601(Clock::now())}, {"duration_seconds", duration}, {"size", size}, {"file", file}};
}

void RunState::record_failure(const std::string& kind, const std::string& error) {
  m_json["last_failure"][kind] = {{"at", iso8601(Clock::now())}, {"error", error}};
}

bool RunState::clear_failure(const std::string& kind) {
  if (!m_json.contains("last_failure") || !m_json["last_failure"].is_object()) return false;
  return m_json["last_failure"].erase(kind) > 0;
}

void RunState::record_verify(bool ok) {
  m_json["last_verify"] = {{"at", iso8601(Clock::now())}, {"ok", ok}};
}

void RunState::record_rehearsal(bool ok, const std::string& report) {
  m_json["last_rehearsal"] = {{"at", iso8601(Clock::now())}, {"ok", ok}, {"report", report}};
}

namespace {

double unix_seconds(const std::string& iso) {
  auto t = parse_iso8601(iso);
  return t ? std::chrono::duration<double>(t->time_since_epoch()).count() : 0;
}

}  // namespace

std::string render_metrics(const Config& config, const RunState& state, const std::string& more) {
  const nlohmann::json& j = state.json();
  std::string profile = config.profile;
  std::string out;
  auto family = [&](const char* name, const char* help) {
    out += fmt::format("# HELP {} {}\n# TYPE {} gauge\n", name, help, name);
  };
  auto sample = [&](const char* name, const std::string& labels, double value) {
    out += fmt::format("{}{{profile=\"{}\"{}}} {}\n", name, profile, labels, value);
  };
  std::vector<CatalogEntry> entries = scan_catalog(config.backup_dir);

  const nlohmann::json& successes = json_object(j, "last_success");
  const nlohmann::json& failures = json_object(j, "last_failure");
  family("backupctl_last_success_timestamp_seconds", "Unix time of the last successful run of a kind.");
  for (const auto& [kind, v] : successes.items()) {
    sample("backupctl_last_success_timestamp_seconds", fmt::format(",kind=\"{}\"", kind), unix_seconds(json_string(v, "at")));
  }
  family("backupctl_last_duration_seconds", "Duration of the last successful run of a kind.");
  for (const auto& [kind, v] : successes.items()) {
    sample("backupctl_last_duration_seconds", fmt::format(",kind=\"{}\"", kind), json_number(v, "duration_seconds", 0.0));
  }
  family("backupctl_last_size_bytes", "Size of the file the last successful backup of a kind wrote.");
  for (const auto& [kind, v] : successes.items()) {
    sample("backupctl_last_size_bytes", fmt::format(",kind=\"{}\"", kind), static_cast<double>(json_uint(v, "size", 0)));
  }
  family("backupctl_last_failure_timestamp_seconds", "Unix time of the last failed run of a kind.");
  for (const auto& [kind, v] : failures.items()) {
    sample("backupctl_last_failure_timestamp_seconds", fmt::format(",kind=\"{}\"", kind), unix_seconds(json_string(v, "at")));
  }
  const CatalogHealth health = catalog_health(config, entries, Clock::now());
  if (config.remote) {
    family("backupctl_remote_newest_copy_timestamp_seconds", "When the newest off-site copy arrived (0: none).");
    double newest = health.newest_copy ? std::chrono::duration<double>(health.newest_copy_at.time_since_epoch()).count() : 0;
    sample("backupctl_remote_newest_copy_timestamp_seconds", fmt::format(",remote=\"{}\"", config.remote->url), newest);
    family("backupctl_backups_not_on_remote", "Backups that have no off-site copy yet (kept here until they do).");
    sample("backupctl_backups_not_on_remote", fmt::format(",remote=\"{}\"", config.remote->url),
           static_cast<double>(health.not_on_remote.size()));
  }
  family("backupctl_backups_wrong_clock", "Backups dated ahead of this host's clock (made with a wrong clock).");
  sample("backupctl_backups_wrong_clock", "", static_cast<double>(health.wrong_clock.size()));
  family("backupctl_newest_backup_timestamp_seconds", "Creation time of the newest good backup of a kind.");
  family("backupctl_backups", "Backups of a kind in BACKUP_DIR.");
  for (const auto& [kind, h] : health.kinds) {
    const std::string labels = fmt::format(",kind=\"{}\"", kind_name(kind));
    double newest = h.newest_good ? std::chrono::duration<double>(h.newest_good->time.time_since_epoch()).count() : 0;
    sample("backupctl_newest_backup_timestamp_seconds", labels, newest);
    sample("backupctl_backups", labels, h.count);
  }
  family("backupctl_last_verify_timestamp_seconds", "Unix time of the last `backupctl verify`.");
  family("backupctl_last_verify_ok", "1 when the last verify found every file good.");
  if (j.contains("last_verify")) {
    sample("backupctl_last_verify_timestamp_seconds", "", unix_seconds(json_string(j["last_verify"], "at")));
    sample("backupctl_last_verify_ok", "", json_bool(j["last_verify"], "ok", false) ? 1 : 0);
  }
  family("backupctl_last_rehearsal_timestamp_seconds", "Unix time of the last restore rehearsal.");
  family("backupctl_last_rehearsal_ok", "1 when the last rehearsal passed.");
  if (j.contains("last_rehearsal")) {
    sample("backupctl_last_rehearsal_timestamp_seconds", "", unix_seconds(json_string(j["last_rehearsal"], "at")));
    sample("backupctl_last_rehearsal_ok", "", json_bool(j["last_rehearsal"], "ok", false) ? 1 : 0);
  }
  out += more;
  return out;
}

void write_metrics_file(const Config& config, const RunState& state, const std::string& more) {
  if (config.metrics_file.empty()) return;
  try {
    make_dirs(config.metrics_file.parent_path(), 0755);
    write_file_atomic(config.metrics_file, render_metrics(config, state, more), 0644);
  } catch (const std::exception& e) {
    spdlog::warn("cannot write BACKUP_METRICS_FILE {}: {}", config.metrics_file.string(), e.what());
  }
}

namespace {

// POSTs `body` to `url` (10 s at most). Never throws; a failure is a warning naming the host only
// (the URL may hold a token) and the setting it came from.
void post(const std::string& url, const std::string& body, const char* content_type, const std::string& setting) {
  CURL* c = curl_easy_init();
  if (!c) return;
  curl_slist* headers = curl_slist_append(nullptr, content_type);
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.c_str());
  curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, +[](char*, size_t s, size_t n, void*) { return s * n; });
  CURLcode rc = curl_easy_perform(c);
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  curl_slist_free_all(headers);
  curl_easy_cleanup(c);
  if (rc != CURLE_OK || status >= 300) {
    std::string host = url;
    if (auto p = host.find("://"); p != std::string::npos) host = host.substr(p + 3);
    host = host.substr(0, host.find_first_of("/?"));
    if (auto at = host.rfind('@'); at != std::string::npos) host = host.substr(at + 1);
    spdlog::warn("cannot reach {} ({}): {}", host, setting,
                 rc != CURLE_OK ? curl_easy_strerror(rc) : fmt::format("HTTP {}", status));
  }
}

}  // namespace

void notify(const Config& config, const json& event) {
  if (config.notify_url.empty()) return;
  bool ok = event.value("ok", false);
  if (ok && !config.notify_on_success) return;
  post(config.notify_url, event.dump(), "Content-Type: application/json", "BACKUP_NOTIFY_URL");
}

void post_text(const std::string& url, const std::string& body, const std::string& setting) {
  post(url, body, "Content-Type: text/plain; charset=utf-8", setting);
}

}  // namespace backupctl
