#include "command/config_tree.hpp"

#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <deque>
#include <functional>
#include <optional>

#include "io/age.hpp"
#include "util/error.hpp"
#include "util/format.hpp"
#include "util/fs.hpp"

namespace backupctl {

namespace fs = std::filesystem;

namespace {

// Config trees are small; an archive bigger than this is not a config backup.
constexpr std::uint64_t kMaxConfigBytes = 64u << 20;

std::string user_name(uid_t uid) {
  struct passwd pw, *found = nullptr;
  std::vector<char> buf(16384);
  if (::getpwuid_r(uid, &pw, buf.data(), buf.size(), &found) == 0 && found) return found->pw_name;
  return "";
}

std::string group_name(gid_t gid) {
  struct group gr, *found = nullptr;
  std::vector<char> buf(16384);
  if (::getgrgid_r(gid, &gr, buf.data(), buf.size(), &found) == 0 && found) return found->gr_name;
  return "";
}

// A link's target resolved from the link's folder must stay inside APP_ROOT.
bool link_stays_inside(const std::string& path, const std::string& target) {
  if (target.empty() || target[0] == '/') return false;
  fs::path resolved = (fs::path(path).parent_path() / target).lexically_normal();
  return !resolved.empty() && *resolved.begin() != "..";
}

}  // namespace

bool owner_recorded(const EntryOwner& o) { return !o.user.empty() || !o.group.empty() || o.uid > 0 || o.gid > 0; }

std::pair<uid_t, gid_t> owner_ids(const EntryOwner& o) {
  uid_t uid = static_cast<uid_t>(o.uid);
  gid_t gid = static_cast<gid_t>(o.gid);
  std::vector<char> buf(16384);
  if (!o.user.empty()) {
    struct passwd pw, *found = nullptr;
    if (::getpwnam_r(o.user.c_str(), &pw, buf.data(), buf.size(), &found) == 0 && found) uid = found->pw_uid;
  }
  if (!o.group.empty()) {
    struct group gr, *found = nullptr;
    if (::getgrnam_r(o.group.c_str(), &gr, buf.data(), buf.size(), &found) == 0 && found) gid = found->gr_gid;
  }
  return {uid, gid};
}

std::string describe_owner(const EntryOwner& o) {
  return (o.user.empty() ? std::to_string(o.uid) : o.user) + ":" + (o.group.empty() ? std::to_string(o.gid) : o.group);
}

std::map<std::string, Item> collect(const Config& config, std::vector<std::string>* missing) {
  std::map<std::string, Item> items;
  std::function<void(const fs::path&, const std::string&)> visit = [&](const fs::path& abs, const std::string& rel) {
    struct stat st{};
    if (::lstat(abs.c_str(), &st) != 0) {
      if (missing) missing->push_back(rel);
      return;
    }
    Item it;
    it.path = rel;
    it.mode = st.st_mode & 07777;
    it.mtime = st.st_mtime;
    it.owner = {static_cast<long>(st.st_uid), static_cast<long>(st.st_gid), user_name(st.st_uid), group_name(st.st_gid)};
    if (S_ISLNK(st.st_mode)) {
      it.type = "symlink";
      it.target = fs::read_symlink(abs).string();
      items[rel] = it;
    } else if (S_ISDIR(st.st_mode)) {
      it.type = "directory";
      items[rel] = it;
      std::vector<std::string> names;
      for (const auto& de : fs::directory_iterator(abs)) names.push_back(de.path().filename().string());
      std::sort(names.begin(), names.end());
      for (const auto& n : names) visit(abs / n, rel + "/" + n);
    } else if (S_ISREG(st.st_mode)) {
      it.type = "file";
      it.content = read_file(abs);
      items[rel] = it;
    } else {
      spdlog::warn("config: skipping {} (not a file, folder or link)", rel);
    }
  };
  for (const auto& p : config.config_paths) {
    std::string rel = fs::path(p).lexically_normal().generic_string();
    while (!rel.empty() && rel.back() == '/') rel.pop_back();
    visit(config.app_root / rel, rel);
  }
  return items;
}

bool under_config_paths(const Config& config, const std::string& path) {
  for (const auto& p : config.config_paths) {
    std::string base = fs::path(p).lexically_normal().generic_string();
    while (!base.empty() && base.back() == '/') base.pop_back();
    if (path == base || path.rfind(base + "/", 0) == 0) return true;
  }
  return false;
}

bool safe_path(const std::string& path) {
  if (path.empty() || path[0] == '/') return false;
  for (const auto& part : fs::path(path)) {
    if (part == ".." || part == ".") return false;
  }
  return true;
}

std::map<std::string, Item> read_config_tar(const Config& config, const fs::path& file) {
  std::unique_ptr<io::Source> plain = io::open_plaintext(file, config.age_identity);
  TarReader reader(*plain);
  std::map<std::string, Item> items;
  TarEntry e;
  std::vector<char> buf(1 << 16);
  std::uint64_t total = 0;
  while (reader.next(e)) {
    std::string path = e.path;
    while (path.size() > 1 && path.back() == '/') path.pop_back();
    if (path.rfind("./", 0) == 0) path = path.substr(2);
    if (!safe_path(path) || !under_config_paths(config, path)) {
      throw Error(ErrorCode::verification, "the config archive holds " + e.path + ", outside CONFIG_PATHS",
                  "refusing it: nothing was written");
    }
    Item it;
    it.path = path;
    it.mode = e.mode;
    it.mtime = e.mtime;
    it.owner = e.owner;
    if (e.type == "file") {
      it.type = "file";
      for (std::size_t n; (n = reader.read(buf)) > 0;) {
        total += n;
        if (total > kMaxConfigBytes) throw Error(ErrorCode::verification, "the config archive is too large to be one");
        it.content.append(buf.data(), n);
      }
    } else if (e.type == "directory") {
      it.type = "directory";
    } else if (e.type == "symlink") {
      it.type = "symlink";
      it.target = e.symlink;
      it.outside = !link_stays_inside(path, e.symlink);
    } else {
      throw Error(ErrorCode::verification, "the config archive holds a " + e.type + " (" + e.path + ")",
                  "refusing it: config backups hold files, folders and links only");
    }
    items[path] = std::move(it);
  }
  return items;
}

// Where `rel` (a path under APP_ROOT) leads once every link on the way is followed, through the
// whole chain, in the tree as it is after the apply: the archive's items where it has them, a
// path under CONFIG_PATHS that it lacks is gone, the disk elsewhere. False when the path leaves
// APP_ROOT (or the links loop): a link is judged by where it ends up, not by how its own target
// looks, so a chain of links that each look local cannot lead out.
bool stays_inside(const Config& config, const std::map<std::string, Item>& backup, const std::string& rel) {
  auto split = [](const fs::path& p) {
    std::deque<std::string> parts;
    for (const auto& part : p) {
      std::string s = part.string();
      if (!s.empty() && s != "/") parts.push_back(s);
    }
    return parts;
  };
  std::vector<std::string> done;
  std::deque<std::string> todo = split(rel);
  const fs::path root = config.app_root.lexically_normal();
  for (int hops = 0; !todo.empty();) {
    std::string part = todo.front();
    todo.pop_front();
    if (part == ".") continue;
    if (part == "..") {
      if (done.empty()) return false;
      done.pop_back();
      continue;
    }
    done.push_back(part);
    std::string cur;
    for (const auto& d : done) cur += (cur.empty() ? "" : "/") + d;
    std::optional<std::string> target;
    if (auto it = backup.find(cur); it != backup.end()) {
      if (it->second.type == "symlink") target = it->second.target;
    } else if (!under_config_paths(config, cur)) {
      struct stat st{};
      fs::path on_disk = root / cur;
      if (::lstat(on_disk.c_str(), &st) == 0 && S_ISLNK(st.st_mode)) {
        std::error_code ec;
        target = fs::read_symlink(on_disk, ec).string();
      }
    }
    if (!target) continue;
    if (++hops > 40) return false;
    done.pop_back();
    fs::path t(*target);
    if (t.is_absolute()) {
      fs::path inside = t.lexically_normal().lexically_relative(root);
      if (inside.empty() || (inside.begin() != inside.end() && *inside.begin() == "..")) return false;
      done.clear();
      t = inside;
    }
    auto more = split(t);
    todo.insert(todo.begin(), more.begin(), more.end());
  }
  return true;
}

bool same_owner(const Item& backup, const Item& current) {
  if (!owner_recorded(backup.owner)) return true;
  auto [uid, gid] = owner_ids(backup.owner);
  return static_cast<long>(uid) == current.owner.uid && static_cast<long>(gid) == current.owner.gid;
}

bool same(const Item& a, const Item& b) {
  if (a.type != b.type) return false;
  if (a.type == "file") return a.content == b.content && a.mode == b.mode && same_owner(a, b);
  if (a.type == "symlink") return a.target == b.target && same_owner(a, b);
  return true;
}

}  // namespace backupctl
