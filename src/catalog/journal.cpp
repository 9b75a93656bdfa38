#include "catalog/journal.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <optional>

#include "util/error.hpp"
#include "util/fault.hpp"
#include "util/fs.hpp"
#include "util/process.hpp"
#include "util/signals.hpp"
#include "util/time.hpp"

namespace backupctl {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// BACKUP_DIR/journal, which must be a folder of its own: through a symbolic link, journals would
// be written to and read from wherever it points (someone else's forged ones, acted on by the
// repair). nullopt when it does not exist yet.
std::optional<fs::path> journal_dir(const fs::path& backup_dir) {
  fs::path dir = backup_dir / "journal";
  struct stat st {};
  if (::lstat(dir.c_str(), &st) != 0) {
    if (errno == ENOENT) return std::nullopt;
    throw_errno("cannot read " + dir.string());
  }
  if (!S_ISDIR(st.st_mode)) {
    throw Error(ErrorCode::usage,
                dir.string() + (S_ISLNK(st.st_mode) ? " is a symbolic link" : " is not a folder") +
                    ": journals are never read or written through it",
                "move it away (" + dir.string() + ".moved); backupctl makes the folder");
  }
  return dir;
}

}  // namespace

Journal::Journal(const fs::path& backup_dir, std::string command, Undo undo) : m_undo(std::move(undo)) {
  fs::path dir = backup_dir / "journal";
  if (!journal_dir(backup_dir)) make_dirs(dir, 0700);
  journal_dir(backup_dir);  // made by us, or by someone else meanwhile: a folder either way
  m_path = dir / fmt::format("run_{}_{}.json", name_timestamp(Clock::now()), ::getpid());
  m_json = {{"journal_version", 1},
            {"command", std::move(command)},
            {"pid", ::getpid()},
            {"host", machine_hostname()},
            {"started_at", iso8601(Clock::now())},
            {"step", ""},
            {"steps", json::array()},
            {"pending", json::array()}};
  write();
}

Journal::~Journal() {
  try {
    if (m_json["pending"].empty()) {
      if (::unlink(m_path.c_str()) == 0) fsync_dir(m_path.parent_path());
    } else {
      m_json["ended_at"] = iso8601(Clock::now());
      write();
      spdlog::error("{} entr{} of this run could not be undone; `backupctl repair` retries, `backupctl status` shows them",
                    m_json["pending"].size(), m_json["pending"].size() == 1 ? "y" : "ies");
    }
  } catch (const std::exception& e) {
    spdlog::error("cannot update the journal {}: {}", m_path.string(), e.what());
  }
}

void Journal::write() { write_file_atomic(m_path, m_json.dump(1) + "\n", 0600); }

void Journal::step(std::string_view name) {
  m_json["step"] = std::string(name);
  m_json["steps"].push_back(std::string(name));
  write();
  fault_point(name);
}

Journal::Entry Journal::add(std::string type, json data) {
  int id = m_next_id++;
  m_json["pending"].push_back({{"id", id}, {"type", std::move(type)}, {"data", std::move(data)},
                               {"at", iso8601(Clock::now())}});
  write();
  return Entry(this, id);
}

json* Journal::find(int id) {
  for (auto& e : m_json["pending"]) {
    if (e["id"] == id) return &e;
  }
  return nullptr;
}

void Journal::remove_entry(int id) {
  auto& pending = m_json["pending"];
  for (auto it = pending.begin(); it != pending.end(); ++it) {
    if ((*it)["id"] == id) {
      pending.erase(it);
      write();
      return;
    }
  }
}

void Journal::undo_entry(int id) {
  json* e = find(id);
  if (!e) return;
  std::string type = (*e)["type"];
  json data = (*e)["data"];
  try {
    m_undo(type, data);
  } catch (const std::exception& err) {
    (*e)["undo_error"] = err.what();
    write();
    throw;
  }
  remove_entry(id);
}

