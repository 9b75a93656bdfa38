#include "pg/load.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <thread>

#include "io/age.hpp"
#include "io/incoming.hpp"
#include "io/pipeline.hpp"
#include "io/zstd.hpp"
#include "pg/background_analyze.hpp"
#include "pg/connection.hpp"
#include "pg/dump_parser.hpp"
#include "pg/parallel_load.hpp"
#include "util/error.hpp"
#include "util/fd.hpp"
#include "util/fs.hpp"
#include "util/parallel.hpp"
#include "util/signals.hpp"

namespace backupctl {

namespace fs = std::filesystem;

namespace {

// The rows per table the archive holds, to compare the restored tables with; nullopt when some
// table's data is not COPY text (pg_dump --inserts), whose rows are not counted.
std::optional<TableRows> rows_of(const DumpInflater& inflater) {
  for (const auto& e : inflater.toc()) {
    if (e.desc == "TABLE DATA" && !e.is_copy_data()) return std::nullopt;
  }
  TableRows out;
  for (const auto& [id, t] : inflater.tables()) out.emplace_back(t.schema, t.table, t.rows);
  return out;
}


// The parallel restore of a custom-format archive, in one pass over the file: pg_restore creates
// the schema (pre-data) from a copy of the archive's table of contents; backupctl loads every
// table's COPY data over RESTORE_JOBS connections at once (ParallelCopyLoader); pg_restore then
// restores the rest of the data section (sequence values, large objects, --inserts data, kept in
// that copy) and the post-data section (indexes, constraints, triggers, grants) with --jobs.
// This is pg_restore's own --section split, with the data section's COPYs done N-wide. The copy
// is written through an unbuffered FdSink, so at toc_done pg_restore finds the whole TOC on disk.
LoadedRows load_custom_parallel(const DumpSource& dump, const PgTool& pg_restore, const PgTarget& target,
                                const std::string& db, int jobs, Progress& progress, const fs::path& scratch) {
  const std::string lost = "the database was not changed";
  std::optional<TempDir> own;
  const fs::path dir = scratch.empty() ? own.emplace("backupctl-restore").path() : scratch;
  const fs::path toc_file = dir / "toc.dump";
  const fs::path list_file = dir / "rest.list";
  Fd fd(::open(toc_file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!fd) throw_errno("cannot create " + toc_file.string());
  io::FdSink toc_sink(fd.get(), toc_file.string());
  // A pg_restore in the compose service reads its copies of the TOC archive and the list.
  ToolFiles service_files(pg_restore);
  auto restore_section = [&](std::vector<std::string> options, const std::string& pgoptions = "") {
    std::vector<std::string> args = {"--dbname=" + db, "--exit-on-error", "--no-password"};
    args.insert(args.end(), options.begin(), options.end());
    args.push_back(service_files.place(toc_file));
    run_pg_program(pg_restore, args, target, nullptr, lost, pgoptions);
  };

  DumpStream stream(dump.file, dump.format, dump.identity, DumpStream::Reader::last,
                    [&](std::uint64_t n) { progress.update(n); });
  DumpInflater inflater(toc_sink);
  std::optional<BackgroundAnalyzer> analyzer;  // outlives the loader, which hands it tables
  std::optional<ParallelCopyLoader> loader;
  inflater.set_tap({
      .toc_done =
          [&](const std::vector<DumpTocEntry>& toc) {
            restore_section({"--section=pre-data"});
            spdlog::debug("restore: schema created; loading the data over {} connections", jobs);
            loader.emplace(target.with_database(db), jobs, ParallelCopyLoader::session_sql(toc));
            analyzer.emplace(target.with_database(db));
            loader->on_loaded([&](const DumpTocEntry& e) { analyzer->add(e.schema, e.tag); });
          },
      .wants = [](const DumpTocEntry& e) { return e.is_copy_data(); },
      .data = [&](const DumpTocEntry& e, const char* p, std::size_t n) { loader->data(e, p, n); },
      .end = [&](const DumpTocEntry& e) { loader->end(e); },
  });
  inflater.run(stream.source());
  if (!loader) throw Error(ErrorCode::internal, "the archive's table of contents was never handed over");
  std::map<int, std::int64_t> loaded = loader->finish();
  for (const auto& [id, t] : inflater.tables()) {
    std::int64_t got = loaded.count(id) ? loaded[id] : 0;
    if (got != t.rows) {
      throw Error(ErrorCode::verification,
                  fmt::format("{}.{}: the server took {} rows, the archive holds {}", t.schema, t.table, got, t.rows),
                  "the backup may be damaged; " + lost);
    }
  }

  std::string list;
  for (const auto& e : inflater.toc()) {
    if (!e.is_copy_data()) list += std::to_string(e.dump_id) + ";\n";
  }
  spdlog::debug("restore: table data loaded; the rest of the data section");
  write_file_atomic(list_file, list, 0600);
  restore_section({"--section=data", "--use-list=" + service_files.place(list_file)});
  // The tables analyzed while later ones loaded; the last ones' ANALYZE ends here, before the
  // post-data section takes locks on the tables (ANALYZE and ALTER TABLE or ATTACH PARTITION
  // waiting on each other could deadlock).
  std::set<std::string> analyzed = analyzer->finish();
  spdlog::debug("restore: indexes, constraints, grants (post-data)");
  // The index builds run RESTORE_JOBS at a time already; each also starting its own parallel
  // workers (max_parallel_maintenance_workers, 2 by default) only crowds the cores (2 cores: 1.35 s
  // without them against 1.57 s with).
  restore_section({"--section=post-data", "--jobs=" + std::to_string(jobs)},
                  jobs > 1 ? "-c max_parallel_maintenance_workers=0" : "");
  LoadedRows out{rows_of(inflater), false, std::move(analyzed)};
  out.confirmed = out.archive.has_value();  // every table's rows were checked above
  return out;
}


// The database's own relations of the given kinds (pg_class.relkind letters, e.g. "'r', 'm'"),
// outside the system schemas: (schema, name) pairs, in `order` (an ORDER BY list).
std::vector<std::pair<std::string, std::string>> user_relations(PgConnection& conn, const std::string& relkinds,
                                                                const std::string& order) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& row : conn.query("SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = "
                                    "c.relnamespace WHERE c.relkind IN (" + relkinds + ") AND n.nspname NOT IN "
                                    "('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' "
                                    "AND n.nspname NOT LIKE 'pg_temp%' ORDER BY " + order)) {
    out.emplace_back(*row[0], *row[1]);
  }
  return out;
}

}  // namespace

