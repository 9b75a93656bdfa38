#include "command/restore_config.hpp"

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

#include "command/backup_config.hpp"
#include "command/config_mask.hpp"
#include "command/config_tree.hpp"

namespace backupctl {

namespace fs = std::filesystem;

ConfigPlan preview_config(const Config& config, const fs::path& file, NoMeta no_meta) {
  const bool allow_no_meta = no_meta == NoMeta::allow;
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
  std::map<std::string, Item> backup = read_config_tar(config, file);
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
      change.diff = masked_diff(p, nullptr, &after);
    } else if (b == backup.end()) {
      change.status = "removed";
      std::string before = text(c->second);
      change.diff = masked_diff(p, &before, nullptr);
    } else if (same(b->second, c->second)) {
      change.status = "unchanged";
    } else if (b->second.outside) {
      change.status = "skipped";
      change.diff = "link " + p + " -> " + b->second.target + " leads out of APP_ROOT: not restored\n";
    } else {
      change.status = "changed";
      std::string before = text(c->second), after = text(b->second);
      if (before != after) change.diff = masked_diff(p, &before, &after);
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

namespace {

// One apply: its methods are the journal's steps (restore-config.safety-backup, .stage, .apply,
// .commit), after a check that changes nothing.
class ConfigApply {
 public:
  ConfigApply(const Config& config, const ConfigPlan& plan, Journal& journal, Progress& progress)
      : m_config(config), m_plan(plan), m_journal(journal), m_progress(progress),
        m_backup(read_config_tar(config, plan.file)) {}

  ConfigApplyReport run() {
    check();
    safety_backup();
    // The journal lists every file first: any failure, signal or crash before the commit rolls
    // every file back.
    Journal::Entry applying = m_journal.add("config_apply", journal_record());
    try {
      stage();
      swap_in();
    } catch (const Error& e) {
      roll_back(applying, e);
    }
    commit(applying);
    for (const auto& ch : m_changes) m_report.applied.push_back({ch.path, ch.status, ""});
    return m_report;
  }

 private:
  struct Change {
    std::string path, status;
    fs::path target;
    bool existed = false;
    const Item* item = nullptr;  // nullptr: the file goes
  };

  // 1. Everything is checked before anything is written: real folders on the way, every written
  // path inside APP_ROOT through every link, no leftover of an earlier apply in the way.
  void check() {
    for (const auto& c : m_plan.changes) {
      if (c.status == "unchanged" || c.status == "skipped") continue;
      Change ch{c.path, c.status, m_config.app_root / c.path, false, nullptr};
      ch.existed = lexists(ch.target);
      for (const auto& d : missing_dirs(m_config.app_root, c.path)) {
        if (std::find(m_dirs.begin(), m_dirs.end(), d) == m_dirs.end()) m_dirs.push_back(d);
      }
      if (c.status != "removed") {
        ch.item = &m_backup.at(c.path);
        if (!stays_inside(m_config, m_backup, c.path)) {
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
      m_changes.push_back(ch);
    }
  }

  // 2. The current files, so the apply can itself be undone. On a host being rebuilt none of
  // CONFIG_PATHS is there yet: nothing to keep.
  void safety_backup() {
    m_journal.step("restore-config.safety-backup");
    bool anything_there = false;
    for (const auto& p : m_config.config_paths) anything_there = anything_there || lexists(m_config.app_root / p);
    if (anything_there) {
      Journal::Entry unfinished = m_journal.add("backup", nlohmann::json::object());
      m_report.safety_backup = backup_config(m_config, m_progress).file;
      unfinished.settle();
    }
    m_safety = anything_there ? m_report.safety_backup.string() : "nothing: none of CONFIG_PATHS existed";
  }

  nlohmann::json journal_record() {
    nlohmann::json items = nlohmann::json::array();
    for (const auto& ch : m_changes) {
      items.push_back({{"path", ch.path}, {"action", ch.status == "removed" ? "remove" : "write"}, {"existed", ch.existed}});
    }
    nlohmann::json dir_list = nlohmann::json::array();
    for (const auto& d : m_dirs) dir_list.push_back(fs::relative(d, m_config.app_root).string());
    m_record = {{"app_root", m_config.app_root.string()}, {"items", items}, {"dirs", dir_list}, {"committed", false}};
    return m_record;
  }

  // 3. Every file staged beside its target (content, mode, owner, mtime; fsynced), the missing
  // folders made with their recorded owners.
  void stage() {
    m_journal.step("restore-config.stage");
    for (const auto& d : m_dirs) {
      if (::mkdir(d.c_str(), 0755) != 0) throw_errno("cannot create " + d.string());
      auto rel = fs::relative(d, m_config.app_root).generic_string();
      if (auto it = m_backup.find(rel); it != m_backup.end() && owner_recorded(it->second.owner)) {
        auto [uid, gid] = owner_ids(it->second.owner);
        if (::chown(d.c_str(), uid, gid) != 0) throw_errno("cannot give " + d.string() + " to " + describe_owner(it->second.owner));
        ::chmod(d.c_str(), it->second.mode);
      }
    }
    for (const auto& ch : m_changes) {
      if (ch.item) stage_file(ch);
    }
  }

  static void stage_file(const Change& ch) {
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
      return;
    }
    Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!fd) throw_errno("cannot create " + tmp.string());
    write_all(fd.get(), it.content.data(), it.content.size(), "cannot write " + tmp.string());
    if (chown_it && ::fchown(fd.get(), uid, gid) != 0) throw chown_error();
    if (::fchmod(fd.get(), it.mode) != 0) throw_errno("cannot chmod " + tmp.string());
    struct timespec times[2] = {{it.mtime, 0}, {it.mtime, 0}};
    ::futimens(fd.get(), times);
    if (::fsync(fd.get()) != 0) throw_errno("cannot fsync " + tmp.string());
  }

  // Then all swapped in, each original kept as a hard link until the commit.
  void swap_in() {
    m_journal.step("restore-config.apply");
    std::size_t n = 0;
    for (const auto& ch : m_changes) {
      if (n++ == m_changes.size() / 2) fault_point("restore-config.half-applied");
      if (ch.existed && ::link(ch.target.c_str(), kept_path(ch.target).c_str()) != 0) {
        throw_errno("cannot keep " + ch.target.string() + " while applying");
      }
      // rename() replaces a link at `target` itself, never what it points to.
      if (ch.item && ::rename(staged_path(ch.target).c_str(), ch.target.c_str()) != 0) {
        throw_errno("cannot put " + ch.target.string() + " in place");
      }
      if (!ch.item && ::unlink(ch.target.c_str()) != 0 && errno != ENOENT) throw_errno("cannot remove " + ch.target.string());
    }
    for (const auto& ch : m_changes) fsync_dir(ch.target.parent_path());
  }

  [[noreturn]] void roll_back(Journal::Entry& applying, const Error& e) {
    InterruptShield shield;
    try {
      applying.undo();
    } catch (const std::exception& again) {
      throw Error(e.code(), std::string(e.what()) + "; rolling the other files back failed too: " + again.what(),
                  "the config as it was is in " + m_safety + ": restore-config BACKUP_FILE=" + m_safety +
                      " MODE=apply CONFIRM=YES");
    }
    if (e.code() == ErrorCode::interrupted) throw e;
    throw Error(e.code(), e.what(),
                (e.hint().empty() ? "" : e.hint() + "; ") + "every file was left as it was (the config as it was is also in " +
                    m_safety + ")");
  }

  // 4. Committed: the kept originals go.
  void commit(Journal::Entry& applying) {
    m_journal.step("restore-config.commit");
    m_record["committed"] = true;
    applying.update(m_record);
    for (const auto& ch : m_changes) ::unlink(kept_path(ch.target).c_str());
    applying.settle();
  }

  const Config& m_config;
  const ConfigPlan& m_plan;
  Journal& m_journal;
  Progress& m_progress;
  const std::map<std::string, Item> m_backup;
  std::vector<Change> m_changes;
  std::vector<fs::path> m_dirs;  // folders to create, parents first
  std::string m_safety;          // where the config as it was is, for messages
  nlohmann::json m_record;       // the journal's record of the apply
  ConfigApplyReport m_report;
};

}  // namespace

ConfigApplyReport apply_config(const Config& config, const ConfigPlan& plan, Journal& journal, Progress& progress) {
  return ConfigApply(config, plan, journal, progress).run();
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
