// Off-site copies (BACKUP_REMOTE_URL): `push`, `list --remote`, `verify --remote [--read-data]`,
// the remote's retention, and fetching a backup back from the remote for `restore … --remote`
// and `rehearse --remote`.
//
// A backup is on the remote when its file and its meta are: the file (and a dump's roles file)
// goes first, the meta last, so a copy cut short never looks finished. The local meta records
// each copy ("remote_copies": remote, time, size, ETag), and that meta is what goes up: a fresh
// host reading the remote's metas alone knows every copy's digests.
#pragma once

#include <sys/stat.h>

#include <filesystem>
#include <optional>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "catalog/catalog.hpp"
#include "catalog/journal.hpp"
#include "command/prune.hpp"
#include "command/restore_db.hpp"
#include "command/remote_owner.hpp"
#include "command/sets.hpp"
#include "io/incoming.hpp"
#include "config/config.hpp"
#include "storage/remote.hpp"
#include "util/progress.hpp"

namespace backupctl {

struct PushReport {
  std::string remote;
  std::vector<std::string> sent;     // names copied this time
  std::vector<std::string> present;  // names already there
  std::uint64_t bytes = 0;           // bytes sent
  std::vector<std::string> failed;   // "name: why"
  std::vector<std::string> skipped;  // "name: why" (not sent, and not a failure)
};

// Copies what the remote lacks of `files` (backup files of BACKUP_DIR: each with its
// companions and meta) and `set_files`. Refuses plaintext backups unless
// BACKUP_REMOTE_ALLOW_PLAINTEXT=yes. Throws on the first failure after finishing nothing half:
// what was sent stays (a rerun resumes).
//
// The remote must be this BACKUP_DIR's (remote_owner.hpp; `take_over` claims it from another).
// A name the remote holds with another backup's meta (another sha256) is never overwritten, a
// set file goes up only after every backup it names, and what was sent is read back at the end:
// a push reports a copy only when the remote holds its bytes.
PushReport push(const Config& config, Remote& remote, const std::vector<std::filesystem::path>& files,
                const std::vector<std::filesystem::path>& set_files, Progress& progress,
                TakeOver take_over = TakeOver::no);

// What `push --all` sends: every backup with a meta, and every set file.
void every_local_backup(const Config& config, std::vector<std::filesystem::path>& files,
                        std::vector<std::filesystem::path>& set_files);

// A backup on the remote, from its meta there.
struct RemoteEntry {
  Kind kind;
  std::string name;             // "db/archive_…dump"
  std::optional<Meta> meta;     // nullopt: the meta there does not read (meta_problem says why)
  std::string meta_problem;
  std::optional<RemoteFile> file;  // the file as listed (nullopt: missing)
  Clock::time_point time;
  std::string state() const;   // "ok", "missing", "size differs", "digest differs", "bad meta"
};

// Every backup on the remote (metas read there), newest first.
std::vector<RemoteEntry> remote_catalog(const Config& config, Remote& remote);
nlohmann::json remote_json(const std::vector<RemoteEntry>& entries, const std::string& remote);
std::string remote_table(const std::vector<RemoteEntry>& entries);

struct RemoteVerdict {
  std::string name;
  bool ok = false;
  std::string detail;
};
// Listing: each file there, of its meta's size and (S3) ETag, and of this BACKUP_DIR's own meta
// where it has one. `read_data`: each file downloaded and checked like `verify` checks a local
// one (sha256, then the archive read through), in a scratch folder under BACKUP_DIR removed after
// (a journal entry: a run killed there leaves it to the next command's repair).
// REQUIRES with read_data: the caller holds the BackupLock, and `journal` is its run's.
std::vector<RemoteVerdict> verify_remote(const Config& config, Remote& remote, bool read_data, Progress& progress,
                                         Journal* journal = nullptr);

// Removes the scratch folders (BACKUP_DIR/.remote-verify.<run tag>) of verify --remote --read-data
// runs that died (SIGKILL): each holds a downloaded backup. Those of live runs stay; one of a run
// in another container or on another machine goes when it is two days old.
void remove_stale_verify_scratch(const std::filesystem::path& backup_dir);

// What a fetch proves when a good copy is in BACKUP_DIR already: nothing more (the local copy is
// used), or that the remote's bytes match the meta too (read and hashed, not stored): what a
// rehearsal from the remote must prove.
enum class FetchCheck { reuse_local, remote_bytes };

// Brings a backup (file, companions, meta) from the remote into BACKUP_DIR/<kind>/, checked
// against the remote meta's sha256, unless a good copy is there already. No file is taken
// larger than the meta says. Returns its local path.
std::filesystem::path fetch_backup(const Config& config, Remote& remote, const std::string& name, Progress& progress,
                                   FetchCheck check = FetchCheck::reuse_local);

// A backup streamed from the remote for a restore that reads it as it arrives (`restore db
// --remote`, `restore all --remote`): nothing is written to BACKUP_DIR. The remote meta is read
// and checked first, and the roles file (small) comes whole, checked against it; then the file
// downloads in a thread of its own into an io::IncomingFile registered as
// BACKUP_DIR/<kind>/<file> (spooled there anonymously), checked against the meta's size and
// sha256 at its end: a reader sees the end of the file only when it matched.
class IncomingBackup final : public IncomingDump {
 public:
  IncomingBackup(const Config& config, std::unique_ptr<Remote> remote, const std::string& name);
  IncomingBackup(const IncomingBackup&) = delete;
  IncomingBackup& operator=(const IncomingBackup&) = delete;
  ~IncomingBackup();  // stops a download still running