// Creates `name` with the archive's database-level properties (custom formats), or, for plain SQL,
// like the current target (owner, encoding, locale) when there is one.
void create_database(const DumpSource& dump, const PgTool& psql, const PgTool& pg_restore,
                     const PgTarget& maintenance, const std::string& name, const std::string& like) {
  std::string sql;
  if (is_custom(dump.format)) {
    sql = database_creation_sql(dump.file, dump.format, pg_restore, dump.toc, name, dump.identity);
  } else {
    PgConnection conn = PgConnection::open(maintenance);
    auto rows = conn.query(
        "SELECT pg_get_userbyid(datdba), pg_encoding_to_char(encoding), datcollate, datctype FROM "
        "pg_database WHERE datname = $1",
        {like});
    sql = "CREATE DATABASE " + quote_ident(name) + " TEMPLATE template0";
    if (!rows.empty()) {
      sql += " OWNER " + quote_ident(*rows[0][0]) + " ENCODING " + quote_literal(*rows[0][1]) +
             " LC_COLLATE " + quote_literal(*rows[0][2]) + " LC_CTYPE " + quote_literal(*rows[0][3]);
    }
    sql += ";\n";
  }
  run_pg_program(psql, {"-X", "-q", "-v", "ON_ERROR_STOP=1", "--dbname=" + maintenance.dbname(), "-f", "-"},
                 maintenance,
                 [&](io::Sink& in) { in.write(std::span<const char>(sql.data(), sql.size())); in.finish(); },
                 "cannot create the database " + name);
}

LoadedRows load_dump(const DumpSource& dump, const PgTool& pg_restore, const PgTool& psql,
                     const PgTarget& target, const std::string& db, int jobs, Progress& progress,
                     const fs::path& scratch) {
  const std::string lost = "the database was not changed";
  LoadedRows rows;
  auto report = [&](std::uint64_t n) { progress.update(n); };
  // One look at the archive's version (for an encrypted dump each look starts an age).
  const bool known = is_custom(dump.format) && DumpStream::inflatable(dump.file, dump.format, dump.identity).value_or(false);
  // Feeds pg_restore the archive with its data uncompressed, counting rows on the way; an archive
  // version backupctl's reader does not know (pg_dump 16+) goes as it is (pg_restore reads it from
  // a pipe in order; the rows are then counted after the load).
  auto inflate_into = [&](io::Sink& sink) {
    DumpStream stream(dump.file, dump.format, dump.identity, DumpStream::Reader::last, report);
    if (!known) {
      io::copy(stream.source(), sink);
      return;
    }
    DumpInflater inflater(sink);
    inflater.run(stream.source());
    rows.archive = rows_of(inflater);
  };
  progress.start("restore " + dump.file.filename().string());
  if (jobs > 1 && known) {
    rows = load_custom_parallel(dump, pg_restore, target, db, jobs, progress, scratch);
  } else if (dump.format == DbFormat::custom_zst || (dump.format == DbFormat::custom && io::is_encrypted(dump.file)) ||
             (dump.format == DbFormat::custom && (pg_restore.in_service() || io::is_incoming(dump.file)))) {
    // From a pipe pg_restore works through the archive in order: no --jobs. (A pg_restore in
    // the compose service cannot read the file on this host, and a file still arriving is not
    // on disk under its name: they go through the pipe too.)
    run_pg_program(pg_restore, {"--dbname=" + db, "--exit-on-error", "--no-password"}, target, inflate_into, lost);
  } else if (dump.format == DbFormat::custom) {
    run_pg_program(pg_restore,
                   {"--dbname=" + db, "--exit-on-error", "--no-password", "--jobs=" + std::to_string(jobs),
                    dump.file.string()},
                   target, nullptr, lost);
  } else {
    run_pg_program(psql, {"-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction", "--no-password", "--dbname=" + db, "-f", "-"},
                   target,
                   [&](io::Sink& sink) { stream_dump(dump.file, dump.format, sink, progress, dump.identity); },
                   lost);
  }
  progress.finish();
  return rows;
}

