#include "command/restore_db.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <set>
#include <thread>

#include "catalog/catalog.hpp"
#include "catalog/naming.hpp"
#include "command/backup_db.hpp"
#include "pg/background_analyze.hpp"
#include "pg/connection.hpp"
#include "pg/custom_archive.hpp"
#include "pg/parallel_load.hpp"
#include "io/age.hpp"
#include "io/pipeline.hpp"
#include "io/zstd.hpp"
#include "pg/roles.hpp"
#include "pg/swap.hpp"
#include "pg/tools.hpp"
#include "service/service.hpp"
#include "util/env.hpp"
#include "util/error.hpp"
#include "util/fd.hpp"
#include "util/format.hpp"
#include "util/fs.hpp"
#include "util/parallel.hpp"
#include "util/process.hpp"
#include "util/signals.hpp"
#include "util/time.hpp"

namespace backupctl {

namespace fs = std::filesystem;
using SteadyClock = std::chrono::steady_clock;

namespace {

// Times the phases of a restore for the report.
class Phases {
 public:
  explicit Phases(RestoreReport& report) : m_report(report) {}
  void start(const char* name) {
    end();
    m_name = name;
    m_start = SteadyClock::now();
    spdlog::info("restore: {}", name);
  }
  void end() {
    if (m_name.empty()) return;
    m_report.phases.emplace_back(m_name, seconds_since(m_start));
    m_name.clear();
  }

 private:
  RestoreReport& m_report;
  std::string m_name;
  SteadyClock::time_point m_start;
};

// A database that exists only for this restore: dropped when the guard goes out of scope unless
// it was swapped in (release()). The drop runs even after SIGINT/SIGTERM.
class TemporaryDatabase {
 public:
  TemporaryDatabase(const PgTarget& maintenance, std::string name)
      : m_maintenance(maintenance), m_name(std::move(name)) {}
  ~TemporaryDatabase() {
    if (m_name.empty()) return;
    InterruptShield shield;
    try {
      PgConnection conn = PgConnection::open(m_maintenance);
      drop_database(conn, m_name);
      spdlog::info("restore: dropped the side database {}", m_name);
    } catch (const std::exception& e) {
      spdlog::error("restore: cannot drop the side database {}: {}; drop it by hand", m_name, e.what());
    }
  }
  TemporaryDatabase(const TemporaryDatabase&) = delete;
  TemporaryDatabase& operator=(const TemporaryDatabase&) = delete;
  void release() { m_name.clear(); }

