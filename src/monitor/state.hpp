// What backupctl remembers between runs for monitoring: the last success and failure of each kind,
// the last verify and rehearsal, in <BACKUP_DIR>/.backupctl-state.json (written atomically). The
// Prometheus metrics file and `backupctl status` are computed from it and from the catalog.
#pragma once

#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>

namespace backupctl {

struct Config;

class RunState {
 public:
  static RunState load(const std::filesystem::path& backup_dir);
  void save() const;

  // kind: db | objects | config | set | prune | restore | verify | rehearsal
  void record_success(const std::string& kind, double duration, std::uint64_t size, const std::string& file);
  void record_failure(const std::string& kind, const std::string& error);
  // Forgets the last failure of `kind` (a repair that succeeded since). True when there was one.
  bool clear_failure(const std::string& kind);
  void record_verify(bool ok);
  void record_rehearsal(bool ok, const std::string& report);

  const nlohmann::json& json() const { return m_json; }

 private:
  std::filesystem::path m_path;
  nlohmann::json m_json = nlohmann::json::object();
};

// Prometheus text format (node_exporter's textfile convention) from the state and the catalog;
// `more`: families of other parts (continuous protection's), appended as they are.
std::string render_metrics(const Config& config, const RunState& state, const std::string& more = "");

// Writes BACKUP_METRICS_FILE (when set) atomically. Never throws: monitoring must not fail a run.
void write_metrics_file(const Config& config, const RunState& state, const std::string& more = "");

// POSTs `event` as JSON to BACKUP_NOTIFY_URL (when set). Never throws; logs a warning on failure.
void notify(const Config& config, const nlohmann::json& event);

// POSTs a text body to `url` (BACKUP_PING_URL's pings). Never throws; a warning names `setting`.
void post_text(const std::string& url, const std::string& body, const std::string& setting);

}  // namespace backupctl
