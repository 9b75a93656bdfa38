#include "command/config_files.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <functional>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "archive/object_archive.hpp"
#include "catalog/catalog.hpp"
#include "catalog/naming.hpp"
#include "io/age.hpp"
#include "util/error.hpp"
#include "util/format.hpp"
#include "util/fs.hpp"
#include "util/process.hpp"
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
  bool outside = false;  // a link whose target leaves APP_ROOT: never created by a restore
};

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

const std::regex& secret_line() {
  // KEY=value, export KEY=value, key: value, "key": "value" where the key names a secret.
  static const std::regex re(
      R"re(^(\s*(?:export\s+)?["']?([A-Za-z0-9_.\-]*(?:PASSWORD|PASSWD|SECRET|TOKEN|KEY|CREDENTIAL)[A-Za-z0-9_.\-]*)["']?\s*[:=]\s*)(.*?)(\s*,?\s*)$)re",
      std::regex::icase);
  return re;
}

const std::regex& url_password() {
  static const std::regex re(R"(([A-Za-z][A-Za-z0-9+.\-]*://[^/\s:@]+:)([^@\s/]+)@)");
  return re;
}

// The key of a line ("KEY" of KEY=value or key: value), or "" for other lines.
std::string line_key(const std::string& line) {
  auto pos = line.find_first_of("=:");
  if (pos == std::string::npos) return "";
  std::string key = line.substr(0, pos);
  key.erase(0, key.find_first_not_of(" \t\"'"));
  if (key.rfind("export ", 0) == 0) key = key.substr(7);
  while (!key.empty() && (key.back() == ' ' || key.back() == '"' || key.back() == '\'')) key.pop_back();
  return key;
}

// Masks one line; returns whether it held a secret.
bool mask_line(std::string& line) {
  bool secret = false;
  std::smatch m;
  if (std::regex_match(line, m, secret_line()) && !m[3].str().empty()) {
    line = m[1].str() + "****" + m[4].str();
    secret = true;
  }
  std::string masked = std::regex_replace(line, url_password(), "$1****@");
  secret = secret || masked != line;
  line = masked;
  return secret;
}

}  // namespace

std::string mask_secrets(const std::string& text, const std::string& other) {
  // Secret lines of the other side, by key: when ours differs, say so, or the masked lines would
  // look the same and a changed password would not show in the diff.
  std::map<std::string, std::string> other_secrets;
  {
    std::istringstream in(other);
    for (std::string line; std::getline(in, line);) {
      std::string raw = line;
      if (mask_line(line)) other_secrets[line_key(raw)] = raw;
    }
  }
  std::string out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    std::string raw = line;
    if (mask_line(line) && !other.empty()) {
      auto it = other_secrets.find(line_key(raw));
      if (it != other_secrets.end() && it->second != raw) line += "  # (secret changed)";
    }
    out += line + "\n";
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

bool same(const Item& a, const Item& b) {
  if (a.type != b.type) return false;
  if (a.type == "file") return a.content == b.content && a.mode == b.mode;
  if (a.type == "symlink") return a.target == b.target;
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
      writer.add_directory(path, it.mode, it.mtime);
    } else if (it.type == "symlink") {
      writer.add_symlink(path, it.target, it.mtime);
    } else {
      writer.begin(path, it.content.size(), it.mtime, true, it.mode);
      writer.write(std::span<const char>(it.content.data(), it.content.size()));
      writer.end();
      ++file_count;
    }
  }
  writer.close();
  file.commit();

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
  write_meta(dir / meta_filename(meta.file), meta);
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
      change.diff = "link " + p + " -> " + b->second.target + " leaves APP_ROOT: not restored\n";
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
      change.diff = "link " + p + " -> " + b->second.target + " leaves APP_ROOT: not restored\n";
    } else {
      change.status = "changed";
      std::string before = text(c->second), after = text(b->second);
      change.diff = before == after ? fmt::format("mode {:o} -> {:o}\n", c->second.mode, b->second.mode)
                                    : unified_diff(p, &before, &after);
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

// Makes sure every folder from APP_ROOT down to `rel`'s parent is a real folder (created when
// missing), never a link: writing through a linked folder could land anywhere.
void ensure_real_dirs(const fs::path& root, const std::string& rel) {
  fs::path current = root;
  fs::path parent = fs::path(rel).parent_path();
  for (const auto& part : parent) {
    current /= part;
    struct stat st{};
    if (::lstat(current.c_str(), &st) != 0) {
      if (::mkdir(current.c_str(), 0755) != 0) throw_errno("cannot create " + current.string());
      continue;
    }
    if (S_ISLNK(st.st_mode) || !S_ISDIR(st.st_mode)) {
      throw Error(ErrorCode::verification,
                  "cannot write " + rel + ": " + current.string() + " is a link or not a folder",
                  "refusing to write through it; fix the folder by hand");
    }
  }
}

}  // namespace

ConfigApplyReport apply_config(const Config& config, const ConfigPlan& plan, Progress& progress) {
  ConfigApplyReport report;
  std::map<std::string, Item> backup = read_config_archive(config, plan.file);
  // The current files first, so the apply can itself be undone.
  report.safety_backup = backup_config(config, progress).file;
  for (const auto& c : plan.changes) {
    if (c.status == "unchanged" || c.status == "skipped") continue;
    fs::path target = config.app_root / c.path;
    if (c.status == "removed") {
      ensure_real_dirs(config.app_root, c.path);
      if (::unlink(target.c_str()) != 0 && errno != ENOENT) throw_errno("cannot remove " + target.string());
      report.applied.push_back({c.path, c.status, ""});
      continue;
    }
    const Item& it = backup.at(c.path);
    ensure_real_dirs(config.app_root, c.path);
    fs::path tmp = target;
    tmp += ".backupctl-tmp";
    ::unlink(tmp.c_str());
    if (it.type == "symlink") {
      if (::symlink(it.target.c_str(), tmp.c_str()) != 0) throw_errno("cannot create the link " + tmp.string());
    } else {
      Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
      if (!fd) throw_errno("cannot create " + tmp.string());
      write_all(fd.get(), it.content.data(), it.content.size(), "cannot write " + tmp.string());
      if (::fchmod(fd.get(), it.mode) != 0) throw_errno("cannot chmod " + tmp.string());
      struct timespec times[2] = {{it.mtime, 0}, {it.mtime, 0}};
      ::futimens(fd.get(), times);
      if (::fsync(fd.get()) != 0) throw_errno("cannot fsync " + tmp.string());
    }
    // rename() replaces a link at `target` itself, never what it points to.
    if (::rename(tmp.c_str(), target.c_str()) != 0) {
      int err = errno;
      ::unlink(tmp.c_str());
      throw errno_error(err, "cannot put " + target.string() + " in place");
    }
    fsync_dir(target.parent_path());
    report.applied.push_back({c.path, c.status, ""});
  }
  return report;
}

std::string ConfigApplyReport::describe() const {
  std::string out = fmt::format("config applied; the files as they were are in {}\n", safety_backup.string());
  if (applied.empty()) out += "  nothing differed\n";
  for (const auto& c : applied) out += fmt::format("  {:<10} {}\n", c.status, c.path);
  return out;
}

}  // namespace backupctl
