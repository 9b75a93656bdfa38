#include "command/list.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <map>

#include "util/fs.hpp"
#include "util/json.hpp"

#include "util/format.hpp"
#include "util/time.hpp"

namespace backupctl {

std::vector<CatalogEntry> list_backups(const Config& config, std::optional<Kind> kind) {
  std::vector<CatalogEntry> entries = scan_catalog(config.backup_dir);
  if (kind) {
    std::erase_if(entries, [&](const CatalogEntry& e) { return e.kind != *kind; });
  }
  return entries;
}

namespace {

// The last rehearsal of each set, from sets/set_*.json.
std::map<std::string, nlohmann::json> rehearsals(const std::filesystem::path& backup_dir) {
  std::map<std::string, nlohmann::json> out;
  std::error_code ec;
  for (const auto& de : std::filesystem::directory_iterator(backup_dir / "sets", ec)) {
    try {
      auto j = nlohmann::json::parse(read_file(de.path()), nullptr, false);
      if (j.is_object() && j.contains("rehearsals") && j["rehearsals"].is_array() && !j["rehearsals"].empty() &&
          j["rehearsals"].back().is_object()) {
        out[json_string(j, "set_id")] = j["rehearsals"].back();
      }
    } catch (const std::exception&) {
    }
  }
  return out;
}

}  // namespace

nlohmann::json backups_json(const std::vector<CatalogEntry>& entries, const std::filesystem::path& backup_dir) {
  auto rehearsed = rehearsals(backup_dir);
  nlohmann::json out = nlohmann::json::array();
  for (const CatalogEntry& e : entries) {
    nlohmann::json j = {{"kind", kind_name(e.kind)},
                        {"file", e.path.filename().string()},
                        {"path", e.path.string()},
                        {"created_at", e.meta ? e.meta->created_at : iso8601(e.time)},
                        {"size", e.size},
                        {"verified", e.verify_state()}};
    if (e.meta) {
      auto r = rehearsed.find(e.meta->set_id);
      j["rehearsed"] = r == rehearsed.end() ? nlohmann::json(nullptr) : r->second;
      j["sha256"] = e.meta->sha256;
      j["set_id"] = e.meta->set_id;
      j["profile"] = e.meta->profile;
      j["compression"] = e.meta->compression;
      j["verified_at"] = e.meta->verification ? nlohmann::json(e.meta->verification->at)
                                              : nlohmann::json(nullptr);
      if (e.meta->verification && !e.meta->verification->ok) {
        j["verify_error"] = e.meta->verification->detail;
      }
    } else {
      j["meta_problem"] = e.meta_problem;
    }
    out.push_back(std::move(j));
  }
  return out;
}

std::string backups_table(const std::vector<CatalogEntry>& entries,
                          const std::filesystem::path& backup_dir) {
  if (entries.empty()) {
    return fmt::format("no backups in {}\n", backup_dir.string());
  }
  auto rehearsed = rehearsals(backup_dir);
  struct Row {
    std::string kind, created, size, verified, set, rehearsed, file;
  };
  std::vector<Row> rows;
  rows.push_back({"KIND", "CREATED", "SIZE", "VERIFIED", "SET", "REHEARSED", "FILE"});
  for (const CatalogEntry& e : entries) {
    std::string created = e.meta ? e.meta->created_at : iso8601(e.time);
    if (created.size() >= 19) created[10] = ' ';
    std::string verified = e.verify_state();
    if (e.meta && e.meta->verification) verified += " " + e.meta->verification->at.substr(0, 10);
    std::string reh = "-";
    if (e.meta) {
      auto r = rehearsed.find(e.meta->set_id);
      if (r != rehearsed.end()) {
        reh = std::string(json_bool(r->second, "ok", false) ? "ok " : "FAILED ") + json_string(r->second, "at").substr(0, 10);
      }
    }
    rows.push_back({std::string(kind_name(e.kind)), created, human_bytes(e.size), verified,
                    e.meta ? e.meta->set_id : "-", reh,
                    std::filesystem::relative(e.path, backup_dir).string()});
  }
  std::size_t w[6] = {0, 0, 0, 0, 0, 0};
  for (const Row& r : rows) {
    w[0] = std::max(w[0], r.kind.size());
    w[1] = std::max(w[1], r.created.size());
    w[2] = std::max(w[2], r.size.size());
    w[3] = std::max(w[3], r.verified.size());
    w[4] = std::max(w[4], r.set.size());
    w[5] = std::max(w[5], r.rehearsed.size());
  }
  std::string out;
  for (const Row& r : rows) {
    out += fmt::format("{:<{}}  {:<{}}  {:>{}}  {:<{}}  {:<{}}  {:<{}}  {}\n", r.kind, w[0], r.created,
                       w[1], r.size, w[2], r.verified, w[3], r.set, w[4], r.rehearsed, w[5], r.file);
  }
  return out;
}

}  // namespace backupctl
