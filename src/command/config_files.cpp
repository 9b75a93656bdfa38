#include "command/config_files.hpp"

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
#include <regex>
#include <set>
#include <optional>
#include <sstream>

#include "archive/object_archive.hpp"
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

namespace backupctl {

namespace fs = std::filesystem;

namespace {

// Config trees are small; an archive bigger than this is not a config backup.
constexpr std::uint64_t kMaxConfigBytes = 64u << 20;

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

// Whether the archive recorded an owner: backups before owners were recorded have uid 0, gid 0
// and no names (and are restored with the owner the file has, or ours).
bool owner_recorded(const EntryOwner& o) { return !o.user.empty() || !o.group.empty() || o.uid > 0 || o.gid > 0; }

// The uid and gid an entry gets here: by name when this system knows the name, else by number.
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

// Walks CONFIG_PATHS under APP_ROOT without following symbolic links. Missing paths are returned
// in `missing`.
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

// A link's target resolved from the link's folder must stay inside APP_ROOT.
bool link_stays_inside(const std::string& path, const std::string& target) {
  if (target.empty() || target[0] == '/') return false;
  fs::path resolved = (fs::path(path).parent_path() / target).lexically_normal();
  return !resolved.empty() && *resolved.begin() != "..";
}

std::map<std::string, Item> read_config_archive(const Config& config, const fs::path& file) {
  std::unique_ptr<io::Source> plain = io::open_plaintext(file, config.age_identity);
  ObjectArchiveReader reader(*plain);
  std::map<std::string, Item> items;
  ArchiveEntry e;
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

// --- secret masking -----------------------------------------------------------------------------
//
// Any value whose name looks secret is masked, whatever the syntax: env files (KEY=value, export),
// compose maps (key: value) and lists (- KEY=value, ["KEY=value"]), JSON ("key": "value"), quoted
// or not; command-line flags (--db-password value, --token=x, ["--db-password", "x"]); passwords
// in URLs, with or without a user (redis://:pw@host); YAML block values (password: |) and PEM
// private keys. When unsure, mask: a masked non-secret costs a look at the file, a shown secret
// cannot be taken back.

const std::string kSecretWords = "(?:pass|pwd|secret|token|key|credential|auth|private|salt|dsn|cookie)";
const std::string kName = "[A-Za-z0-9_.\\-]*" + kSecretWords + "[A-Za-z0-9_.\\-]*";

// "KEY=value" / "key: value" as the whole line (after indentation, "- ", "export ", a quote).
const std::regex& whole_line() {
  static const std::regex re("^(\\s*(?:-\\s+)?(?:export\\s+)?([\"']?)" + kName + "[\"']?\\s*[:=]\\s*)(.*)$",
                             std::regex::icase);
  return re;
}

// "name=value" or "name: value" inside a line (a list of them, JSON on one line, a URL query).
const std::regex& inline_pair() {
  static const std::regex re("([\"']?" + kName + "[\"']?\\s*[:=]\\s*)(\"[^\"]*\"|'[^']*'|[^\\s,;&\"'}\\]]+)",
                             std::regex::icase);
  return re;
}

// A flag and its value: "--db-password value", "--token=x", "\"--db-password\", \"x\"".
const std::regex& flag_value() {
  static const std::regex re("(--?" + kName + "[\"']?(?:\\s*,\\s*[\"']?|\\s+[\"']?|=[\"']?))([^\\s\"',\\]]+)",
                             std::regex::icase);
  return re;
}

const std::regex& url_password() {
  static const std::regex re(R"(([A-Za-z][A-Za-z0-9+.\-]*://[^/\s:@]*:)([^@\s/]+)@)");
  return re;
}

// Masks `value` keeping its quotes: "x" -> "****".
std::string masked_value(const std::string& value) {
  if (value.size() >= 2 && (value.front() == '"' || value.front() == '\'') && value.back() == value.front()) {
    return std::string(1, value.front()) + "****" + value.back();
  }
  return "****";
}

// Replaces group `g` of every match of `re` in `line` with its masked value.
bool mask_all(std::string& line, const std::regex& re, int g) {
  std::string out;
  bool any = false;
  auto begin = std::sregex_iterator(line.begin(), line.end(), re);
  std::size_t last = 0;
  for (auto it = begin; it != std::sregex_iterator(); ++it) {
    const std::smatch& m = *it;
    out += line.substr(last, static_cast<std::size_t>(m.position(g)) - last);
    out += masked_value(m.str(g));
    last = static_cast<std::size_t>(m.position(g) + m.length(g));
    any = true;
  }
  if (!any) return false;
  line = out + line.substr(last);
  return true;
}

// Masks one line; returns whether it held a secret. `block` is set when the line opens a YAML
// block value (password: |) whose more indented lines follow.
bool mask_line(std::string& line, bool& block) {
  bool secret = false;
  std::smatch m;
  if (std::regex_match(line, m, whole_line())) {
    std::string value = m.str(3);
    std::string trail;
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t' || value.back() == ',' || value.back() == '\r')) {
      trail.insert(trail.begin(), value.back());
      value.pop_back();
    }
    std::string quote = m.str(2);
    if (!quote.empty() && !value.empty() && value.back() == quote[0] &&
        !(value.size() >= 2 && value.front() == quote[0])) {
      trail.insert(0, quote);  // "KEY=value": the quote opened before the key
      value.pop_back();
    }
    if (value == "|" || value == ">" || value == "|-" || value == ">-" || value == "|+" || value == ">+") {
      block = true;
    } else if (!value.empty()) {
      line = m.str(1) + masked_value(value) + trail;
      secret = true;
    }
  } else {
    secret = mask_all(line, inline_pair(), 2) || secret;
  }
  secret = mask_all(line, flag_value(), 2) || secret;
  std::string masked = std::regex_replace(line, url_password(), "$1****@");
  secret = secret || masked != line;
  line = masked;
  return secret;
}

std::size_t indent_of(const std::string& line) {
  std::size_t n = line.find_first_not_of(" \t");
  return n == std::string::npos ? line.size() : n;
}

// Masks every line of `text`: lines holding a secret, the lines of a YAML block value of a secret
// key, and the body of a PEM private key. Returns the masked lines, in order.
std::vector<std::pair<std::string, bool>> mask_lines(const std::string& text) {
  std::vector<std::pair<std::string, bool>> out;  // line, held a secret
  std::istringstream in(text);
  bool pem = false;
  long block_indent = -1;  // >= 0: inside a YAML block value of a secret name
  for (std::string line; std::getline(in, line);) {
    if (pem) {
      if (line.find("-----END") != std::string::npos) {
        pem = false;
        out.emplace_back(line, false);
      } else {
        out.emplace_back(std::string(indent_of(line), ' ') + "****", true);
      }
      continue;
    }
    if (block_indent >= 0) {
      if (line.find_first_not_of(" \t") == std::string::npos || static_cast<long>(indent_of(line)) > block_indent) {
        out.emplace_back(line.find_first_not_of(" \t") == std::string::npos ? line : std::string(indent_of(line), ' ') + "****",
                         true);
        continue;
      }
      block_indent = -1;
    }
    if (line.find("-----BEGIN") != std::string::npos && line.find("PRIVATE KEY") != std::string::npos) {
      pem = true;
      out.emplace_back(line, true);
      continue;
    }
    bool block = false;
    std::string masked = line;
    bool secret = mask_line(masked, block);
    if (block) block_indent = static_cast<long>(indent_of(line));
    out.emplace_back(masked, secret || block);
  }
  return out;
}

}  // namespace

std::string mask_secrets(const std::string& text, const std::string& other) {
  // The other side's secret lines, by their masked form: when ours masks the same but its value
  // differs, say so, or the masked lines would look the same and a changed password would not
  // show in the diff.
  std::map<std::string, std::string> other_secrets;
  {
    std::istringstream raw(other);
    std::string line;
    for (const auto& [masked, secret] : mask_lines(other)) {
      std::getline(raw, line);
      if (secret) other_secrets[masked] = line;
    }
  }
  std::string out;
  std::istringstream raw(text);
  std::string line;
  for (const auto& [masked, secret] : mask_lines(text)) {
    std::getline(raw, line);
    std::string shown = masked;
    if (secret && !other.empty()) {
      auto it = other_secrets.find(masked);
      if (it != other_secrets.end() && it->second != line) shown += "  # (secret changed)";
    }
    out += shown + "\n";
  }
  if (!text.empty() && text.back() != '\n' && !out.empty()) out.pop_back();
  return out;
}

namespace {

std::string unified_diff(const std::string& path, const std::string* before, const std::string* after) {
  auto binary = [](const std::string* s) { return s && s->find('\0') != std::string::npos; };
  if (binary(before) || binary(after)) return "Binary file " + path + " differs\n";
  // Mask both sides (each knowing the other, to say which secret changed), then let diff(1) do the
  // diffing in a private folder.
  TempDir tmp("backupctl-diff");
  ::chmod(tmp.path().c_str(), 0700);
  std::string a = before ? mask_secrets(*before) : "";
  std::string b = after ? mask_secrets(*after, before ? *before : "") : "";
  write_file_atomic(tmp.path() / "a", a, 0600);
  write_file_atomic(tmp.path() / "b", b, 0600);
  RunResult r = run_command({.argv = {"diff", "-u", "--label", before ? "current/" + path : "/dev/null",
                                      "--label", after ? "backup/" + path : "/dev/null",
                                      (tmp.path() / "a").string(), (tmp.path() / "b").string()}});
  return r.out;
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

}  // namespace

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
  ObjectArchiveWriter writer(stored.head(), ArchiveCompression::gzip, 1);
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

ConfigPlan preview_config(const Config& config, const fs::path& file, bool allow_no_meta) {
  ConfigPlan plan;
  plan.file = file;
  std::error_code ec;
  if (!fs::is_regular_file(file, ec)) {
    throw Error(ErrorCode::not_found, "backup file " + file.string() + " does not exist",
                "`backupctl list --kind config` shows the config backups");
  }
  fs::path meta_path = file;
  meta_path += ".meta";
  if (fs::exists(meta_path, ec)) {
    Meta meta = read_meta(meta_path);
    io::FileDigest d = io::digest_file(file.string());
    if (d.sha256 != meta.sha256) {
      throw Error(ErrorCode::verification, file.filename().string() + " does not match its meta (sha256)",
                  "the file is damaged or was changed; nothing was touched");
    }
  } else if (!allow_no_meta) {
    throw Error(ErrorCode::verification, "no " + meta_path.filename().string() + ": the checksum cannot be checked",
                "an archive made elsewhere needs --allow-no-meta");
  }
  std::map<std::string, Item> backup = read_config_archive(config, file);
  for (auto& [p, it] : backup) {
    if (it.type == "symlink") it.outside = it.outside || !stays_inside(config, backup, p);
  }
  std::map<std::string, Item> current = collect(config, nullptr);
  std::set<std::string> paths;
  for (const auto& [p, it] : backup) {
    if (it.type != "directory") paths.insert(p);
  }
  for (const auto& [p, it] : current) {
    if (it.type != "directory") paths.insert(p);
  }
  for (const auto& p : paths) {
    auto b = backup.find(p);
    auto c = current.find(p);
    ConfigChange change{p, "", ""};
    auto text = [](const Item& i) { return i.type == "symlink" ? "-> " + i.target + "\n" : i.content; };
    if (b != backup.end() && c == current.end() && b->second.outside) {
      change.status = "skipped";
      change.diff = "link " + p + " -> " + b->second.target + " leads out of APP_ROOT: not restored\n";
    } else if (b != backup.end() && c == current.end()) {
      change.status = "added";
      std::string after = text(b->second);
      change.diff = unified_diff(p, nullptr, &after);
    } else if (b == backup.end()) {
      change.status = "removed";
      std::string before = text(c->second);
      change.diff = unified_diff(p, &before, nullptr);
    } else if (same(b->second, c->second)) {
      change.status = "unchanged";
    } else if (b->second.outside) {
      change.status = "skipped";
      change.diff = "link " + p + " -> " + b->second.target + " leads out of APP_ROOT: not restored\n";
    } else {
      change.status = "changed";
      std::string before = text(c->second), after = text(b->second);
      if (before != after) change.diff = unified_diff(p, &before, &after);
      if (b->second.type == "file" && c->second.mode != b->second.mode) {
        change.diff += fmt::format("{}: mode {:o} -> {:o}\n", p, c->second.mode, b->second.mode);
      }
      if (!same_owner(b->second, c->second)) {
        change.diff += fmt::format("{}: owner {} -> {}\n", p, describe_owner(c->second.owner), describe_owner(b->second.owner));
      }
    }
    plan.changes.push_back(std::move(change));
  }
  return plan;
}

std::string ConfigPlan::describe() const {
  std::string out = fmt::format("config restore preview of {} (nothing has been written):\n", file.string());
  for (const auto& c : changes) out += fmt::format("  {:<10} {}\n", c.status, c.path);
  for (const auto& c : changes) {
    if (!c.diff.empty()) out += "\n" + c.diff;
  }
  return out;
}

nlohmann::json ConfigPlan::to_json() const {
  nlohmann::json files = nlohmann::json::array();
  for (const auto& c : changes) files.push_back({{"path", c.path}, {"status", c.status}, {"diff", c.diff}});
  return {{"file", file.string()}, {"files", files}};
}

namespace {

// The folders from APP_ROOT down to `rel`'s parent that are missing (to be created), after
// checking that every existing one is a real folder, never a link: writing through a linked
// folder could land anywhere.
std::vector<fs::path> missing_dirs(const fs::path& root, const std::string& rel) {
  std::vector<fs::path> missing;
  fs::path current = root;
  for (const auto& part : fs::path(rel).parent_path()) {
    current /= part;
    struct stat st{};
    if (::lstat(current.c_str(), &st) != 0) {
      missing.push_back(current);
      continue;
    }
    if (!missing.empty() || S_ISLNK(st.st_mode) || !S_ISDIR(st.st_mode)) {
      throw Error(ErrorCode::verification,
                  "cannot write " + rel + ": " + current.string() + " is a link or not a folder",
                  "refusing to write through it; fix the folder by hand; nothing was changed");
    }
  }
  return missing;
}

// The names an apply uses beside each file: the staged new content, and the original kept (a
// hard link) until the apply commits.
fs::path staged_path(const fs::path& target) { return target.string() + ".backupctl-new"; }
fs::path kept_path(const fs::path& target) { return target.string() + ".backupctl-prev"; }

bool lexists(const fs::path& p) {
  struct stat st{};
  return ::lstat(p.c_str(), &st) == 0;
}

}  // namespace

ConfigApplyReport apply_config(const Config& config, const ConfigPlan& plan, Journal& journal, Progress& progress) {
  ConfigApplyReport report;
  std::map<std::string, Item> backup = read_config_archive(config, plan.file);
  struct Change {
    std::string path, status;
    fs::path target;
    bool existed = false;
    const Item* item = nullptr;
  };
  std::vector<Change> changes;
  std::vector<fs::path> dirs;  // folders to create, parents first
  // 1. Everything is checked before anything is written: real folders on the way, every written
  // path inside APP_ROOT through every link, no leftover of an earlier apply in the way.
  for (const auto& c : plan.changes) {
    if (c.status == "unchanged" || c.status == "skipped") continue;
    Change ch{c.path, c.status, config.app_root / c.path, false, nullptr};
    ch.existed = lexists(ch.target);
    for (const auto& d : missing_dirs(config.app_root, c.path)) {
      if (std::find(dirs.begin(), dirs.end(), d) == dirs.end()) dirs.push_back(d);
    }
    if (c.status != "removed") {
      ch.item = &backup.at(c.path);
      if (!stays_inside(config, backup, c.path)) {
        throw Error(ErrorCode::verification, "cannot write " + c.path + ": the links on its way lead out of APP_ROOT",
                    "refusing the whole apply; nothing was changed");
      }
    }
    for (const fs::path& p : {staged_path(ch.target), kept_path(ch.target)}) {
      if (lexists(p)) {
        throw Error(ErrorCode::io, p.string() + " is in the way (left by an earlier apply?)",
                    "remove it by hand after checking it; nothing was changed");
      }
    }
    changes.push_back(ch);
  }

  // 2. The current files, so the apply can itself be undone.
  // On a host being rebuilt none of CONFIG_PATHS is there yet: nothing to keep.
  journal.step("restore-config.safety-backup");
  bool anything_there = false;
  for (const auto& p : config.config_paths) anything_there = anything_there || lexists(config.app_root / p);
  if (anything_there) {
    Journal::Entry unfinished = journal.add("backup", nlohmann::json::object());
    report.safety_backup = backup_config(config, progress).file;
    unfinished.settle();
  }
  const std::string safety = anything_there ? report.safety_backup.string() : "nothing: none of CONFIG_PATHS existed";

  // 3. Stage every file beside its target (content, mode, owner, mtime; fsynced), then swap them
  // all in, keeping each original as a hard link until the end. The journal lists them first:
  // any failure, signal or crash before the commit rolls every file back.
  nlohmann::json items = nlohmann::json::array();
  for (const auto& ch : changes) {
    items.push_back({{"path", ch.path}, {"action", ch.status == "removed" ? "remove" : "write"}, {"existed", ch.existed}});
  }
  nlohmann::json dir_list = nlohmann::json::array();
  for (const auto& d : dirs) dir_list.push_back(fs::relative(d, config.app_root).string());
  nlohmann::json data = {{"app_root", config.app_root.string()}, {"items", items}, {"dirs", dir_list}, {"committed", false}};
  Journal::Entry applying = journal.add("config_apply", data);
  try {
    journal.step("restore-config.stage");
    for (const auto& d : dirs) {
      if (::mkdir(d.c_str(), 0755) != 0) throw_errno("cannot create " + d.string());
      auto rel = fs::relative(d, config.app_root).generic_string();
      if (auto it = backup.find(rel); it != backup.end() && owner_recorded(it->second.owner)) {
        auto [uid, gid] = owner_ids(it->second.owner);
        if (::chown(d.c_str(), uid, gid) != 0) throw_errno("cannot give " + d.string() + " to " + describe_owner(it->second.owner));
        ::chmod(d.c_str(), it->second.mode);
      }
    }
    for (const auto& ch : changes) {
      if (!ch.item) continue;
      const Item& it = *ch.item;
      fs::path tmp = staged_path(ch.target);
      // The recorded owner; for backups that recorded none, the one the file has now.
      bool chown_it = owner_recorded(it.owner);
      auto [uid, gid] = owner_ids(it.owner);
      if (!chown_it && ch.existed) {
        struct stat st{};
        if (::lstat(ch.target.c_str(), &st) == 0) {
          chown_it = true;
          uid = st.st_uid;
          gid = st.st_gid;
        }
      }
      auto chown_error = [&] {
        return Error(ErrorCode::io,
                     "cannot give " + ch.path + " to " + describe_owner(it.owner) + ": " + std::strerror(errno),
                     ::geteuid() == 0 ? "check the file system" : "run the apply as root (or as that user)");
      };
      if (it.type == "symlink") {
        if (::symlink(it.target.c_str(), tmp.c_str()) != 0) throw_errno("cannot create the link " + tmp.string());
        if (chown_it && ::lchown(tmp.c_str(), uid, gid) != 0) throw chown_error();
      } else {
        Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
        if (!fd) throw_errno("cannot create " + tmp.string());
        write_all(fd.get(), it.content.data(), it.content.size(), "cannot write " + tmp.string());
        if (chown_it && ::fchown(fd.get(), uid, gid) != 0) throw chown_error();
        if (::fchmod(fd.get(), it.mode) != 0) throw_errno("cannot chmod " + tmp.string());
        struct timespec times[2] = {{it.mtime, 0}, {it.mtime, 0}};
        ::futimens(fd.get(), times);
        if (::fsync(fd.get()) != 0) throw_errno("cannot fsync " + tmp.string());
      }
    }
    journal.step("restore-config.apply");
    std::size_t n = 0;
    for (const auto& ch : changes) {
      if (n++ == changes.size() / 2) fault_point("restore-config.half-applied");
      if (ch.existed && ::link(ch.target.c_str(), kept_path(ch.target).c_str()) != 0) {
        throw_errno("cannot keep " + ch.target.string() + " while applying");
      }
      // rename() replaces a link at `target` itself, never what it points to.
      if (ch.item && ::rename(staged_path(ch.target).c_str(), ch.target.c_str()) != 0) {
        throw_errno("cannot put " + ch.target.string() + " in place");
      }
      if (!ch.item && ::unlink(ch.target.c_str()) != 0 && errno != ENOENT) throw_errno("cannot remove " + ch.target.string());
    }
    for (const auto& ch : changes) fsync_dir(ch.target.parent_path());
  } catch (const Error& e) {
    InterruptShield shield;
    try {
      applying.undo();
    } catch (const std::exception& again) {
      throw Error(e.code(), std::string(e.what()) + "; rolling the other files back failed too: " + again.what(),
                  "the config as it was is in " + safety + ": restore-config BACKUP_FILE=" + safety +
                      " MODE=apply CONFIRM=YES");
    }
    if (e.code() == ErrorCode::interrupted) throw;
    throw Error(e.code(), e.what(),
                (e.hint().empty() ? "" : e.hint() + "; ") + "every file was left as it was (the config as it was is also in " +
                    safety + ")");
  }
  // 4. Committed: the kept originals go.
  journal.step("restore-config.commit");
  data["committed"] = true;
  applying.update(data);
  for (const auto& ch : changes) ::unlink(kept_path(ch.target).c_str());
  applying.settle();
  for (const auto& ch : changes) report.applied.push_back({ch.path, ch.status, ""});
  return report;
}

std::string rollback_config_apply(const Config& config, const nlohmann::json& data) {
  if (json_string(data, "app_root") != config.app_root.string()) {
    throw Error(ErrorCode::repair_needed,
                "the interrupted config apply was in " + json_string(data, "app_root", "?") + ", this configuration's APP_ROOT is " +
                    config.app_root.string(),
                "run `backupctl repair` with that run's settings");
  }
  const bool committed = json_bool(data, "committed", false);
  std::vector<std::string> restored;
  const auto& items = data.contains("items") && data["items"].is_array() ? data["items"] : nlohmann::json::array();
  for (auto it = items.rbegin(); it != items.rend(); ++it) {
    std::string path = json_string(*it, "path");
    if (!safe_path(path) || !under_config_paths(config, path)) {
      throw Error(ErrorCode::verification, "the journal names \"" + path + "\" as a config file: not acted on",
                  "look at the journal, then `backupctl repair --discard`");
    }
    fs::path target = config.app_root / path, staged = staged_path(target), kept = kept_path(target);
    const bool write = json_string(*it, "action") == "write";
    const bool existed = json_bool(*it, "existed", false);
    if (committed) {
      ::unlink(kept.c_str());
      ::unlink(staged.c_str());
      continue;
    }
    if (lexists(kept)) {
      if (::rename(kept.c_str(), target.c_str()) != 0) throw_errno("cannot put " + target.string() + " back");
      restored.push_back(path);
    } else if (write && !existed && !lexists(staged) && lexists(target)) {
      if (::unlink(target.c_str()) != 0) throw_errno("cannot remove " + target.string());  // it was added
      restored.push_back(path);
    }
    ::unlink(staged.c_str());
  }
  if (!committed && data.contains("dirs") && data["dirs"].is_array()) {
    for (auto it = data["dirs"].rbegin(); it != data["dirs"].rend(); ++it) {
      std::string rel = it->is_string() ? it->get<std::string>() : "";
      if (safe_path(rel)) ::rmdir((config.app_root / rel).c_str());  // only when empty
    }
  }
  if (committed) return "the interrupted config apply had committed: removed the originals it kept";
  std::string list;
  for (const auto& p : restored) list += (list.empty() ? "" : ", ") + p;
  return "rolled the interrupted config apply back: every file is as it was" + (list.empty() ? "" : " (" + list + ")");
}

std::string ConfigApplyReport::describe() const {
  std::string out = safety_backup.empty()
                        ? std::string("config applied; none of CONFIG_PATHS was there before (nothing to keep)\n")
                        : fmt::format("config applied; the files as they were are in {}\n", safety_backup.string());
  if (applied.empty()) out += "  nothing differed\n";
  for (const auto& c : applied) out += fmt::format("  {:<10} {}\n", c.status, c.path);
  return out;
}

}  // namespace backupctl