 private:
  PgTarget m_maintenance;
  std::string m_name;
};

// Runs a PostgreSQL program whose stdin is fed by `feed` (or /dev/null), stdout discarded and
// stderr collected whole (a pipe could fill while we are busy feeding). Throws pg_tool_failure.
// `pgoptions` are added to PGOPTIONS (server settings for the program's sessions).
void run_pg_program(std::vector<std::string> argv, const PgTarget& target,
                    const std::function<void(io::Sink&)>& feed, std::string_view what_was_lost,
                    const std::string& pgoptions = "") {
  MemFile err("stderr");
  SpawnOptions spawn{.argv = std::move(argv), .env = target.child_env()};
  if (!pgoptions.empty()) {
    auto inherited = env_value("PGOPTIONS");
    spawn.env.emplace_back("PGOPTIONS", inherited && !inherited->empty() ? *inherited + " " + pgoptions : pgoptions);
  }
  spawn.in = feed ? Stdio::pipe : Stdio::null;
  spawn.out = Stdio::null;
  spawn.err_fd = err.fd();
  std::string tool = spawn.argv[0].substr(spawn.argv[0].rfind('/') + 1);
  Child child = Child::spawn(spawn);
  if (feed) {
    io::ChildStdinSink sink(child.stdin_pipe(), tool);
    feed(sink);
  }
  ExitStatus status = child.wait();
  if (!status.ok()) {
    std::string text = err.read_all();
    std::string tail = last_lines(text, 8);
    if (!tail.empty()) {
      spdlog::error("{} said (last lines):", tool);
      for (std::string_view rest = tail; !rest.empty();) {
        auto nl = rest.find('\n');
        spdlog::error("  {}", rest.substr(0, nl));
        rest = nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
      }
    }
    throw pg_tool_failure(tool, status, text, what_was_lost);
  }
}


// A (small) file's text, decrypted when it ends in .age.
std::string read_plaintext(const fs::path& file, const fs::path& identity) {
  auto source = io::open_plaintext(file, identity);
  io::StringSink out;
  io::copy(*source, out);
  return out.take();
}

std::optional<fs::path> roles_file_for(const fs::path& file, const std::optional<Meta>& meta) {
  fs::path p = file.parent_path() /
               (meta && meta->parts.contains("roles") ? meta->parts["roles"].value("file", "")
                                                      : roles_filename(file.filename().string()));
  std::error_code ec;
  if (fs::is_regular_file(p, ec)) return p;
  return std::nullopt;
}

// Creates `name` with the archive's database-level properties (custom formats), or, for plain SQL,
// like the current target (owner, encoding, locale) when there is one.
void create_database(const RestorePlan& plan, const PgTool& psql, const PgTool* pg_restore,
                     const PgTarget& maintenance, const std::string& name, const fs::path& identity) {
  std::string sql;
  if (is_custom(plan.format)) {
    sql = database_creation_sql(plan.file, plan.format, *pg_restore, plan.toc, name, identity);
  } else {
    PgConnection conn = PgConnection::open(maintenance);
    auto rows = conn.query(
        "SELECT pg_get_userbyid(datdba), pg_encoding_to_char(encoding), datcollate, datctype FROM "
        "pg_database WHERE datname = $1",
        {plan.target_database});
    sql = "CREATE DATABASE " + quote_ident(name) + " TEMPLATE template0";
    if (!rows.empty()) {
      sql += " OWNER " + quote_ident(*rows[0][0]) + " ENCODING " + quote_literal(*rows[0][1]) +
             " LC_COLLATE " + quote_literal(*rows[0][2]) + " LC_CTYPE " + quote_literal(*rows[0][3]);
    }
    sql += ";\n";
  }
  run_pg_program({psql.path, "-X", "-q", "-v", "ON_ERROR_STOP=1", "--dbname=" + maintenance.dbname(), "-f", "-"},
                 maintenance,
                 [&](io::Sink& in) { in.write(std::span<const char>(sql.data(), sql.size())); in.finish(); },
                 "cannot create the database " + name);
}

using TableRows = std::vector<std::tuple<std::string, std::string, std::int64_t>>;  // schema, table, rows

// The custom-format archive of `plan` as a stream: decrypted, decompressed (.dump.zst), its bytes
// read reported to `report`.
struct CustomArchiveStream {
  std::unique_ptr<io::Source> plain;
  std::optional<io::ProgressSource> counted;
  std::optional<io::ZstdSource> unzstd;
  io::Source* source = nullptr;
  CustomArchiveStream(const Config& config, const RestorePlan& plan, std::function<void(std::uint64_t)> report) {
    plain = io::open_plaintext(plan.file, config.age_identity);
    source = &counted.emplace(*plain, std::move(report));
    if (plan.format == DbFormat::custom_zst) source = &unzstd.emplace(*source);
  }
};

// Whether the archive's version is one CustomArchiveInflater reads (formats 1.12-1.14: pg_dump up to 15).
bool streamable(const Config& config, const RestorePlan& plan) {
  CustomArchiveStream s(config, plan, nullptr);
  auto header = read_custom_archive_header(*s.source);
  return header && CustomArchiveInflater::supports(header->vmaj, header->vmin);
}

// The rows per table the archive holds, to compare the restored tables with; nullopt when some
// table's data is not COPY text (pg_dump --inserts), whose rows are not counted.
std::optional<TableRows> rows_of(const CustomArchiveInflater& inflater) {
  for (const auto& e : inflater.toc()) {
    if (e.desc == "TABLE DATA" && !e.is_copy_data()) return std::nullopt;
  }
  TableRows out;
  for (const auto& [id, t] : inflater.tables()) out.emplace_back(t.schema, t.table, t.rows);
  return out;
}

// What a load learned about the rows: the archive's row count per table when the archive tells
// (rows_of()); `confirmed` when the server's COPY command tags were checked against those counts
// as the data loaded (the parallel loader), so counting the restored tables again with count(*)
// would scan every table for nothing new.
struct LoadedRows {
  std::optional<TableRows> archive;
  bool confirmed = false;
  std::set<std::string> analyzed;  // tables analyzed during the load (quoted schema.table)
};

// The parallel restore of a custom-format archive, in one pass over the file: pg_restore creates
// the schema (pre-data) from a copy of the archive's table of contents; backupctl loads every
// table's COPY data over RESTORE_JOBS connections at once (ParallelCopyLoader); pg_restore then
// restores the rest of the data section (sequence values, large objects, --inserts data, kept in
// that copy) and the post-data section (indexes, constraints, triggers, grants) with --jobs.
// This is pg_restore's own --section split, with the data section's COPYs done N-wide. The copy
// is written through an unbuffered FdSink, so at toc_done pg_restore finds the whole TOC on disk.
LoadedRows load_custom_parallel(const Config& config, const RestorePlan& plan, const PgTool& pg_restore,
                                const PgTarget& target, const std::string& db, Progress& progress) {
  const std::string lost = "the database was not changed";
  TempDir tmp("backupctl-restore");
  const fs::path toc_file = tmp.path() / "toc.dump";
  const fs::path list_file = tmp.path() / "rest.list";
  Fd fd(::open(toc_file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!fd) throw_errno("cannot create " + toc_file.string());
  io::FdSink toc_sink(fd.get(), toc_file.string());
  auto restore_section = [&](std::vector<std::string> options, const std::string& pgoptions = "") {
    std::vector<std::string> argv = {pg_restore.path, "--dbname=" + db, "--exit-on-error", "--no-password"};
    argv.insert(argv.end(), options.begin(), options.end());
    argv.push_back(toc_file.string());
    run_pg_program(std::move(argv), target, nullptr, lost, pgoptions);
  };

  CustomArchiveStream stream(config, plan, [&](std::uint64_t n) { progress.update(n); });
  CustomArchiveInflater inflater(toc_sink);
  std::optional<BackgroundAnalyzer> analyzer;  // outlives the loader, which hands it tables
  std::optional<ParallelCopyLoader> loader;
  inflater.set_tap({
      .toc_done =
          [&](const std::vector<ArchiveTocEntry>& toc) {
            restore_section({"--section=pre-data"});
            spdlog::debug("restore: schema created; loading the data over {} connections", config.restore_jobs);
            loader.emplace(target.with_database(db), config.restore_jobs, ParallelCopyLoader::session_sql(toc));
            analyzer.emplace(target.with_database(db));
            loader->on_loaded([&](const ArchiveTocEntry& e) { analyzer->add(e.schema, e.tag); });
          },
      .wants = [](const ArchiveTocEntry& e) { return e.is_copy_data(); },
      .data = [&](const ArchiveTocEntry& e, const char* p, std::size_t n) { loader->data(e, p, n); },
      .end = [&](const ArchiveTocEntry& e) { loader->end(e); },
  });
  inflater.run(*stream.source);
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
  restore_section({"--section=data", "--use-list=" + list_file.string()});
  // The tables analyzed while later ones loaded; the last ones' ANALYZE ends here, before the
  // post-data section takes locks on the tables (ANALYZE and ALTER TABLE or ATTACH PARTITION
  // waiting on each other could deadlock).
  std::set<std::string> analyzed = analyzer->finish();
  spdlog::debug("restore: indexes, constraints, grants (post-data)");
  // The index builds run RESTORE_JOBS at a time already; each also starting its own parallel
  // workers (max_parallel_maintenance_workers, 2 by default) only crowds the cores (2 cores: 1.35 s
  // without them against 1.57 s with).
  restore_section({"--section=post-data", "--jobs=" + std::to_string(config.restore_jobs)},
                  config.restore_jobs > 1 ? "-c max_parallel_maintenance_workers=0" : "");
  LoadedRows out{rows_of(inflater), false, std::move(analyzed)};
  out.confirmed = out.archive.has_value();  // every table's rows were checked above
  return out;
}

// Loads the backup into the (empty, existing) database `db` and returns the row count of every
// table in the archive, when it is a custom-format one (LoadedRows).
// - .dump / .dump.zst with RESTORE_JOBS > 1: load_custom_parallel(), whatever the size of the
//   tables (pg_restore --jobs gives each table to one worker: no faster for one big table).
// - With RESTORE_JOBS=1: a .dump is read by pg_restore from the file; a .dump.zst (or an
//   encrypted .dump) is decompressed here and streamed through CustomArchiveInflater (which
//   counts the COPY lines) into one pg_restore.
// - .sql / .sql.gz: psql, in one transaction.
LoadedRows load_backup(const Config& config, const RestorePlan& plan, const PgTool& pg_restore,
                       const PgTool& psql, const PgTarget& target, const std::string& db,
                       Progress& progress) {
  const std::string lost = "the database was not changed";
  LoadedRows rows;
  auto report = [&](std::uint64_t n) { progress.update(n); };
  // Feeds pg_restore the archive with its data uncompressed, counting rows on the way.
  auto inflate_into = [&](io::Sink& sink) {
    CustomArchiveStream stream(config, plan, report);
    CustomArchiveInflater inflater(sink);
    inflater.run(*stream.source);
    rows.archive = rows_of(inflater);
  };
  progress.start("restore " + plan.file.filename().string());
  if (is_custom(plan.format) && config.restore_jobs > 1 && streamable(config, plan)) {
    rows = load_custom_parallel(config, plan, pg_restore, target, db, progress);
  } else if (plan.format == DbFormat::custom_zst || (plan.format == DbFormat::custom && io::is_encrypted(plan.file))) {
    // From a pipe pg_restore works through the archive in order: no --jobs.
    run_pg_program({pg_restore.path, "--dbname=" + db, "--exit-on-error", "--no-password"}, target,
                   inflate_into, lost);
  } else if (plan.format == DbFormat::custom) {
    run_pg_program({pg_restore.path, "--dbname=" + db, "--exit-on-error", "--no-password",
                    "--jobs=" + std::to_string(config.restore_jobs), plan.file.string()},
                   target, nullptr, lost);
  } else {
    run_pg_program({psql.path, "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction",
                    "--no-password", "--dbname=" + db, "-f", "-"},
                   target,
                   [&](io::Sink& sink) { stream_db_archive(plan.file, plan.format, sink, progress, config.age_identity); },
                   lost);
  }
  progress.finish();
  return rows;
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
void analyze_tables(const PgTarget& target, const std::string& db, int jobs,
                    const std::set<std::string>& done = {}) {
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

void set_tables(RestoreReport& report, const TableRows& rows) {
  report.tables.clear();
  for (const auto& [schema, table, n] : rows) report.tables.emplace_back(schema + "." + table, n);
}

// The hint for a failed restore: the database is as it was, where the server log is, and the
// newest good backup.
std::string failure_hint(const Config& config, const PgTarget& maintenance, const RestorePlan& plan,
                         const std::string& state) {
  std::string hint = state;
  std::string log;
  try {
    PgConnection conn = PgConnection::open(maintenance);
    auto rows = conn.query("SELECT pg_current_logfile()");
    if (!rows.empty() && rows[0][0]) {
      log = *rows[0][0];
      auto dir = conn.query("SELECT current_setting('data_directory')");
      if (!log.empty() && log[0] != '/' && !dir.empty() && dir[0][0]) log = *dir[0][0] + "/" + log;
    }
  } catch (const Error&) {
    // Not superuser / pg_monitor: no path to offer.
  }
  if (!log.empty()) {
    hint += "; the server log is " + log;
  } else if (config.service_control == ServiceControl::compose) {
    hint += "; the server log: docker compose -f " + config.compose_file.string() +
            " logs postgres --tail=200";
  } else {
    hint += "; see the PostgreSQL server log";
  }
  for (const CatalogEntry& e : scan_catalog(config.backup_dir)) {
    if (e.kind != Kind::db || e.path == plan.file) continue;
    if (e.meta && e.meta->verification && e.meta->verification->ok) {
      hint += "; the newest verified backup is " + e.path.string();
      break;
    }
  }
  return hint;
}

std::string bytes_pretty(const std::string& n) {
  try {
    return human_bytes(std::stoull(n));
  } catch (...) {
    return n;
  }
}

}  // namespace

RestorePlan plan_restore_db(const Config& config, const PgTarget& target,
                            const RestoreDbOptions& options, Progress& progress) {
  RestorePlan plan;
  plan.file = options.file;
  if (options.in_place && options.online) {
    throw Error(ErrorCode::usage, "--in-place and --online cannot be combined",
                "--online needs room for a second copy; --in-place replaces the database directly");
  }
  auto format = db_format_of(plan.file);
  if (!format) {
    throw Error(ErrorCode::usage, "cannot restore " + plan.file.string() + ": unknown file type",
                "a database backup ends in .dump, .dump.zst, .sql or .sql.gz");
  }
  plan.format = *format;
  std::error_code ec;
  if (!fs::is_regular_file(plan.file, ec)) {
    throw Error(ErrorCode::not_found, "backup file " + plan.file.string() + " does not exist",
                "`backupctl list` shows the backups in " + config.backup_dir.string());
  }

  // 1. The meta: present, or an explicit opt-in for a dump made elsewhere.
  fs::path meta_path = plan.file;
  meta_path += ".meta";
  if (fs::exists(meta_path, ec)) {
    plan.meta = read_meta(meta_path);
    if (plan.meta->kind != "db") {
      throw Error(ErrorCode::usage, plan.file.string() + " is a " + plan.meta->kind + " backup",
                  "restore db takes a database backup");
    }
  } else if (!options.allow_no_meta) {
    throw Error(ErrorCode::verification,
                "no " + meta_path.filename().string() + ": the file's checksum cannot be checked",
                "a dump made elsewhere can be restored with --allow-no-meta (it is then only "
                "checked to read)");
  } else {
    spdlog::warn("restore: {} has no meta; restoring it unchecked (--allow-no-meta)",
                 plan.file.filename().string());
  }

  // 2. One pass over the file: sha256 and whether it reads.
  std::optional<PgTool> pg_restore;
  if (is_custom(plan.format)) {
    int major = 0;
    if (plan.meta) {
      if (auto t = parse_tool_version("(PostgreSQL) " + plan.meta->source.value("pg_dump_version", ""))) {
        major = t->major;
      }
    }
    pg_restore = find_pg_tool("pg_restore", major, config);
  }
  progress.start("check " + plan.file.filename().string());
  // With a meta to compare the sha256 with, the stored bytes are proven to be the backup's; the
  // zstd frames are then decoded by the restore itself, before the swap (or, --in-place, before
  // the drop: there they are decoded here).
  const ZstdScan zstd = plan.meta && !options.in_place ? ZstdScan::toc_only : ZstdScan::every_frame;
  ArchiveScan scan = scan_db_archive(plan.file, plan.format, pg_restore ? &*pg_restore : nullptr, progress,
                                     config.age_identity, zstd);
  progress.finish();
  plan.size = scan.size;
  plan.sha256 = scan.sha256;
  plan.toc = scan.toc;
  plan.toc_entries = scan.toc_entries;
  if (plan.size == 0) {
    throw Error(ErrorCode::verification, plan.file.string() + " is empty", "use another backup");
  }
  if (plan.meta) {
    if (plan.sha256 != plan.meta->sha256 || plan.size != plan.meta->size) {
      throw Error(ErrorCode::verification,
                  fmt::format("{} does not match its meta: sha256 {}… (meta {}…), size {} (meta {})",
                              plan.file.filename().string(), plan.sha256.substr(0, 12),
                              plan.meta->sha256.substr(0, 12), plan.size, plan.meta->size),
                  "the file is damaged or was changed; nothing was touched; pick another backup "
                  "with `backupctl list`");
    }
    plan.checksum_state = "sha256 matches the meta";
  } else {
    plan.checksum_state = "no meta to compare with (--allow-no-meta)";
  }
  if (is_custom(plan.format)) {
    auto db = archived_database(plan.toc);
    if (!db) {
      throw Error(ErrorCode::verification, "the archive has no DATABASE entry",
                  "it is not a pg_dump of a whole database");
    }
    plan.source_database = db->name;
  }

  // 3. The server: the target, its size, the roles the backup needs.
  plan.target_database = options.target_db.empty() ? target.dbname() : options.target_db;
  PgTarget maintenance = maintenance_target(target);
  PgConnection conn = PgConnection::open(maintenance);
  plan.target_exists = database_exists(conn, plan.target_database);
  if (plan.target_exists) {
    plan.target_size = bytes_pretty(
        conn.scalar("SELECT pg_database_size($1)::text", {plan.target_database}));
  }
  plan.roles_file = roles_file_for(plan.file, plan.meta);
  if (plan.roles_file && plan.meta && plan.meta->parts.contains("roles")) {
    // The roles file is SQL run as a superuser: check it against the .meta before using it.
    std::string want = plan.meta->parts["roles"].value("sha256", "");
    if (!want.empty() && io::digest_file(plan.roles_file->string()).sha256 != want) {
      throw Error(ErrorCode::verification,
                  "the roles file " + plan.roles_file->filename().string() + " does not match the sha256 in the .meta",
                  "copy it again from the backup's origin, or move it away to restore without creating roles "
                  "(the owners must then exist)");
    }
  }
  if (plan.roles_file) {
    std::set<std::string> existing;
    for (const auto& row : conn.query("SELECT rolname FROM pg_roles")) existing.insert(*row[0]);
    plan.roles_to_create = missing_roles_script(read_plaintext(*plan.roles_file, config.age_identity), existing).created;
  }
  plan.services = make_service_controller(config)->describe_stop();
  plan.mode = options.in_place ? "in-place" : (options.online ? "online swap" : "swap");
  if (!options.in_place && plan.target_exists) {
    plan.previous_name = previous_database_name(plan.target_database, unused_restore_timestamp(conn, plan.target_database));
  }
  return plan;
}

std::string RestorePlan::describe() const {
  std::string out = "restore plan (nothing has been changed):\n";
  std::string created = meta ? meta->created_at : "unknown (no meta)";
  out += fmt::format("  file:       {}\n", file.string());
  out += fmt::format("  made:       {}{}\n", created,
                     meta && !meta->source.empty()
                         ? " from " + meta->source.value("database", "?") + " on " +
                               meta->source.value("host", "?")
                         : "");
  out += fmt::format("  size:       {} ({})\n", human_bytes(size), db_format_name(format));
  out += fmt::format("  checksum:   {}\n", checksum_state);
  if (toc_entries > 0) out += fmt::format("  contents:   {} TOC entries, database {}\n", toc_entries, source_database);
  out += fmt::format("  target:     database {} on the server ({})\n", target_database,
                     target_exists ? "exists, " + target_size : "does not exist yet");
  if (mode == "in-place") {
    out += "  method:     in place: a safety dump of the current database, then drop, recreate "
           "and restore\n";
  } else {
    out += fmt::format("  method:     {}: restore into a side database, then rename{}\n", mode,
                       previous_name.empty() ? " it into place"
                                             : "; the current one is kept as " + previous_name);
  }
  out += fmt::format("  services:   {} ({})\n", services,
                     mode == "online swap" ? "only around the swap" : "during the restore");
  if (!roles_to_create.empty()) {
    std::string roles;
    for (const auto& r : roles_to_create) roles += (roles.empty() ? "" : ", ") + r;
    out += fmt::format("  roles:      will create {}\n", roles);
  }
  return out;
}

nlohmann::json RestorePlan::to_json() const {
  return {{"file", file.string()},
          {"format", db_format_name(format)},
          {"created_at", meta ? nlohmann::json(meta->created_at) : nlohmann::json(nullptr)},
          {"size", size},
          {"sha256", sha256},
          {"checksum", checksum_state},
          {"toc_entries", toc_entries},
          {"source_database", source_database},
          {"target_database", target_database},
          {"target_exists", target_exists},
          {"mode", mode},
          {"previous_name", previous_name},
          {"services", services},
          {"roles_to_create", roles_to_create}};
}

RestoreReport run_restore_db(const Config& config, const PgTarget& target, const RestorePlan& plan,
                             const RestoreDbOptions& options, Progress& progress) {
  const auto t0 = SteadyClock::now();
  RestoreReport report;
  report.file = plan.file;
  report.target = plan.target_database;
  report.mode = plan.mode;
  Phases phases(report);
  const PgTarget maintenance = maintenance_target(target);
  const PgTarget db_target = target.with_database(plan.target_database);
  int server_major = PgConnection::open(maintenance).server_major();
  const PgTool psql = find_pg_tool("psql", server_major, config);
  // Both, whatever the format: putting a safety dump back needs pg_restore after a .sql failed.
  const PgTool pg_restore = find_pg_tool("pg_restore", server_major, config);
  auto controller = make_service_controller(config);

  std::optional<ServicesStopped> services;
  if (!options.online) services.emplace(*controller);

  if (plan.roles_file) {
    phases.start("roles");
    PgConnection conn = PgConnection::open(maintenance);
    report.roles_created = create_missing_roles(conn, read_plaintext(*plan.roles_file, config.age_identity));
  }

  if (options.in_place) {
    // The plan's method, made safe: a dump of what is there now comes first.
    if (plan.target_exists) {
      phases.start("safety dump");
      NoProgress quiet;
      BackupResult safety = backup_db(config, db_target, quiet);
      report.safety_dump = safety.file;
      spdlog::info("restore: safety dump of the current {} is {}", plan.target_database,
                   safety.file.string());
    }
    try {
      phases.start("drop and create");
      {
        PgConnection conn = PgConnection::open(maintenance);
        drop_database(conn, plan.target_database);
      }
      create_database(plan, psql, &pg_restore, maintenance, plan.target_database, config.age_identity);
      phases.start("restore");
      load_backup(config, plan, pg_restore, psql, target, plan.target_database, progress);
    } catch (const std::exception& failure) {
      InterruptShield shield;  // what follows must finish, even after SIGINT/SIGTERM
      const Error* err = dynamic_cast<const Error*>(&failure);
      ErrorCode code = err ? err->code() : ErrorCode::internal;
      if (!report.safety_dump) {
        // There was no database before: leave none, rather than a half-restored one.
        PgConnection conn = PgConnection::open(maintenance);
        drop_database(conn, plan.target_database);
        throw Error(code, failure.what(),
                    failure_hint(config, maintenance, plan, "no database was left behind"));
      }
      // Put the safety dump back, so the failure leaves the database as it was.
      spdlog::error("restore: {}; putting the safety dump back", failure.what());
      try {
        RestoreDbOptions back = options;
        back.file = *report.safety_dump;
        NoProgress quiet;
        RestorePlan back_plan = plan_restore_db(config, target, back, quiet);
        {
          PgConnection conn = PgConnection::open(maintenance);
          drop_database(conn, plan.target_database);
        }
        create_database(back_plan, psql, &pg_restore, maintenance, plan.target_database,
                        config.age_identity);
        load_backup(config, back_plan, pg_restore, psql, target,
                    plan.target_database, quiet);
      } catch (const std::exception& again) {
        throw Error(code, std::string(failure.what()) + "; putting the safety dump back failed too: " +
                              again.what(),
                    "restore the safety dump by hand: CONFIRM=YES backupctl restore db --in-place "
                    "--file " + report.safety_dump->string());
      }
      throw Error(code, failure.what(),
                  failure_hint(config, maintenance, plan,
                               "the database was put back from the safety dump " +
                                   report.safety_dump->string()));
    }
  } else {
    const std::string ts = [&] {
      PgConnection conn = PgConnection::open(maintenance);
      return unused_restore_timestamp(conn, plan.target_database);
    }();
    const std::string side = side_database_name(plan.target_database, ts);
    TemporaryDatabase side_guard(maintenance, side);
    try {
      phases.start("create side database");
      create_database(plan, psql, &pg_restore, maintenance, side, config.age_identity);
      phases.start("restore");
      LoadedRows loaded = load_backup(config, plan, pg_restore, psql, target, side, progress);
      phases.start("analyze and count rows");
      TableRows restored;
      if (loaded.confirmed) {
        // The loader compared the server's COPY counts with the archive's as it went.
        analyze_tables(target, side, config.restore_jobs, loaded.analyzed);
        restored = *loaded.archive;
        std::sort(restored.begin(), restored.end());
      } else {
        restored = analyze_and_count(target, side, config.restore_jobs);
        if (loaded.archive) check_rows(*loaded.archive, restored);
      }
      set_tables(report, restored);
      report.rows_checked = loaded.archive.has_value();
    } catch (const Error& e) {
      if (e.code() == ErrorCode::interrupted) throw;
      throw Error(e.code(), e.what(),
                  failure_hint(config, maintenance, plan,
                               "the database " + plan.target_database +
                                   " was not changed and the side database is dropped"));
    }
    if (options.online) services.emplace(*controller);
    phases.start("swap");
    {
      PgConnection conn = PgConnection::open(maintenance);
      std::string previous = previous_database_name(plan.target_database, ts);
      if (swap_databases(conn, side, plan.target_database, previous)) report.previous = previous;
      side_guard.release();
    }
  }
  phases.end();
  if (services) {
    services->start_now();
    if (!controller->does_nothing()) report.services_down_seconds = services->seconds_down();
  }

  if (report.tables.empty()) set_tables(report, count_rows(target, plan.target_database));
  if (!options.in_place) {
    PgConnection conn = PgConnection::open(maintenance);
    report.pruned = prune_previous_databases(conn, plan.target_database,
                                             config.restore_keep_previous_days, Clock::now());
  }
  report.total_seconds = seconds_since(t0);
  return report;
}

std::string RestoreReport::describe() const {
  std::string out = fmt::format("restored {} into database {} ({}) in {}\n", file.string(), target,
                                mode, human_duration(total_seconds));
  for (const auto& [name, secs] : phases) out += fmt::format("  {:<22} {}\n", name, human_duration(secs));
  out += fmt::format("  {:<22} {}\n", "services down", human_duration(services_down_seconds));
  if (!roles_created.empty()) {
    std::string roles;
    for (const auto& r : roles_created) roles += (roles.empty() ? "" : ", ") + r;
    out += "  roles created: " + roles + "\n";
  }
  out += rows_checked ? "  rows (equal to the backup's):\n" : "  rows:\n";
  for (const auto& [table, rows] : tables) out += fmt::format("    {:<40} {:>12}\n", table, rows);
  if (!previous.empty()) {
    out += fmt::format("the previous database is kept as {}; undo with: backupctl restore undo "
                       "(CONFIRM=YES)\n",
                       previous);
  }
  if (safety_dump) {
    out += fmt::format("the database before the restore is in {}\n", safety_dump->string());
  }
  for (const auto& p : pruned) out += "dropped " + p + " (older than RESTORE_KEEP_PREVIOUS_DAYS)\n";
  return out;
}

nlohmann::json RestoreReport::to_json() const {
  nlohmann::json j = {{"ok", true},
                      {"file", file.string()},
                      {"target", target},
                      {"mode", mode},
                      {"previous", previous},
                      {"total_seconds", total_seconds},
                      {"services_down_seconds", services_down_seconds},
                      {"roles_created", roles_created},
                      {"rows_checked", rows_checked},
                      {"pruned", pruned}};
  j["phases"] = nlohmann::json::object();
  for (const auto& [name, secs] : phases) j["phases"][name] = secs;
  j["tables"] = nlohmann::json::object();
  for (const auto& [table, rows] : tables) j["tables"][table] = rows;
  j["safety_dump"] = safety_dump ? nlohmann::json(safety_dump->string()) : nlohmann::json(nullptr);
  return j;
}

UndoPlan plan_restore_undo(const Config& config, const PgTarget& target, const std::string& target_db) {
  UndoPlan plan;
  plan.target = target_db.empty() ? target.dbname() : target_db;
  PgConnection conn = PgConnection::open(maintenance_target(target));
  auto previous = previous_databases(conn, plan.target);
  if (previous.empty()) {
    throw Error(ErrorCode::not_found,
                "no previous copy of " + plan.target + " to go back to (no " + plan.target +
                    "__pre_restore_* database)",
                "only a swap restore keeps one, for RESTORE_KEEP_PREVIOUS_DAYS days; restore an "
                "older backup instead");
  }
  plan.previous = previous.front().name;
  plan.keep_as = previous_database_name(plan.target, unused_restore_timestamp(conn, plan.target));
  plan.services = make_service_controller(config)->describe_stop();
  return plan;
}

std::string UndoPlan::describe() const {
  return fmt::format(
      "undo plan (nothing has been changed):\n  put back:   {} as {}\n  keep:       the current {} "
      "as {}\n  services:   {} (only around the swap)\n",
      previous, target, target, keep_as, services);
}

RestoreReport run_restore_undo(const Config& config, const PgTarget& target, const UndoPlan& plan) {
  const auto t0 = SteadyClock::now();
  RestoreReport report;
  report.target = plan.target;
  report.mode = "undo";
  Phases phases(report);
  auto controller = make_service_controller(config);
  PgTarget maintenance = maintenance_target(target);
  {
    ServicesStopped services(*controller);
    phases.start("swap");
    PgConnection conn = PgConnection::open(maintenance);
    swap_databases(conn, plan.previous, plan.target, plan.keep_as);
    report.previous = plan.keep_as;
    phases.end();
    services.start_now();
    if (!controller->does_nothing()) report.services_down_seconds = services.seconds_down();
  }
  set_tables(report, count_rows(target, plan.target));
  report.total_seconds = seconds_since(t0);
  return report;
}

}  // namespace backupctl
