// The journal of a run that changes live state (restores, undo, rehearsals, config apply, prune,
// backups): BACKUP_DIR/journal/run_<ts>_<pid>.json, rewritten atomically and fsynced before each
// step. It says which step the run is in and what is pending: every change made that is not yet
// settled (services it stopped, a side database, a swap in progress, temporary paths, a safety
// dump that must be put back, ...), each written *before* the action it covers.
//
// A run that ends normally settles or undoes every entry and removes its journal. A run that dies
// (kill -9, power loss, an OOM kill) leaves it behind; the next backupctl command that can take
// the BACKUP_DIR lock (the dead run's lock went with its process) repairs it: command/repair.hpp.
// In-process unwinding (an error, a signal) and that repair run the same code: each entry's undo
// is repair_entry() of its type.
#pragma once

#include <nlohmann/json.hpp>

#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace backupctl {

class Journal {
 public:
  // Carries out the undo of one entry (type, data); throws when it cannot.
  using Undo = std::function<void(const std::string& type, const nlohmann::json& data)>;

  // Starts the journal of this run. REQUIRES: the caller holds the BackupLock of `backup_dir`.
  Journal(const std::filesystem::path& backup_dir, std::string command, Undo undo);
  // Removes the file when nothing is pending; else leaves it for the next command to repair.
  ~Journal();
  Journal(const Journal&) = delete;
  Journal& operator=(const Journal&) = delete;

  // Announces the step about to run (written and fsynced), then passes the fault point of the
  // same name (util/fault.hpp).
  void step(std::string_view name);

  // A pending entry, written (and fsynced) before the change it covers. Destroyed without
  // settle(), it is undone on the spot (under an InterruptShield: also after a signal); when the
  // undo fails, the entry stays in the journal with the error, for `backupctl repair`.
  class Entry {
   public:
    Entry() = default;
    Entry(Entry&& other) noexcept;
    Entry& operator=(Entry&& other) noexcept;
    ~Entry();
    // The change it covers is final (a swap committed) or was undone by other means.
    void settle();
    // Undoes it now; throws when that fails (the entry then stays in the journal).
    void undo();
    // Replaces the entry's data (e.g. a swap learning the live database's connection flag).
    void update(nlohmann::json data);
    bool active() const { return m_journal != nullptr; }

   private:
    friend class Journal;
    Entry(Journal* journal, int id) : m_journal(journal), m_id(id) {}
    void undo_quietly() noexcept;  // undo(), its failure logged (the entry then stays)
    Journal* m_journal = nullptr;
    int m_id = 0;
  };
  [[nodiscard]] Entry add(std::string type, nlohmann::json data);

  const std::filesystem::path& path() const { return m_path; }

 private:
  void write();
  void remove_entry(int id);
  nlohmann::json* find(int id);
  void undo_entry(int id);

  std::filesystem::path m_path;
  Undo m_undo;
  nlohmann::json m_json;
  int m_next_id = 1;
};

// A journal left on disk, as the repair reads it.
struct JournalFile {
  std::filesystem::path path;
  nlohmann::json json;      // valid when problem is empty
  std::string problem;      // why it cannot be trusted or read (not ours, malformed)
};

// The journals in BACKUP_DIR/journal, oldest first. A file that is not owned by this user, is
// writable by others, or does not parse is listed with its problem and never acted on.
std::vector<JournalFile> read_journals(const std::filesystem::path& backup_dir);

// Rewrites a journal file (the repair records what it could not finish), or removes it.
void write_journal_file(const JournalFile& file);
void remove_journal_file(const JournalFile& file);

// The half-written journals (run_*.json.tmp.<pid>) of runs killed while they rewrote theirs.
// Every journal is written under the BACKUP_DIR lock, so under it they are dead runs' and
// remove_journal_leftovers() deletes them (a regular file of this user's only).
std::vector<std::filesystem::path> journal_leftovers(const std::filesystem::path& backup_dir);
void remove_journal_leftovers(const std::filesystem::path& backup_dir);

}  // namespace backupctl