TableRows count_rows(const PgTarget& target, const std::string& db) {
  PgConnection conn = PgConnection::open(target.with_database(db));
  TableRows out;
  for (const auto& [schema, table] : user_relations(conn, "'r'", "1, 2")) {
    std::string rows = conn.scalar("SELECT count(*) FROM " + quote_ident(schema) + "." + quote_ident(table));
    out.emplace_back(schema, table, std::stoll(rows));
  }
  return out;
}

// ANALYZE every table of `db`, so the planner has statistics from the first query (pg_restore
// leaves none): table by table over `jobs` connections, the biggest first (one ANALYZE of the
// whole database is one backend working through the tables in turn). Tables in `done` were
// analyzed as their data came in (BackgroundAnalyzer) and are skipped, unless their statistics
// depend on what the post-data section made since: expression indexes, extended statistics, or
// children (an inheritance parent's statistics cover them).
void analyze_tables(const PgTarget& target, const std::string& db, int jobs, const std::set<std::string>& done) {
  std::vector<std::string> tables;
  {
    PgConnection conn = PgConnection::open(target.with_database(db));
    std::set<std::string> again;
    if (!done.empty()) {
      for (const auto& row : conn.query(
               "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
               "WHERE EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indexprs IS NOT NULL) "
               "OR EXISTS (SELECT 1 FROM pg_statistic_ext s WHERE s.stxrelid = c.oid) "
               "OR EXISTS (SELECT 1 FROM pg_inherits h WHERE h.inhparent = c.oid)")) {
        again.insert(quote_ident(*row[0]) + "." + quote_ident(*row[1]));
      }
    }
    for (const auto& [schema, table] : user_relations(conn, "'r', 'm', 'p'", "c.relpages DESC, 1, 2")) {
      std::string name = quote_ident(schema) + "." + quote_ident(table);
      if (!done.count(name) || again.count(name)) tables.push_back(std::move(name));
    }
  }
  if (tables.empty()) return;
  std::atomic<std::size_t> next{0};
  const int n = std::max(1, std::min<int>(jobs, static_cast<int>(tables.size())));
  parallel_for(static_cast<std::size_t>(n), n, [&](std::size_t) {
    PgConnection conn = PgConnection::open(target.with_database(db));
    for (std::size_t i; (i = next++) < tables.size();) {
      check_interrupted();
      conn.exec("ANALYZE " + tables[i]);
    }
  });
}

// ANALYZE and exact row counts (count(*) of every table), at the same time.
TableRows analyze_and_count(const PgTarget& target, const std::string& db, int jobs) {
  std::exception_ptr failure;
  std::thread analyze([&] {
    try {
      analyze_tables(target, db, jobs);
    } catch (...) {
      failure = std::current_exception();
    }
  });
  TableRows rows;
  try {
    rows = count_rows(target, db);
  } catch (...) {
    analyze.join();
    throw;
  }
  analyze.join();
  if (failure) std::rethrow_exception(failure);
  return rows;
}

// Every table of the archive must hold as many rows as the archive has lines of COPY data for it.
void check_rows(const TableRows& archive, const TableRows& restored) {
  for (const auto& [schema, table, rows] : archive) {
    auto it = std::find_if(restored.begin(), restored.end(), [&](const auto& r) {
      return std::get<0>(r) == schema && std::get<1>(r) == table;
    });
    std::int64_t got = it == restored.end() ? -1 : std::get<2>(*it);
    if (got != rows) {
      throw Error(ErrorCode::verification,
                  fmt::format("the restored {}.{} has {} rows, the backup {}", schema, table,
                              got < 0 ? "no table and" : std::to_string(got), rows),
                  "the restore is incomplete; it was not swapped in");
    }
  }
}
}  // namespace backupctl
