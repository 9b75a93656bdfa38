// Locating the PostgreSQL client programs (pg_dump, pg_dumpall, pg_restore, psql) and their
// versions. pg_dump refuses servers newer than itself, so we pick a matching one up front and
// fail with the fix instead of a cryptic "aborting because of server version mismatch".
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"

namespace backupctl {

struct PgTool {
  std::string path;     // what to run (inside the service: the program's name)
  std::string version;  // "15.18"
  int major = 0;        // 15
  // PG_TOOLS=compose: `compose -f FILE [-p P] exec -T -e PGUSER -e PGPASSWORD ... postgres`, the
  // connection settings passed by name (the values from our environment, never in argv); the
  // program then reaches the service's own server over its local socket.
  std::vector<std::string> prefix;
  // With a prefix: where ToolFiles records each folder it makes in the service before making it
  // (BACKUP_DIR/.service-tmp), so the folders of a killed run are found by the next command.
  std::filesystem::path records;

  bool in_service() const { return !prefix.empty(); }
  // The command line that runs it with `args`.
  std::vector<std::string> argv(const std::vector<std::string>& args) const;
  // "pg_dump 15.18 (/usr/lib/postgresql/15/bin/pg_dump)" or "... (in the compose service postgres)".
  std::string describe() const;
  std::string name() const;  // "pg_dump"
};

// Parses "pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)" -> {"15.18", 15}; nullopt when
// the text has no version.
std::optional<PgTool> parse_tool_version(std::string_view text);

// Finds `name` for a server of major version `server_major` (0: any version). On the host
// (PG_TOOLS=host, and auto first):
//   1. $PG_BINDIR/name when PG_BINDIR is set;
//   2. /usr/lib/postgresql/<N>/bin/name for N = server_major, else the newest N >= server_major
//      (Debian's layout, several versions side by side);
//   3. `name` on PATH.
// In the compose service PG_SERVICE (PG_TOOLS=compose, and auto when the host has none new
// enough and SERVICE_CONTROL=compose): `name` on the container's PATH, asked for its version.
// Throws Error(not_found) when it is missing, Error(usage) when it is older than the server,
// with a hint naming both fixes (the package, PG_BINDIR, PG_TOOLS=compose).
PgTool find_pg_tool(std::string_view name, int server_major, const Config& config);

// Files a program in the compose service must read by name (the restore's table of contents
// and list): copied into a private folder in the container (mktemp -d, tee) and removed with
// it. For a program on the host, place() returns the file's own path.
class ToolFiles {
 public:
  explicit ToolFiles(const PgTool& tool) : m_tool(tool) {}
  ~ToolFiles();
  ToolFiles(const ToolFiles&) = delete;
  ToolFiles& operator=(const ToolFiles&) = delete;
  std::string place(const std::filesystem::path& file);

 private:
  const PgTool& m_tool;
  std::string m_dir;  // in the container
  std::filesystem::path m_record;
};

// Removes the compose service's temporary folders of runs that died (killed while a ToolFiles
// had one), which their records in BACKUP_DIR/.service-tmp name. Every command runs it first; it
// asks the service only when such a record is there.
void remove_dead_service_folders(const Config& config);

}  // namespace backupctl

#include <functional>
#include <vector>

#include "config/config.hpp"
#include "io/atomic_file.hpp"
#include "io/pipeline.hpp"
#include "util/progress.hpp"
#include "pg/target.hpp"
#include "util/error.hpp"
#include "util/process.hpp"

namespace backupctl {

// The error for a PostgreSQL program that failed: its most telling stderr line ("error:" lines
// first) and a hint for the common causes (permissions, lost connection, killed).
Error pg_tool_failure(std::string_view tool, const ExitStatus& status, const std::string& stderr_text,
                      std::string_view what_was_lost);

// Runs a PostgreSQL program against `target` (its connection settings as PG* variables: never a
// password in argv) with stdin fed by `feed` (or /dev/null), stdout discarded and stderr
// collected whole (a pipe could fill while we are busy feeding); its last lines are logged when
// it fails. Throws pg_tool_failure(). `pgoptions` are added to PGOPTIONS (server settings for the
// program's sessions).
void run_pg_program(const PgTool& tool, const std::vector<std::string>& args, const PgTarget& target,
                    const std::function<void(io::Sink&)>& feed, std::string_view what_was_lost,
                    const std::string& pgoptions = "");

struct StreamResult {
  std::uint64_t size = 0;  // bytes stored
  std::string sha256;      // of the bytes stored
  std::string stderr_text;  // what the program said (its last 16 KiB)
};

// Runs a program (pg_dump, pg_basebackup, ...) and streams its stdout through [zstd at
// `zstd->level`] -> [age] -> sha256 -> count -> `sink`, then checks its exit status (throws
// pg_tool_failure()). On any failure the caller's sink is left uncommitted (and so removed).
StreamResult stream_pg_program(const std::string& tool, SpawnOptions spawn, io::Sink& sink,
                               const DbCompression* zstd, int zstd_threads,
                               const std::vector<std::string>& age_recipients, Progress& progress,
                               std::string_view what_was_lost);

// Logs each non-empty line of a program's stderr as a warning.
void warn_lines(std::string_view stderr_text);

}  // namespace backupctl