  const std::filesystem::path& file() const override { return m_file->name(); }  // the name readers open
  const Meta& meta() const override { return m_meta; }
  std::optional<std::filesystem::path> roles_file() const override;
  std::string origin() const override { return m_origin; }  // the remote's URL of the file
  std::string checksum_state() const override {
    return "sha256 checked against the remote meta as the dump arrives, before the swap";
  }
  std::string wait_phase() const override { return "download check"; }
  // Waits for the end of the download; throws its error: Error(verification) for a copy that is
  // not the one the meta describes, Error(interrupted) after a signal.
  void wait() override;

 private:
  void download();

  std::unique_ptr<Remote> m_remote;
  std::string m_name;
  std::string m_origin;
  Meta m_meta;
  std::shared_ptr<io::IncomingFile> m_roles;
  std::shared_ptr<io::IncomingFile> m_file;
  std::thread m_thread;
};

// The sha256 fetch_backup() (or remember_written_sha256()) took of `file`'s bytes as this process
// wrote them, while the file is still that one (same device, inode, size, mtime and ctime): a
// restore then need not hash it again.
std::optional<std::string> fetched_sha256(const std::filesystem::path& file);
// Remembers the sha256 of the file this process wrote (`written`: fstat of its descriptor) for
// fetched_sha256(); nothing when another file is under that name now.
void remember_written_sha256(const std::filesystem::path& file, const std::string& sha256, const struct stat& written);

// The set file `id` from the remote into BACKUP_DIR/sets/, and every part it names but those
// `streamed` says a restore will read from the remote as they download (IncomingBackup; called
// with the part's remote name, "db/…"). Returns the set's id. "latest" is the newest set of
// `scope` (sets.hpp) whose parts are all on the remote with their metas; the newer ones skipped
// are logged, and named when none is left. A set named by id whose parts are not all there is
// refused before anything is fetched.
std::string fetch_set(const Config& config, Remote& remote, const std::string& id, const SetScope& scope,
                      Progress& progress, const std::function<bool(const std::string& name)>& streamed = {},
                      FetchCheck check = FetchCheck::reuse_local);

// The remote's retention: BACKUP_REMOTE_RETENTION_DAYS with the local rules per source (never
// the newest copy that verified). With BACKUP_REMOTE_OBJECT_LOCK_DAYS nothing is deleted:
// the bucket's lifecycle expires the copies once their lock ends.
// PruneWhat::wrong_clock deletes only the copies dated ahead of this host's clock.
std::vector<std::string> prune_remote(const Config& config, Remote& remote, DryRun mode,
                                      PruneWhat what = PruneWhat::retention);

}  // namespace backupctl
