#include "command/backup_config.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <grp.h>
#include <pwd.h>

#include <deque>
#include <functional>
#include <map>
#include <set>
#include <optional>
#include <sstream>

#include "tar/tar.hpp"
#include "catalog/catalog.hpp"
#include "catalog/naming.hpp"
#include "io/age.hpp"
#include "util/error.hpp"
#include "util/fault.hpp"
#include "util/format.hpp"
#include "util/fs.hpp"
#include "util/json.hpp"
#include "util/process.hpp"
#include "util/signals.hpp"
#include "util/time.hpp"

#include "command/config_tree.hpp"

namespace backupctl {

namespace fs = std::filesystem;

BackupResult backup_config(const Config& config, Progress&, const BackupConfigOptions& options) {
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::string> missing;
  std::map<std::string, Item> items = collect(config, &missing);
  for (const auto& m : missing) {
    spdlog::warn("backup config: {} does not exist under {} (CONFIG_PATHS); it is not in the backup",
                 m, config.app_root.string());
  }
  if (items.empty()) {
    throw Error(ErrorCode::not_found, "none of CONFIG_PATHS exists under APP_ROOT " + config.app_root.string(),
                "set APP_ROOT to the app's checkout (where infra/ is) or CONFIG_PATHS");
  }
  if (config.age_recipients.empty()) {
    spdlog::warn("backup config: the backup holds secrets (infra/env) and is not encrypted; set "
                 "BACKUP_AGE_RECIPIENTS to encrypt it");
  }
  const fs::path dir = config.kind_dir("config");
  make_dirs(dir, 0700);
  const std::string suffix = std::string(".tar.gz") + (config.age_recipients.empty() ? "" : ".age");
  ReservedFiles files = reserve_backup_files(dir, [&](std::string_view ts) {
    return std::vector<std::string>{fmt::format("config_{}{}", ts, suffix)};
  });
  io::AtomicFileSink& file = files.sinks[0];
  io::StoredChain stored(file, config.age_recipients);
  TarWriter writer(stored.head(), TarCompression::gzip, 1);
  std::size_t file_count = 0;
  for (const auto& [path, it] : items) {
    if (it.type == "directory") {
      writer.add_directory(path, it.mode, it.mtime, it.owner);
    } else if (it.type == "symlink") {
      writer.add_symlink(path, it.target, it.mtime, it.owner);
    } else {
      writer.begin(path, it.content.size(), it.mtime, true, it.mode, it.owner);
      writer.write(std::span<const char>(it.content.data(), it.content.size()));
      writer.end();
      ++file_count;
    }
  }
  writer.close();

  Meta meta = new_backup_meta("config", file.final_path(), stored.size(), stored.sha256(), config.profile,
                              files.time, seconds_since(t0),
                              options.set_id.empty() ? new_set_id(files.time) : options.set_id,
                              config.age_recipients);
  meta.format = "pax_tar";
  meta.compression = "gzip";
  meta.source = {{"app_root", config.app_root.string()},
                 {"paths", config.config_paths},
                 {"missing", missing},
                 {"files", file_count}};
  publish_backup(file, meta);
  spdlog::info("backup config: wrote {} ({} files{})", file.final_path().string(), file_count,
               missing.empty() ? "" : fmt::format(", {} missing path(s)", missing.size()));
  return {file.final_path(), meta};
}

}  // namespace backupctl
