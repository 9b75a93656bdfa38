// Loading a dump into a database of the server: creating it with the dump's database-level
// properties, loading the data (backupctl's N-wide loader for custom-format archives, pg_restore
// or psql otherwise), ANALYZE, and the row counts a restore checks against the dump's own.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "pg/dump_file.hpp"
#include "pg/target.hpp"
#include "pg/tools.hpp"
#include "util/progress.hpp"

namespace backupctl {

class PgConnection;

// A dump file as a load reads it.
struct DumpSource {
  std::filesystem::path file;
  DbFormat format = DbFormat::custom;
  std::string toc;                 // `pg_restore --create --list` of it (custom formats)
  std::filesystem::path identity;  // BACKUP_AGE_IDENTITY, for an encrypted file
};

using TableRows = std::vector<std::tuple<std::string, std::string, std::int64_t>>;  // schema, table, rows

// What a load learned about the rows: the archive's row count per table when the archive tells
// (custom formats whose data is COPY text); `confirmed` when the server's COPY command tags were
// checked against those counts as the data loaded (the parallel loader), so counting the restored
// tables again with count(*) would scan every table for nothing new.
struct LoadedRows {
  std::optional<TableRows> archive;
  bool confirmed = false;
  std::set<std::string> analyzed;  // tables analyzed during the load (quoted schema.table)
};

// Creates database `name` with the archive's database-level properties (custom formats: owner,
// encoding, locale, comment, grants, settings), or, for plain SQL, like database `like` (owner,
// encoding, locale) when it exists. `maintenance` is a maintenance database of the server.
void create_database(const DumpSource& dump, const PgTool& psql, const PgTool& pg_restore,
                     const PgTarget& maintenance, const std::string& name, const std::string& like);

// Loads the dump into the (empty, existing) database `db` of `target`'s server:
// - .dump / .dump.zst with jobs > 1: one pass over the file; pg_restore creates the schema,
//   backupctl's ParallelCopyLoader loads every table's COPY data over `jobs` connections (a big
//   table too: it is cut into batches), pg_restore does the rest with --jobs;
// - with jobs = 1: pg_restore alone (fed by backupctl's inflater for .dump.zst and .age files,
//   which counts the COPY lines);
// - .sql / .sql.gz: psql, in one transaction.
// `scratch` is an empty folder for the loader's copy of the table of contents (a temporary one of
// its own when empty). Throws pg_tool_failure() / Error(verification) naming what failed.
LoadedRows load_dump(const DumpSource& dump, const PgTool& pg_restore, const PgTool& psql,
                     const PgTarget& target, const std::string& db, int jobs, Progress& progress,
                     const std::filesystem::path& scratch = {});

// Exact row counts (count(*)) of every table of `db`.
TableRows count_rows(const PgTarget& target, const std::string& db);

// ANALYZE every table of `db` over `jobs` connections, biggest first; tables in `done` (analyzed
// while loading) only when their statistics need what the post-data section made since.
void analyze_tables(const PgTarget& target, const std::string& db, int jobs, const std::set<std::string>& done = {});

// analyze_tables() and count_rows() at the same time.
TableRows analyze_and_count(const PgTarget& target, const std::string& db, int jobs);

// Every table of the archive must hold as many rows as the archive has lines of COPY data for it;
// throws Error(verification) naming the first that does not.
void check_rows(const TableRows& archive, const TableRows& restored);

}  // namespace backupctl
