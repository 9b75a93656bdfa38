#include "catalog/catalog.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <set>

#include "util/error.hpp"
#include "util/fault.hpp"
#include "util/json.hpp"

namespace backupctl {

namespace fs = std::filesystem;

std::string CatalogEntry::verify_state() const {
  if (!meta) return "no meta";
  if (damaged()) return "damaged";
  if (!meta->verification) return "never";
  return meta->verification->ok ? "ok" : "failed";
}

std::string CatalogEntry::source() const {
  auto parsed = parse_backup_filename(path.filename().string());
  std::string label = parsed ? parsed->label : "";
  switch (kind) {
    case Kind::db:
      // The database it was dumped from; the file name carries it made file-name safe.
      if (meta && meta->source.contains("database") && meta->source["database"].is_string()) {
        return meta->source["database"].get<std::string>();
      }
      return label;
    case Kind::objects: {
      std::string where = meta && meta->source.contains("location") && meta->source["location"].is_string()
                              ? meta->source["location"].get<std::string>()
                              : "";
      return label + (where.empty() ? "" : " " + where);
    }
    case Kind::config:
      return "";
    case Kind::base:
      return "cluster " + label;  // the system identifier
  }
  return "";
}

SourceGroups group_by_source(const std::vector<CatalogEntry>& entries) {
  SourceGroups out;
  for (const auto& e : entries) out[{e.kind, e.source()}].push_back(&e);
  return out;
}

CatalogEntry catalog_entry(const fs::path& file) {
  auto parsed = parse_backup_filename(file.filename().string());
  struct stat st{};
  if (::stat(file.c_str(), &st) != 0) throw_errno("cannot read " + file.string());
  CatalogEntry e{};
  e.kind = parsed ? parsed->kind : Kind::db;
  e.path = file;
  e.size = static_cast<std::uint64_t>(st.st_size);
  e.time = Clock::from_time_t(st.st_mtime);
  if (parsed) {
    if (auto t = parse_name_timestamp(parsed->timestamp)) e.time = *t;
  }
  fs::path meta_path = file;
  meta_path += ".meta";
  std::error_code ec;
  if (!fs::exists(meta_path, ec)) {
    e.meta_problem = "no " + meta_path.filename().string();
    return e;
  }
  try {
    e.meta = read_meta(meta_path);
    if (auto kind = parse_kind(e.meta->kind)) e.kind = *kind;
    if (auto t = parse_iso8601(e.meta->created_at)) e.time = *t;
  } catch (const Error& err) {
    e.meta_problem = err.what();
  }
  return e;
}

std::vector<CatalogEntry> scan_catalog(const fs::path& backup_dir) {
  std::vector<CatalogEntry> out;
  for (Kind kind : {Kind::db, Kind::objects, Kind::config, Kind::base}) {
    fs::path dir = backup_dir / std::string(kind_name(kind));
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) continue;
    for (const auto& de : fs::directory_iterator(dir, ec)) {
      if (!de.is_regular_file(ec)) continue;
      auto parsed = parse_backup_filename(de.path().filename().string());
      if (!parsed || parsed->kind != kind) continue;
      try {
        out.push_back(catalog_entry(de.path()));
      } catch (const Error&) {
        // Vanished while listing (pruned by another run): not part of the catalog.
      }
    }
  }
  std::sort(out.begin(), out.end(), [](const CatalogEntry& a, const CatalogEntry& b) {
    if (a.time != b.time) return a.time > b.time;
    return a.path.filename() > b.path.filename();
  });
  return out;
}

void require_backup_file(const fs::path& file, const fs::path& backup_dir, std::string_view kind) {
  struct stat st{};
  std::string hint = "`backupctl list --kind " + std::string(kind) + "` shows the backups in " + backup_dir.string();
  if (::stat(file.c_str(), &st) != 0) {
    throw Error(ErrorCode::not_found, "backup file " + file.string() + " does not exist", hint);
  }
  if (S_ISDIR(st.st_mode)) {
    throw Error(ErrorCode::usage, file.string() + " is a directory, not a backup file", "give one file; " + hint);
  }
  if (!S_ISREG(st.st_mode)) {
    throw Error(ErrorCode::usage, file.string() + " is not a regular file (a device, pipe or socket)",
                "give a backup file; " + hint);
  }
}

