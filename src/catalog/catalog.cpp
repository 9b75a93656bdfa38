#include "catalog/catalog.hpp"

#include <sys/stat.h>

#include <algorithm>

#include "util/error.hpp"

namespace backupctl {

namespace fs = std::filesystem;

std::string CatalogEntry::verify_state() const {
  if (!meta) return "no meta";
  if (!meta->verification) return "never";
  return meta->verification->ok ? "ok" : "failed";
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
  for (Kind kind : {Kind::db, Kind::objects, Kind::config}) {
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

}  // namespace backupctl

#include <thread>

namespace backupctl {

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