Journal::Entry::Entry(Entry&& other) noexcept
    : m_journal(std::exchange(other.m_journal, nullptr)), m_id(other.m_id) {}

Journal::Entry& Journal::Entry::operator=(Entry&& other) noexcept {
  if (this != &other) {
    undo_quietly();
    m_journal = std::exchange(other.m_journal, nullptr);
    m_id = other.m_id;
  }
  return *this;
}

Journal::Entry::~Entry() { undo_quietly(); }

void Journal::Entry::undo_quietly() noexcept {
  if (!m_journal) return;
  InterruptShield shield;  // a signal brought us here: the undo must still finish
  try {
    undo();
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
  }
}

void Journal::Entry::settle() {
  if (!m_journal) return;
  std::exchange(m_journal, nullptr)->remove_entry(m_id);
}

void Journal::Entry::undo() {
  if (!m_journal) return;
  Journal* j = std::exchange(m_journal, nullptr);
  j->undo_entry(m_id);
}

void Journal::Entry::update(json data) {
  if (!m_journal) return;
  if (json* e = m_journal->find(m_id)) {
    (*e)["data"] = std::move(data);
    m_journal->write();
  }
}

std::vector<JournalFile> read_journals(const fs::path& backup_dir) {
  std::vector<JournalFile> out;
  auto found = journal_dir(backup_dir);
  if (!found) return out;
  const fs::path& dir = *found;
  std::error_code ec;
  std::vector<fs::path> files;
  for (const auto& de : fs::directory_iterator(dir, ec)) {
    std::string name = de.path().filename().string();
    if (name.starts_with("run_") && name.ends_with(".json")) files.push_back(de.path());
  }
  std::sort(files.begin(), files.end());
  for (const auto& p : files) {
    JournalFile f{p, {}, {}};
    struct stat st{};
    if (::lstat(p.c_str(), &st) != 0) continue;  // settled meanwhile
    if (!S_ISREG(st.st_mode)) {
      f.problem = "not a regular file";
    } else if (st.st_uid != ::geteuid()) {
      f.problem = fmt::format("owned by uid {}, not by this user (uid {}): not acted on", st.st_uid, ::geteuid());
    } else if (st.st_mode & 022) {
      f.problem = "writable by others: not acted on";
    } else {
      try {
        f.json = json::parse(read_file(p));
        if (!f.json.is_object() || !f.json.contains("pending") || !f.json["pending"].is_array()) {
          f.problem = "not a backupctl journal";
        }
      } catch (const std::exception& e) {
        f.problem = std::string("unreadable: ") + e.what();
      }
    }
    out.push_back(std::move(f));
  }
  return out;
}

std::vector<fs::path> journal_leftovers(const fs::path& backup_dir) {
  std::vector<fs::path> out;
  auto found = journal_dir(backup_dir);
  if (!found) return out;
  std::error_code ec;
  for (const auto& de : fs::directory_iterator(*found, ec)) {
    const std::string name = de.path().filename().string();
    struct stat st{};
    if (name.starts_with("run_") && name.find(".json.tmp.") != std::string::npos &&
        ::lstat(de.path().c_str(), &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == ::geteuid()) {
      out.push_back(de.path());
    }
  }
  return out;
}

void remove_journal_leftovers(const fs::path& backup_dir) {
  const auto left = journal_leftovers(backup_dir);
  for (const auto& p : left) {
    if (::unlink(p.c_str()) != 0 && errno != ENOENT) throw_errno("cannot remove " + p.string());
  }
  if (!left.empty()) fsync_dir(left.front().parent_path());
}

void write_journal_file(const JournalFile& file) { write_file_atomic(file.path, file.json.dump(1) + "\n", 0600); }

void remove_journal_file(const JournalFile& file) {
  if (::unlink(file.path.c_str()) != 0 && errno != ENOENT) throw_errno("cannot remove " + file.path.string());
  fsync_dir(file.path.parent_path());
}

}  // namespace backupctl
