// The config tree of CONFIG_PATHS under APP_ROOT, as backup config and restore config both see
// it: the items on disk (never following links), the items of a config archive (refused when an
// entry would land outside CONFIG_PATHS), owners by name or number, and where a link leads.
// Shared by command/backup_config.cpp and command/restore_config.cpp only.
#pragma once

#include <sys/types.h>

#include <ctime>
#include <filesystem>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "tar/tar.hpp"
#include "config/config.hpp"

namespace backupctl {

struct Item {
  std::string path;  // relative to APP_ROOT, '/'-separated
  std::string type;  // file | directory | symlink
  unsigned mode = 0;
  std::time_t mtime = 0;
  std::string content;  // files
  std::string target;   // symlinks
  bool outside = false;  // a link that leads out of APP_ROOT: never created by a restore
  EntryOwner owner;
};

// Whether the archive recorded an owner: backups before owners were recorded have uid 0, gid 0
// and no names (and are restored with the owner the file has, or ours).
bool owner_recorded(const EntryOwner& o);
// The uid and gid an entry gets here: by name when this system knows the name, else by number.
std::pair<uid_t, gid_t> owner_ids(const EntryOwner& o);
std::string describe_owner(const EntryOwner& o);

// Walks CONFIG_PATHS under APP_ROOT without following symbolic links. Missing paths are returned
// in `missing`.
std::map<std::string, Item> collect(const Config& config, std::vector<std::string>* missing);
bool under_config_paths(const Config& config, const std::string& path);
// A relative path without "..", ".", empty or absolute parts.
bool safe_path(const std::string& path);
// The items of a config backup. Throws Error(verification) for an entry outside CONFIG_PATHS
// or an archive too large to be a config backup.
std::map<std::string, Item> read_config_tar(const Config& config, const std::filesystem::path& file);

// Where `rel` (a path under APP_ROOT) leads once every link on the way is followed, in the tree
// as it is after the apply: false when it leaves APP_ROOT (or the links loop).
bool stays_inside(const Config& config, const std::map<std::string, Item>& backup, const std::string& rel);
// Whether the item on disk has the owner the backup's item recorded (true when none was recorded).
bool same_owner(const Item& backup, const Item& current);
// Whether an item of the backup equals the one on disk (type, content, mode, recorded owner).
bool same(const Item& backup, const Item& current);

}  // namespace backupctl
