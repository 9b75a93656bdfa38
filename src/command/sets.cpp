#include "command/sets.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "catalog/naming.hpp"
#include "command/backup_base.hpp"
#include "command/backup_db.hpp"
#include "command/backup_objects.hpp"
#include "command/backup_config.hpp"
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
      // What `latest` is scoped by (older set files are judged by the part's file name).
      if (b.meta.source.contains("database")) parts[kind]["database"] = b.meta.source["database"];
      if (b.meta.source.contains("storage")) parts[kind]["storage"] = b.meta.source["storage"];
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
  // Continuous protection: a base backup when the newest is BACKUP_BASE_EVERY_HOURS old (the
  // window of point-in-time recovery starts at the oldest one kept; replay starts at the newest).
  if (config.wal_stream && base_backup_due(config, start)) {
    run("base", [&] { return backup_base(config, target, progress); });
  }
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
  // Two sets of one second (two databases backed up one after the other) each keep their file:
  // set_<ts>.json, then set_<ts>_02.json, … (sorted after it, as it is newer).
  for (int n = 1;; ++n) {
    r.file = dir / ("set_" + name_timestamp(start) + (n == 1 ? "" : fmt::format("_{:02}", n)) + ".json");
    std::error_code ec;
    if (!fs::exists(fs::symlink_status(r.file, ec))) break;
  }
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

SetScope set_scope(const Config& config, const PgTarget& target) {
  return {target.dbname(), config.object_storage == ObjectStorage::minio ? "minio" : "disk", Clock::now()};
}

std::string why_not_latest(const nlohmann::json& set, const SetScope& scope) {
  if (!set.is_object()) return "not a set file";
  auto complete = set.find("complete");
  if (complete == set.end() || !complete->is_boolean() || !complete->get<bool>()) return "incomplete (a part failed)";
  const std::string created = json_string(set, "created_at");
  auto t = parse_iso8601(created);
  if (!t) return "no valid created_at";
  if (dated_in_future(*t, scope.now)) return "dated " + created + ", ahead of this host's clock (made with a wrong clock)";
  if (!set.contains("parts") || !set["parts"].is_object()) return "names no parts";
  const auto& parts = set["parts"];
  // The part's own record, else the label its file name carries (the database made file-name
  // safe, or minio|disk).
  auto part_of = [&](const char* kind, const char* field) -> std::optional<std::string> {
    if (!parts.contains(kind) || !parts[kind].is_object() || parts[kind].contains("error")) return std::nullopt;
    const auto& p = parts[kind];
    if (p.contains(field) && p[field].is_string()) return p[field].get<std::string>();
    auto parsed = parse_backup_filename(fs::path(json_string(p, "file", json_string(p, "path"))).filename().string());
    return parsed ? parsed->label : "?";
  };
  if (auto db = part_of("db", "database")) {
    const bool recorded = set["parts"]["db"].contains("database");
    if (recorded ? *db != scope.database : *db != filename_safe(scope.database)) {
      return "of database " + *db + ", not " + scope.database;
    }
  }
  if (auto store = part_of("objects", "storage"); store && *store != scope.objects_label) {
    return "attachments from " + *store + ", not OBJECT_STORAGE=" + scope.objects_label;
  }
  return "";
}

std::string skipped_note(const std::vector<std::string>& skipped) {
  if (skipped.empty()) return "";
  return " (skipped " + skipped.front() + (skipped.size() > 1 ? fmt::format(", and {} more", skipped.size() - 1) : "") + ")";
}

nlohmann::json find_set(const Config& config, const std::string& id, const SetScope& scope, fs::path* file) {
  fs::path dir = config.backup_dir / "sets";
  std::vector<fs::path> files;
  std::error_code ec;
  if (fs::is_directory(dir, ec)) {
    for (const auto& de : fs::directory_iterator(dir, ec)) {
      if (de.path().extension() == ".json") files.push_back(de.path());
    }
  }
  std::sort(files.rbegin(), files.rend());
  std::vector<std::string> skipped;
  for (const auto& f : files) {
    auto j = nlohmann::json::parse(read_file(f), nullptr, false);
    if (j.is_discarded() || !j.is_object()) continue;  // not a set file: not ours to read
    if (id != "latest") {
      auto sid = j.find("set_id");
      if (sid == j.end() || !sid->is_string() || sid->get<std::string>() != id) continue;
      if (file) *file = f;
      return j;
    }
    if (std::string why = why_not_latest(j, scope); !why.empty()) {
      skipped.push_back("set " + json_string(j, "set_id", f.filename().string()) + ": " + why);
      continue;
    }
    for (const auto& s : skipped) spdlog::warn("latest: skipped the newer {}", s);
    if (file) *file = f;
    return j;
  }
  if (id != "latest") {
    throw Error(ErrorCode::not_found, "no backup set " + id + " in " + dir.string(),
                "`ls " + dir.string() + "` shows the sets");
  }
  throw Error(ErrorCode::not_found,
              "no complete backup set of database " + scope.database + " in " + dir.string() +
                  skipped_note(skipped),
              skipped.empty() ? "`make backup-all` makes one"
                              : "`make backup-all` makes one; a set of another database or store is restored only by its id "
                                "(--set ID), and its dump only with --allow-other-database");
}

}  // namespace backupctl
