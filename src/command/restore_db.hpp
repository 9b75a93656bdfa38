// `backupctl restore db`: the guarded restore (plan §4 and §6). Everything is checked before
// anything changes; the backup is restored into a side database and swapped in by renames, so a
// failed or interrupted restore leaves the database as it was, and a finished one can be undone
// with `backupctl restore undo`. `--in-place` (the plan's drop-and-recreate, for servers without
// room for two copies) takes a safety dump first and puts it back if the restore fails.
#pragma once

#include <nlohmann/json.hpp>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "catalog/journal.hpp"
#include "catalog/meta.hpp"
#include "config/config.hpp"
#include "pg/dump_file.hpp"
#include "pg/load.hpp"
#include "pg/target.hpp"
#include "util/progress.hpp"

namespace backupctl {

// A dump a restore reads as it arrives, nothing of it stored under its name: streamed from the
// remote (IncomingBackup, command/remote.hpp) or written by pg_dump from the server a
// point-in-time restore recovered (command/restore_pitr.cpp). file() is an io::IncomingFile's
// name.
class IncomingDump {
 public:
  virtual ~IncomingDump() = default;
  virtual const std::filesystem::path& file() const = 0;
  virtual const Meta& meta() const = 0;  // the remote's; for pg_dump's, its sha256 and size are unknown
  virtual std::optional<std::filesystem::path> roles_file() const = 0;
  virtual std::string origin() const = 0;          // where the bytes come from ("s3://…/db/…")
  virtual std::string checksum_state() const = 0;  // how they are checked, for the plan
  virtual std::string wait_phase() const = 0;      // the report's name for wait()
  // Waits for the last byte; throws when the bytes are not the ones meant (Error(verification):
  // not the remote meta's; Error(tool_failed): pg_dump failed), Error(interrupted) on a signal.
  virtual void wait() = 0;
};

struct RestoreDbOptions {
  std::filesystem::path file;
  // The dump read as it arrives (restore db --remote; restore db --to-time); `file` is then its
  // IncomingDump::file(). Swap modes only: the live database is not touched before every byte
  // arrived and was checked (wait()). Not owned.
  IncomingDump* incoming = nullptr;
  std::string target_db;       // empty: the configured database (PGDATABASE / DATABASE_URL)
  bool in_place = false;       // drop and recreate (after a safety dump) instead of swapping
  bool online = false;         // services keep running until the swap
  bool allow_no_meta = false;  // accept a dump made elsewhere, without a .meta
  bool allow_other_database = false;  // accept a dump of another database than the configured one
  // The live database, when the restore goes elsewhere (a rehearsal's staging database on a
  // server of its own): the target must not be it. Default: the configured one.
  std::optional<PgTarget> live;
};

// What a restore would do, worked out without changing anything: the file was read whole and
// checked, the server was asked about the target and the roles.
struct RestorePlan {
  std::filesystem::path file;
  IncomingDump* incoming = nullptr;  // RestoreDbOptions::incoming
  DbFormat format = DbFormat::custom;
  std::optional<Meta> meta;
  std::uint64_t size = 0;
  std::string sha256;
  std::string checksum_state;  // "matches the meta", or why there is nothing to compare with
  int toc_entries = 0;
  std::string toc;
  std::string source_database;  // the database the dump was made from ("" for .sql)
  std::string other_database;   // that database, when it is not the configured one (allowed by a flag)
  std::string target_database;
  bool target_exists = false;
  std::string target_size;       // pretty, when it exists
  std::vector<std::string> roles_to_create;
  std::optional<std::filesystem::path> roles_file;
  std::string services;          // what will be stopped
  bool stops_services = true;    // false for --target-db and rehearsals: the live app is not touched
  std::string mode;              // "swap", "online swap", "in-place"
  std::string previous_name;     // where the current database will be kept (swap modes)
  std::string format_note;       // e.g. a custom-format archive named .sql, recognised by its header

  DumpSource dump(const Config& config) const { return {file, format, toc, config.age_identity}; }

  std::string describe() const;  // the plan as printed without CONFIRM=YES
  nlohmann::json to_json() const;
};

struct RestoreReport {
  std::filesystem::path file;
  std::string recovered_to;  // a point-in-time restore: the target, and where replay stopped
  std::string target;
  std::string mode;
  std::string previous;  // "<db>__pre_restore_<ts>", empty when there was none
  bool previous_kept = false;  // false with RESTORE_KEEP_PREVIOUS_DAYS=0: no undo
  std::optional<std::filesystem::path> safety_dump;  // --in-place
  std::vector<std::pair<std::string, double>> phases;  // name, seconds
  double services_down_seconds = 0;
  double total_seconds = 0;
  std::vector<std::pair<std::string, std::int64_t>> tables;  // schema.table, rows
  bool rows_checked = false;  // every table's rows were compared with the archive's
  std::vector<std::string> roles_created;
  std::vector<std::string> pruned;

  std::string describe() const;
  nlohmann::json to_json() const;
};

// Checks the file (exists, reads, meta, sha256, table of contents) and asks the server; changes
// nothing. Throws on any failed check.
RestorePlan plan_restore_db(const Config& config, const PgTarget& target,
                            const RestoreDbOptions& options, Progress& progress);

// Carries out a plan, as a short list of named steps, each announced in the journal first (and a
// fault point of that name): restore-db.stop-services, .roles, .create-side, .load, .analyze,
// (.remote-checked: a dump read as it arrived came whole and checked: the remote meta's sha256,
// or pg_dump's exit), .swap (one transaction: swap.before-commit inside it), .start-services,
// .prune-previous; for
// --in-place: .safety-dump, .drop, .create, .load. Each change is a journal entry before it is
// made (services, side_database, swap, in_place, temp_dir), so an error, a signal or a crash at
// any point leaves the live database whole: the old one, or the restored one once the swap
// committed. REQUIRES: config.confirmed; the caller holds the lock and owns `journal`.
RestoreReport run_restore_db(const Config& config, const PgTarget& target, const RestorePlan& plan,
                             const RestoreDbOptions& options, Journal& journal, Progress& progress);

// Puts the safety dump of an in-place restore back as database `live` (dropped and created again
// from it): what a failed, or interrupted (command/repair.cpp), --in-place restore needs.
void put_back_safety_dump(const Config& config, const PgTarget& target, const std::string& live,
                          const std::filesystem::path& dump);

// `backupctl restore undo`: swaps the newest `<db>__pre_restore_*` back in place; the database it
// replaces is kept the same way, so an undo can be undone.
struct UndoPlan {
  std::string target;
  std::string previous;     // to be put back
  std::string keep_as;      // where the current one goes
  std::string services;
  std::string describe() const;
};
UndoPlan plan_restore_undo(const Config& config, const PgTarget& target, const std::string& target_db);
RestoreReport run_restore_undo(const Config& config, const PgTarget& target, const UndoPlan& plan,
                               Journal& journal);

}  // namespace backupctl