std::optional<fs::path> meta_part_file(const fs::path& backup_file, const Meta& meta, const std::string& part) {
  if (!meta.parts.contains(part) || !meta.parts[part].is_object()) return std::nullopt;
  const auto& p = meta.parts[part];
  std::string name = p.contains("file") && p["file"].is_string() ? p["file"].get<std::string>() : "";
  if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos ||
      name.find('\0') != std::string::npos) {
    throw Error(ErrorCode::verification,
                "the meta of " + backup_file.filename().string() + " names its " + part + " file as \"" + name +
                    "\", which is not a file beside it: not followed",
                "the .meta was changed or damaged; check it, or move it away and use --allow-no-meta");
  }
  fs::path path = backup_file.parent_path() / name;
  struct stat st{};
  if (::lstat(path.c_str(), &st) != 0) return std::nullopt;
  if (!S_ISREG(st.st_mode)) {
    throw Error(ErrorCode::verification,
                "the " + part + " file " + path.string() + " named by the meta is not a regular file: not read",
                "remove it, or restore without it");
  }
  return path;
}

std::vector<std::pair<fs::path, std::string>> interrupted_leftovers(const fs::path& backup_dir) {
  std::vector<std::pair<fs::path, std::string>> out;
  auto is_tmp = [](const std::string& name) {
    auto at = name.rfind(".tmp.");
    return at != std::string::npos && at + 5 < name.size() &&
           name.find_first_not_of("0123456789", at + 5) == std::string::npos;
  };
  // The roles files the metas in db/ name (a dump's roles file is finished before the dump).
  std::set<std::string> roles_in_use;
  std::error_code ec;
  for (const auto& de : fs::directory_iterator(backup_dir / "db", ec)) {
    std::string name = de.path().filename().string();
    if (!name.ends_with(".meta")) continue;
    try {
      Meta meta = read_meta(de.path());
      if (meta.parts.contains("roles") && meta.parts["roles"].is_object()) {
        roles_in_use.insert(json_string(meta.parts["roles"], "file"));
      }
    } catch (const Error&) {
      // A damaged meta: its roles file stays (prune reports the meta).
      roles_in_use.insert(roles_filename(name.substr(0, name.size() - 5)));
    }
  }
  for (const char* sub : {"db", "objects", "config", "base", "sets", "rehearsals", "reports", "journal"}) {
    fs::path dir = backup_dir / sub;
    if (!fs::is_directory(dir, ec)) continue;
    for (const auto& de : fs::directory_iterator(dir, ec)) {
      if (!de.is_regular_file(ec) || de.is_symlink(ec)) continue;
      std::string name = de.path().filename().string();
      if (name.ends_with(".partial")) {
        out.emplace_back(de.path(), "an unfinished file left by an interrupted run");
      } else if (is_tmp(name)) {
        out.emplace_back(de.path(), "a temporary file left by an interrupted run");
      } else if (name.ends_with(".meta") && parse_backup_filename(name.substr(0, name.size() - 5))) {
        fs::path file = de.path().parent_path() / name.substr(0, name.size() - 5);
        if (!fs::exists(fs::symlink_status(file, ec))) {
          out.emplace_back(de.path(), "the meta of a backup that is not there (never finished, or deleted)");
        }
      } else if (std::string(sub) == "db" && (name.ends_with(".roles.sql") || name.ends_with(".roles.sql.age")) &&
                 !roles_in_use.count(name)) {
        out.emplace_back(de.path(), "a roles file whose dump is gone");
      }
    }
  }
  return out;
}

}  // namespace backupctl

#include <thread>

namespace backupctl {

void publish_backup(io::AtomicFileSink& file, const Meta& meta) {
  file.sync();
  fs::path meta_path = file.final_path().parent_path() / meta_filename(file.final_path().filename().string());
  write_meta(meta_path, meta);
  fault_point("backup.publish");
  try {
    file.commit();
  } catch (...) {
    ::unlink(meta_path.c_str());
    throw;
  }
}

ReservedFiles reserve_backup_files(
    const fs::path& dir, const std::function<std::vector<std::string>(std::string_view)>& name_for) {
  std::string previous;
  for (int attempt = 0; attempt < 20; ++attempt) {
    Clock::time_point now = Clock::now();
    std::string ts = name_timestamp(now);
    if (ts == previous) {
      auto next = std::chrono::ceil<std::chrono::seconds>(now + std::chrono::milliseconds(1));
      std::this_thread::sleep_until(next);
      continue;
    }
    previous = ts;
    ReservedFiles reserved{{}, ts, now};
    bool free = true;
    for (const std::string& name : name_for(ts)) {
      fs::path final_path = dir / name;
      auto sink = io::AtomicFileSink::try_create(final_path);
      std::error_code ec;
      // Taken by another run's .partial, or finished earlier this second.
      if (!sink || fs::exists(final_path, ec)) {
        free = false;
        break;
      }
      reserved.sinks.push_back(std::move(*sink));
    }
    if (free) return reserved;
    // Not free: the sinks reserved so far remove their .partial files as they go.
  }
  throw Error(ErrorCode::io, "cannot find a free backup file name in " + dir.string(),
              "many runs are starting at the same moment; run again");
}

}  // namespace backupctl
