#include "command/sets.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "catalog/naming.hpp"
#include "command/backup_db.hpp"
#include "command/backup_objects.hpp"
#include "command/config_files.hpp"
#include "storage/object_store.hpp"
#include "util/error.hpp"
#include "util/fs.hpp"
#include "util/json.hpp"
#include "util/signals.hpp"
#include "util/time.hpp"

namespace backupctl {

namespace fs = std::filesystem;

SetResult backup_all(const Config& config, const PgTarget& target, Progress& progress) {
  SetResult r;
  const auto start = Clock::now();
  r.set_id = new_set_id(start);
  nlohmann::json parts = nlohmann::json::object();
  auto run = [&](const char* kind, const std::function<BackupResult()>& fn) {
    try {
      BackupResult b = fn();
      parts[kind] = {{"file", b.file.filename().string()},
                     {"path", (fs::path(kind) / b.file.filename()).string()},  // relative to BACKUP_DIR
                     {"sha256", b.meta.sha256}, {"size", b.meta.size}};
    } catch (const Error& e) {
      if (e.code() == ErrorCode::interrupted) throw;
      spdlog::error("backup all: the {} part failed: {}", kind, e.what());
      parts[kind] = {{"error", e.what()}, {"hint", e.hint()}, {"code", error_code_name(e.code())}};
    }
  };
  run("db", [&] { return backup_db(config, target, progress, {r.set_id}); });
  run("objects", [&] {
    auto store = make_object_store(config);
    return backup_objects(config, *store, progress, {r.set_id});
  });
  run("config", [&] { return backup_config(config, progress, {r.set_id}); });
  r.ok = true;
  for (auto it = parts.begin(); it != parts.end(); ++it) r.ok = r.ok && !it.value().contains("error");
  r.json = {{"set_id", r.set_id},
            {"created_at", iso8601(start)},
            {"finished_at", iso8601(Clock::now())},
            {"profile", config.profile},
            {"complete", r.ok},
            {"parts", parts}};
  fs::path dir = config.backup_dir / "sets";
  make_dirs(dir, 0700);
  r.file = dir / ("set_" + name_timestamp(start) + ".json");
  write_file_atomic(r.file, r.json.dump(2) + "\n", 0600);
  return r;
}

std::optional<fs::path> set_part_path(const Config& config, const nlohmann::json& set, const std::string& kind) {
  if (!set.is_object() || !set.contains("parts") || !set["parts"].is_object()) return std::nullopt;
  const auto& parts = set["parts"];
  if (!parts.contains(kind) || !parts[kind].is_object() || parts[kind].contains("error")) return std::nullopt;
  const auto& p = parts[kind];
  std::string named = p.contains("path") && p["path"].is_string() ? p["path"].get<std::string>()
                      : p.contains("file") && p["file"].is_string() ? p["file"].get<std::string>()
                                                                      : "";
  std::string name = fs::path(named).filename().string();
  auto parsed = parse_backup_filename(name);
  fs::path rel(named);
  bool relative_ok = rel.is_absolute() || rel == fs::path(name) || rel == fs::path(kind) / name;
  if (!parsed || std::string(kind_name(parsed->kind)) != kind || !relative_ok) {
    throw Error(ErrorCode::verification,
                "set " + json_string(set, "set_id", "?") + " names \"" + named + "\" as its " + kind +
                    " backup, which is not a " + kind + " backup file of BACKUP_DIR: not followed",
                "the set file was changed or damaged; restore the parts with their own commands");
  }
  return config.backup_dir / kind / name;
}

nlohmann::json find_set(const Config& config, const std::string& id) {
  fs::path dir = config.backup_dir / "sets";
  std::vector<fs::path> files;
  std::error_code ec;
  if (fs::is_directory(dir, ec)) {
    for (const auto& de : fs::directory_iterator(dir, ec)) {
      if (de.path().extension() == ".json") files.push_back(de.path());
    }
  }
  std::sort(files.rbegin(), files.rend());
  for (const auto& f : files) {
    auto j = nlohmann::json::parse(read_file(f), nullptr, false);
    if (j.is_discarded() || !j.is_object()) continue;  // not a set file: not ours to read
    auto complete = j.find("complete");
    auto sid = j.find("set_id");
    bool match = id == "latest" ? complete != j.end() && complete->is_boolean() && complete->get<bool>()
                                : sid != j.end() && sid->is_string() && sid->get<std::string>() == id;
    if (match) return j;
  }
  throw Error(ErrorCode::not_found,
              id == "latest" ? "no complete backup set in " + dir.string() : "no backup set " + id + " in " + dir.string(),
              "`make backup-all` makes one; `ls " + dir.string() + "` shows the sets");
}

}  // namespace backupctl
