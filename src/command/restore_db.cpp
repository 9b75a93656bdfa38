// The database restore, one concern in its three stages: plan_restore_db() checks everything and
// changes nothing, DbRestoreRun carries out the plan as the journal's steps, and the report and
// `restore undo` describe and reverse it. Over 500 lines because the stages share the plan's and
// the swap's invariants (restore_db.hpp); the loading itself is pg/load.cpp's.
#include "command/restore_db.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <set>

#include "catalog/catalog.hpp"
#include "catalog/naming.hpp"
#include "command/backup_db.hpp"
#include "command/remote.hpp"
#include "io/age.hpp"
#include "io/pipeline.hpp"
#include "io/zstd.hpp"
#include "pg/connection.hpp"
#include "pg/identity.hpp"
#include "pg/roles.hpp"
#include "pg/swap.hpp"
#include "pg/tools.hpp"
#include "service/compose.hpp"
#include "service/service.hpp"
#include "util/error.hpp"
#include "util/fault.hpp"
#include "util/format.hpp"
#include "util/fs.hpp"
#include "util/json.hpp"
#include "util/signals.hpp"
#include "util/time.hpp"
#include "util/words.hpp"

namespace backupctl {

namespace fs = std::filesystem;
using SteadyClock = std::chrono::steady_clock;

namespace {

// Times the phases of a restore for the report.
class Phases {
 public:
  explicit Phases(RestoreReport& report) : m_report(report) {}
  void start(const std::string& name) {
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

// A (small) file's text, decrypted when it ends in .age.
std::string read_plaintext(const fs::path& file, const fs::path& identity) {
  auto source = io::open_plaintext(file, identity);
  io::StringSink out;
  io::copy(*source, out);
  return out.take();
}

// The roles file saved beside a dump: the one its meta names (a plain name beside it), else the
// one of the dump's own name.
std::optional<fs::path> roles_file_for(const fs::path& file, const std::optional<Meta>& meta) {
  if (meta && meta->parts.contains("roles")) return meta_part_file(file, *meta, "roles");
  fs::path p = file.parent_path() / roles_filename(file.filename().string());
  std::error_code ec;
  if (fs::is_regular_file(fs::symlink_status(p, ec))) return p;
  return std::nullopt;
}

void set_tables(RestoreReport& report, const TableRows& rows) {
  report.tables.clear();
  for (const auto& [schema, table, n] : rows) report.tables.emplace_back(schema + "." + table, n);
}

bool same_file(const fs::path& a, const fs::path& b) {
  std::error_code ec;
  return a == b || fs::equivalent(a, b, ec);
}

// The hint for a failed restore: the database is as it was, where the server log is, and the
// newest verified backup of the same database (never the file that just failed).
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
    std::string logs = "docker compose -f " + config.compose_file.string() + " logs " + config.pg_service + " --tail=200";
    try {
      logs = join_words(compose_argv(config, {"logs", "--tail=200", config.pg_service}));
    } catch (const Error&) {
      // No compose front end: the v2 spelling is the hint.
    }
    hint += "; the server log: " + logs;
  } else {
    hint += "; see the PostgreSQL server log";
  }
  const std::string database = plan.source_database.empty() ? plan.target_database : plan.source_database;
  for (const CatalogEntry& e : scan_catalog(config.backup_dir)) {
    if (e.kind != Kind::db || same_file(e.path, plan.file) || e.source() != database) continue;
    if (e.verified_ok()) {
      hint += "; the newest verified backup of " + database + " is " + e.path.string();
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

// What the first bytes of the (decrypted) file say it is, whatever its name: a custom-format
// archive starts with "PGDMP", a zstd frame with 28 b5 2f fd, gzip with 1f 8b.
std::string leading_bytes(const fs::path& file, const fs::path& identity) {
  auto source = io::open_plaintext(file, identity);
  std::string head(5, '\0');
  std::size_t got = 0;
  while (got < head.size()) {
    std::size_t n = source->read(std::span<char>(head.data() + got, head.size() - got));
    if (n == 0) break;
    got += n;
  }
  head.resize(got);
  return head;
}

// The format the plan restores: the name's, unless the header says otherwise.
DbFormat sniffed_format(const fs::path& file, DbFormat named, const fs::path& identity, std::string& note) {
  if (io::is_encrypted(file) && identity.empty()) return named;  // the scan says what it needs
  std::string head = leading_bytes(file, identity);
  const bool pgdmp = head.starts_with("PGDMP");
  if ((named == DbFormat::sql) && pgdmp) {
    note = "a custom-format archive (PGDMP header) named .sql: restored as one";
    return DbFormat::custom;
  }
  if (named == DbFormat::custom && !pgdmp) {
    bool zstd = head.size() >= 4 && static_cast<unsigned char>(head[0]) == 0x28 &&
                static_cast<unsigned char>(head[1]) == 0xb5 && static_cast<unsigned char>(head[2]) == 0x2f &&
                static_cast<unsigned char>(head[3]) == 0xfd;
    bool gzip = head.size() >= 2 && static_cast<unsigned char>(head[0]) == 0x1f &&
                static_cast<unsigned char>(head[1]) == 0x8b;
    throw Error(ErrorCode::verification,
                file.filename().string() + " is named .dump but is not a custom-format archive (no PGDMP header)",
                zstd ? "it is zstd-compressed: name it .dump.zst"
                     : gzip ? "it is gzip-compressed SQL: name it .sql.gz"
                            : "if it is plain SQL, name it .sql; nothing was touched");
  }
  return named;
}

}  // namespace

namespace {

// plan_restore_db's steps, in order; each fills in `plan` or throws, and none changes anything.
// 0. The options, the file and its format, and the target.
void plan_file_and_target(const Config& config, const PgTarget& target, const RestoreDbOptions& options, RestorePlan& plan) {
  if (options.in_place && options.online) {
    throw Error(ErrorCode::usage, "--in-place and --online cannot be combined",
                "--online needs room for a second copy; --in-place replaces the database directly");
  }
  if (options.in_place && options.incoming) {
    throw Error(ErrorCode::internal, "an --in-place restore cannot read a dump as it arrives");
  }
  if (!options.incoming) require_backup_file(plan.file, config.backup_dir, "db");
  auto format = db_format_of(plan.file);
  if (!format) {
    throw Error(ErrorCode::usage, "cannot restore " + plan.file.string() + ": unknown file type",
                "a database backup ends in .dump, .dump.zst, .sql or .sql.gz");
  }
  plan.format = *format;

  // 0. The target: a staging database (--target-db, a rehearsal) can never be the live one,
  // however its URL spells it.
  plan.target_database = options.target_db.empty() ? target.dbname() : options.target_db;
  plan.stops_services = options.target_db.empty();
  if (!options.target_db.empty()) {
    const PgTarget& live = options.live ? *options.live : target;
    refuse_live_target(live, target.with_database(options.target_db),
                       options.live ? "STAGING_DATABASE_URL" : "--target-db");
  }

}

void plan_meta(const Config& config, const RestoreDbOptions& options, RestorePlan& plan) {
  // 1. The meta: present, or an explicit opt-in for a dump made elsewhere.
  fs::path meta_path = plan.file;
  meta_path += ".meta";
  std::error_code ec;
  if (options.incoming) {
    plan.meta = options.incoming->meta();
  } else if (fs::exists(meta_path, ec)) {
    plan.meta = read_meta(meta_path);
  } else if (!options.allow_no_meta) {
    throw Error(ErrorCode::verification,
                "no " + meta_path.filename().string() + ": the file's checksum cannot be checked",
                "a dump made elsewhere can be restored with --allow-no-meta (it is then only "
                "checked to read)");
  } else {
    spdlog::warn("restore: {} has no meta; restoring it unchecked (--allow-no-meta)",
                 plan.file.filename().string());
  }
  if (plan.meta && plan.meta->kind != "db") {
    throw Error(ErrorCode::usage, plan.file.string() + " is a " + plan.meta->kind + " backup",
                "restore db takes a database backup");
  }
  plan.format = sniffed_format(plan.file, plan.format, config.age_identity, plan.format_note);

}

void plan_scan(const Config& config, const RestoreDbOptions& options, RestorePlan& plan, Progress& progress) {
  // 2. One pass over the file: sha256 and whether it reads.
  std::optional<PgTool> pg_restore;
  if (is_custom(plan.format)) {
    int major = 0;
    if (plan.meta) {
      if (auto t = parse_tool_version("(PostgreSQL) " + json_string(plan.meta->source, "pg_dump_version"))) {
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
  // A file this process just fetched from the remote was hashed as it arrived (rehearse
  // --remote), and a dump streamed from the remote is checked against the remote meta's sha256 as
  // it arrives (no reader sees its end before it matched; the swap waits for that): then only the
  // table of contents is read here.
  std::string known_sha256;
  if (options.incoming) {
    known_sha256 = plan.meta->sha256;
  } else if (zstd == ZstdScan::toc_only) {
    known_sha256 = fetched_sha256(plan.file).value_or("");
  }
  auto not_its_meta = [&](const std::string& sha256, std::uint64_t size) {
    return Error(ErrorCode::verification,
                 fmt::format("{} does not match its meta: sha256 {}… (meta {}…), size {} (meta {})",
                             plan.file.filename().string(), sha256.substr(0, 12), plan.meta->sha256.substr(0, 12), size,
                             plan.meta->size),
                 "the file is damaged or was changed; nothing was touched; pick another backup "
                 "with `backupctl list`");
  };
  DumpScan scan;
  try {
    scan = scan_dump(plan.file, plan.format, pg_restore ? &*pg_restore : nullptr, progress, config.age_identity, zstd,
                     known_sha256);
  } catch (const Error& e) {
    // A damaged dump can make pg_restore fail, even crash, before the digests are compared: the
    // cause to name is then the file that is not its meta's.
    if (e.code() == ErrorCode::interrupted || !plan.meta || options.incoming) throw;
    const io::FileDigest d = io::digest_file(plan.file.string());
    if (d.sha256 != plan.meta->sha256 || d.size != plan.meta->size) throw not_its_meta(d.sha256, d.size);
    throw;
  }
  progress.finish();
  plan.size = scan.size;
  plan.sha256 = scan.sha256;
  plan.toc = scan.toc;
  plan.toc_entries = scan.toc_entries;
  if (plan.size == io::IncomingFile::kUnknownSize) plan.size = 0;  // pg_dump's, still being written
  if (plan.size == 0 && !options.incoming) {
    throw Error(ErrorCode::verification, plan.file.string() + " is empty", "use another backup");
  }
  if (options.incoming) {
    plan.checksum_state = options.incoming->checksum_state();  // checked as it arrives
  } else if (plan.meta) {
    if (plan.sha256 != plan.meta->sha256 || plan.size != plan.meta->size) throw not_its_meta(plan.sha256, plan.size);
    plan.checksum_state = "sha256 matches the meta";
  } else {
    plan.checksum_state = "no meta to compare with (--allow-no-meta)";
  }
}

// Whose dump it is.
void plan_source_database(const PgTarget& target, const RestoreDbOptions& options, RestorePlan& plan) {
  if (is_custom(plan.format)) {
    auto db = dumped_database(plan.toc);
    if (!db) {
      throw Error(ErrorCode::verification, "the archive has no DATABASE entry",
                  "it is not a pg_dump of a whole database");
    }
    plan.source_database = db->name;
  }
  // A dump of another database (two databases backed up to one BACKUP_DIR or remote) is never
  // swapped into this one by mistake: only with --allow-other-database, and the plan says so.
  // The archive's DATABASE entry decides; a plain SQL dump has only its meta's word.
  const PgTarget& configured = options.live ? *options.live : target;
  std::string source = plan.source_database;
  if (source.empty() && plan.meta) source = json_string(plan.meta->source, "database");
  if (!source.empty() && source != configured.dbname()) {
    if (!options.allow_other_database) {
      throw Error(ErrorCode::usage,
                  plan.file.filename().string() + " is a dump of database " + source + ", not of " + configured.dbname() +
                      " (PGDATABASE / DATABASE_URL): not restored",
                  "to restore it over " + plan.target_database + " anyway: --allow-other-database; to restore " + source +
                      ": PGDATABASE=" + source);
    }
    plan.other_database = source;
  }

}

void plan_server(const Config& config, const PgTarget& target, const RestoreDbOptions& options, RestorePlan& plan) {
  // 3. The server: the target, its size, the roles the backup needs.
  PgTarget maintenance = maintenance_target(target);
  PgConnection conn = PgConnection::open(maintenance);
  plan.target_exists = database_exists(conn, plan.target_database);
  if (plan.target_exists) {
    plan.target_size = bytes_pretty(
        conn.scalar("SELECT pg_database_size($1)::text", {plan.target_database}));
  }
  // A streamed dump's roles file came whole and was checked against the remote meta already.
  plan.roles_file = options.incoming ? options.incoming->roles_file() : roles_file_for(plan.file, plan.meta);
  if (!options.incoming && plan.roles_file && plan.meta && plan.meta->parts.contains("roles")) {
    // The roles file is SQL run as a superuser: check it against the .meta before using it.
    std::string want = json_string(plan.meta->parts["roles"], "sha256");
    if (want.empty() || io::digest_file(plan.roles_file->string()).sha256 != want) {
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
  plan.services = plan.stops_services ? make_service_controller(config)->describe_stop()
                                      : "not stopped (the restore goes into " + plan.target_database +
                                            ", not the live database)";
  plan.mode = options.in_place ? "in-place" : (options.online ? "online swap" : "swap");
  if (!options.in_place && plan.target_exists) {
    plan.previous_name = previous_database_name(plan.target_database, unused_restore_timestamp(conn, plan.target_database));
  }
}

}  // namespace

RestorePlan plan_restore_db(const Config& config, const PgTarget& target,
                            const RestoreDbOptions& options, Progress& progress) {
  RestorePlan plan;
  plan.file = options.file;
  plan.incoming = options.incoming;
  plan_file_and_target(config, target, options, plan);
  plan_meta(config, options, plan);
  plan_scan(config, options, plan, progress);
  plan_source_database(target, options, plan);
  plan_server(config, target, options, plan);
  return plan;
}

std::string RestorePlan::describe() const {
  std::string out = "restore plan (nothing has been changed):\n";
  std::string created = meta ? meta->created_at : "unknown (no meta)";
  if (incoming) {
    out += fmt::format("  file:       {} (read as it downloads; nothing is stored locally)\n", incoming->origin());
  } else {
    out += fmt::format("  file:       {}\n", file.string());
  }
  out += fmt::format("  made:       {}{}\n", created,
                     meta && !meta->source.empty()
                         ? " from " + json_string(meta->source, "database", "?") + " on " +
                               json_string(meta->source, "host", "?")
                         : "");
  out += fmt::format("  size:       {} ({})\n", human_bytes(size), db_format_name(format));
  if (!format_note.empty()) out += fmt::format("  format:     {}\n", format_note);
  out += fmt::format("  checksum:   {}\n", checksum_state);
  if (toc_entries > 0) out += fmt::format("  contents:   {} TOC entries, database {}\n", toc_entries, source_database);
  if (!other_database.empty()) {
    out += fmt::format("  CAUTION:    this is a dump of database {}, another database than the configured one; it "
                       "replaces {} (--allow-other-database)\n",
                       other_database, target_database);
  }
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
  if (stops_services) {
    out += fmt::format("  services:   {} ({})\n", services,
                       mode == "online swap" ? "only around the swap"
                       : incoming            ? "during the restore, which follows the download"
                                             : "during the restore");
  } else {
    out += fmt::format("  services:   {}\n", services);
  }
  if (!roles_to_create.empty()) {
    std::string roles;
    for (const auto& r : roles_to_create) roles += (roles.empty() ? "" : ", ") + r;
    out += fmt::format("  roles:      will create {}\n", roles);
  }
  return out;
}

nlohmann::json RestorePlan::to_json() const {
  return {{"file", file.string()},
          {"remote", incoming ? nlohmann::json(incoming->origin()) : nlohmann::json(nullptr)},
          {"format", db_format_name(format)},
          {"created_at", meta ? nlohmann::json(meta->created_at) : nlohmann::json(nullptr)},
          {"size", size},
          {"sha256", sha256},
          {"checksum", checksum_state},
          {"toc_entries", toc_entries},
          {"source_database", source_database},
          {"other_database", !other_database.empty()},
          {"target_database", target_database},
          {"target_exists", target_exists},
          {"mode", mode},
          {"previous_name", previous_name},
          {"services", services},
          {"stops_services", stops_services},
          {"roles_to_create", roles_to_create}};
}

void put_back_safety_dump(const Config& config, const PgTarget& target, const std::string& live,
                          const fs::path& dump) {
  RestoreDbOptions back;
  back.file = dump;
  NoProgress quiet;
  const PgTarget db_target = target.with_database(live);
  RestorePlan plan = plan_restore_db(config, db_target, back, quiet);
  const PgTarget maintenance = maintenance_target(target);
  int major = PgConnection::open(maintenance).server_major();
  const PgTool psql = find_pg_tool("psql", major, config);
  const PgTool pg_restore = find_pg_tool("pg_restore", major, config);
  {
    PgConnection conn = PgConnection::open(maintenance);
    drop_database(conn, live);
  }
  create_database(plan.dump(config), psql, pg_restore, maintenance, live, live);
  load_dump(plan.dump(config), pg_restore, psql, db_target, live, config.restore_jobs, quiet);
}

namespace {

// One restore of a database, as the steps the journal names (restore-db.<step>): stop-services,
// roles, scratch-made, then in place (safety-dump, drop, create, load) or beside the live
// database (create-side, load, analyze, remote-checked, swap), then start-services and
// prune-previous. Members are declared in the order their undo must run in reverse: on an
// error the scratch folder goes first, then the services are started again.
class DbRestoreRun {
 public:
  DbRestoreRun(const Config& config, const PgTarget& target, const RestorePlan& plan, const RestoreDbOptions& options,
               Journal& journal, Progress& progress)
      : m_config(config), m_plan(plan), m_options(options), m_journal(journal), m_progress(progress),
        m_phases(m_report), m_target(target), m_maintenance(maintenance_target(target)),
        m_db_target(target.with_database(plan.target_database)), m_live(plan.target_database), m_dump(plan.dump(config)) {
    m_report.file = plan.incoming ? fs::path(plan.incoming->origin()) : plan.file;
    m_report.target = plan.target_database;
    m_report.mode = plan.mode;
    int server_major = 0;
    {
      PgConnection conn = PgConnection::open(m_maintenance);
      m_server = server_record(conn);
      server_major = conn.server_major();
    }
    m_psql = find_pg_tool("psql", server_major, config);
    // Both, whatever the format: putting a safety dump back needs pg_restore after a .sql failed.
    m_pg_restore = find_pg_tool("pg_restore", server_major, config);
    m_controller = make_service_controller(config);
  }

  RestoreReport run() {
    const auto t0 = SteadyClock::now();
    if (!m_options.online) stop_services();
    create_roles();
    make_scratch();
    if (m_options.in_place) {
      restore_in_place();
    } else {
      restore_beside_and_swap();
    }
    m_phases.end();
    // From here the restore is done (the swap committed, or the in-place load finished): a signal
    // no longer undoes anything, so what is left (the services, the kept copies) finishes first.
    InterruptShield finishing;
    m_scratch_entry.undo();
    start_services();
    if (m_report.tables.empty()) set_tables(m_report, count_rows(m_target, m_live));
    if (!m_options.in_place) prune_previous();
    m_report.total_seconds = seconds_since(t0);
    return m_report;
  }

 private:
  void stop_services() {
    if (!m_plan.stops_services) return;
    m_journal.step("restore-db.stop-services");
    m_services.emplace(*m_controller, m_journal);
  }

  void create_roles() {
    if (!m_plan.roles_file) return;
    m_journal.step("restore-db.roles");
    m_phases.start("roles");
    PgConnection conn = PgConnection::open(m_maintenance);
    m_report.roles_created = create_missing_roles(conn, read_plaintext(*m_plan.roles_file, m_config.age_identity));
  }

  // The loader's scratch folder (a copy of the archive's table of contents), journaled before it
  // is made, so a crash at no moment leaves it behind (it used to be made first).
  void make_scratch() {
    const fs::path path = TempDir::unused_name("backupctl-restore");
    m_scratch_entry = m_journal.add("temp_dir", {{"path", path.string()}});
    m_scratch.emplace(path, TempDir::Exactly{});
    fault_point("restore-db.scratch-made");
  }

  // The plan's method, made safe: a dump of what is there now comes first; a failure puts it back.
  void restore_in_place() {
    if (m_plan.target_exists) {
      m_journal.step("restore-db.safety-dump");
      m_phases.start("safety dump");
      Journal::Entry unfinished = m_journal.add("backup", nlohmann::json::object());
      NoProgress quiet;
      BackupResult safety = backup_db(m_config, m_db_target, quiet);
      unfinished.settle();
      m_report.safety_dump = safety.file;
      spdlog::info("restore: safety dump of the current {} is {}", m_live, safety.file.string());
    }
    m_journal.step("restore-db.drop");
    Journal::Entry in_place = m_journal.add(
        "in_place", {{"server", m_server},
                     {"live", m_live},
                     {"existed", m_plan.target_exists},
                     {"safety_dump", m_report.safety_dump ? fs::relative(*m_report.safety_dump, m_config.backup_dir).string()
                                                          : ""}});
    try {
      drop_create_and_load(in_place);
      in_place.settle();
    } catch (const std::exception& failure) {
      InterruptShield shield;  // what follows must finish, even after a signal
      const Error* err = dynamic_cast<const Error*>(&failure);
      ErrorCode code = err ? err->code() : ErrorCode::internal;
      if (code == ErrorCode::interrupted) throw;  // in_place's undo puts the dump back
      if (m_report.safety_dump) spdlog::error("restore: {}; putting the safety dump back", failure.what());
      try {
        in_place.undo();
      } catch (const std::exception& again) {
        throw Error(code, std::string(failure.what()) + "; putting the safety dump back failed too: " + again.what(),
                    m_report.safety_dump ? "restore the safety dump by hand: CONFIRM=YES backupctl restore db --in-place "
                                           "--file " + m_report.safety_dump->string()
                                         : "drop the half-restored " + m_live + " by hand");
      }
      throw Error(code, failure.what(),
                  failure_hint(m_config, m_maintenance, m_plan,
                               m_report.safety_dump ? "the database was put back from the safety dump " +
                                                          m_report.safety_dump->string()
                                                    : "no database was left behind"));
    }
  }

  void drop_create_and_load(Journal::Entry& in_place) {
    m_phases.start("drop and create");
    {
      PgConnection conn = PgConnection::open(m_maintenance);
      drop_database(conn, m_live);
    }
    m_journal.step("restore-db.create");
    create_database(m_dump, m_psql, m_pg_restore, m_maintenance, m_live, m_live);
    if (!m_plan.target_exists) {
      PgConnection conn = PgConnection::open(m_maintenance);
      in_place.update({{"server", m_server}, {"live", m_live}, {"existed", false},
                       {"created_oid", conn.scalar("SELECT oid::text FROM pg_database WHERE datname = $1", {m_live})}});
    }
    m_journal.step("restore-db.load");
    m_phases.start("restore");
    load_dump(m_dump, m_pg_restore, m_psql, m_target, m_live, m_config.restore_jobs, m_progress, m_scratch->path());
  }

  // Into a side database, checked, then swapped in under the live name in one transaction; the
  // live database is untouched until then (a failure drops the side one: its entry's undo).
  void restore_beside_and_swap() {
    const std::string ts = [&] {
      PgConnection conn = PgConnection::open(m_maintenance);
      return unused_restore_timestamp(conn, m_live);
    }();
    const std::string side = side_database_name(m_live, ts);
    const std::string previous = previous_database_name(m_live, ts);
    m_journal.step("restore-db.create-side");
    Journal::Entry side_entry = m_journal.add("side_database", {{"server", m_server}, {"live", m_live}, {"name", side}});
    try {
      load_side(side);
    } catch (const Error& e) {
      if (e.code() == ErrorCode::interrupted) throw;
      throw Error(e.code(), e.what(),
                  failure_hint(m_config, m_maintenance, m_plan,
                               "the database " + m_live + " was not changed and the side database is dropped"));
    }
    if (m_options.online) stop_services();
    swap_in(side, previous);
    side_entry.settle();
  }

  void load_side(const std::string& side) {
    m_phases.start("create side database");
    create_database(m_dump, m_psql, m_pg_restore, m_maintenance, side, m_live);
    m_journal.step("restore-db.load");
    m_phases.start("restore");
    LoadedRows loaded = load_dump(m_dump, m_pg_restore, m_psql, m_target, side, m_config.restore_jobs, m_progress,
                                  m_scratch->path());
    m_journal.step("restore-db.analyze");
    m_phases.start("analyze and count rows");
    TableRows restored;
    if (loaded.confirmed) {
      // The loader compared the server's COPY counts with the archive's as it went.
      analyze_tables(m_target, side, m_config.restore_jobs, loaded.analyzed);
      restored = *loaded.archive;
      std::sort(restored.begin(), restored.end());
    } else {
      restored = analyze_and_count(m_target, side, m_config.restore_jobs);
      if (loaded.archive) check_rows(*loaded.archive, restored);
    }
    set_tables(m_report, restored);
    m_report.rows_checked = loaded.archive.has_value();
    if (m_plan.incoming) {
      // The loader read every byte as it came, but only the download's end (pg_dump's exit)
      // says they are the ones meant: nothing is swapped in before it did.
      m_journal.step("restore-db.remote-checked");
      m_phases.start(m_plan.incoming->wait_phase());
      m_plan.incoming->wait();
    }
  }

  void swap_in(const std::string& side, const std::string& previous) {
    m_journal.step("restore-db.swap");
    m_phases.start("swap");
    Journal::Entry swap = m_journal.add(
        "swap", {{"server", m_server}, {"live", m_live}, {"side", side}, {"previous", previous}, {"live_allowed", true}});
    PgConnection conn = PgConnection::open(m_maintenance);
    bool replaced = swap_databases(conn, side, m_live, previous, [&](bool allowed) {
      swap.update({{"server", m_server}, {"live", m_live}, {"side", side}, {"previous", previous}, {"live_allowed", allowed}});
    });
    // Committed: the restored database is live; nothing of the swap is left to undo.
    swap.settle();
    if (replaced) m_report.previous = previous;
  }

  void start_services() {
    if (!m_services) return;
    m_journal.step("restore-db.start-services");
    try {
      m_services->start_now();
    } catch (const Error& e) {
      std::string undo = m_report.safety_dump
                             ? "CONFIRM=YES backupctl restore db --in-place --file " + m_report.safety_dump->string()
                             : "CONFIRM=YES backupctl restore undo";
      throw Error(e.code(),
                  fmt::format("the database {} WAS restored from {}, but the services could not be started: {}", m_live,
                              m_plan.file.filename().string(), e.what()),
                  "the services are STOPPED: start them by hand (" + m_controller->describe_start() +
                      ") or run `backupctl repair`; to go back to the database before: " + undo);
    }
    if (!m_controller->does_nothing()) m_report.services_down_seconds = m_services->seconds_down();
  }

  void prune_previous() {
    m_journal.step("restore-db.prune-previous");
    PgConnection conn = PgConnection::open(m_maintenance);
    m_report.pruned = prune_previous_databases(conn, m_live, m_config.restore_keep_previous_days, Clock::now());
    m_report.previous_kept = !m_report.previous.empty() &&
                             std::find(m_report.pruned.begin(), m_report.pruned.end(), m_report.previous) ==
                                 m_report.pruned.end();
  }

  const Config& m_config;
  const RestorePlan& m_plan;
  const RestoreDbOptions& m_options;
  Journal& m_journal;
  Progress& m_progress;
  RestoreReport m_report;
  Phases m_phases;
  const PgTarget& m_target;
  const PgTarget m_maintenance, m_db_target;
  const std::string& m_live;
  const DumpSource m_dump;
  nlohmann::json m_server;
  PgTool m_psql, m_pg_restore;
  std::unique_ptr<ServiceController> m_controller;
  std::optional<ServicesStopped> m_services;
  Journal::Entry m_scratch_entry;
  std::optional<TempDir> m_scratch;
};

}  // namespace

RestoreReport run_restore_db(const Config& config, const PgTarget& target, const RestorePlan& plan,
                             const RestoreDbOptions& options, Journal& journal, Progress& progress) {
  return DbRestoreRun(config, target, plan, options, journal, progress).run();
}

std::string RestoreReport::describe() const {
  std::string out = fmt::format("restored {} into database {} ({}) in {}\n", file.string(), target,
                                mode, human_duration(total_seconds));
  if (!recovered_to.empty()) out += "  recovered to " + recovered_to + "\n";
  for (const auto& [name, secs] : phases) out += fmt::format("  {:<22} {}\n", name, human_duration(secs));
  out += fmt::format("  {:<22} {}\n", "services down", human_duration(services_down_seconds));
  if (!roles_created.empty()) {
    std::string roles;
    for (const auto& r : roles_created) roles += (roles.empty() ? "" : ", ") + r;
    out += "  roles created: " + roles + "\n";
  }
  out += rows_checked ? "  rows (equal to the backup's):\n" : "  rows:\n";
  for (const auto& [table, rows] : tables) out += fmt::format("    {:<40} {:>12}\n", table, rows);
  if (previous_kept) {
    out += fmt::format("the previous database is kept as {}; undo with: backupctl restore undo "
                       "(CONFIRM=YES)\n",
                       previous);
  } else if (!previous.empty()) {
    out += fmt::format("the previous database was dropped at once (RESTORE_KEEP_PREVIOUS_DAYS=0): there is "
                       "no undo; an earlier backup restores it\n");
  }
  if (safety_dump) {
    out += fmt::format("the database before the restore is in {}\n", safety_dump->string());
  }
  for (const auto& p : pruned) {
    if (p != previous) out += "dropped " + p + " (older than RESTORE_KEEP_PREVIOUS_DAYS)\n";
  }
  return out;
}

nlohmann::json RestoreReport::to_json() const {
  nlohmann::json j = {{"ok", true},
                      {"file", file.string()},
                      {"recovered_to", recovered_to},
                      {"target", target},
                      {"mode", mode},
                      {"previous", previous_kept ? previous : ""},
                      {"undo", previous_kept},
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

RestoreReport run_restore_undo(const Config& config, const PgTarget& target, const UndoPlan& plan,
                               Journal& journal) {
  const auto t0 = SteadyClock::now();
  RestoreReport report;
  report.target = plan.target;
  report.mode = "undo";
  Phases phases(report);
  auto controller = make_service_controller(config);
  PgTarget maintenance = maintenance_target(target);
  {
    journal.step("restore-undo.stop-services");
    ServicesStopped services(*controller, journal);
    journal.step("restore-undo.swap");
    phases.start("swap");
    PgConnection conn = PgConnection::open(maintenance);
    nlohmann::json data = {{"server", server_record(conn)}, {"live", plan.target}, {"side", plan.previous},
                           {"previous", plan.keep_as}, {"undo", true}, {"live_allowed", true}};
    Journal::Entry swap = journal.add("swap", data);
    swap_databases(conn, plan.previous, plan.target, plan.keep_as, [&](bool allowed) {
      data["live_allowed"] = allowed;
      swap.update(data);
    });
    swap.settle();
    report.previous = plan.keep_as;
    report.previous_kept = true;
    phases.end();
    journal.step("restore-undo.start-services");
    services.start_now();
    if (!controller->does_nothing()) report.services_down_seconds = services.seconds_down();
  }
  set_tables(report, count_rows(target, plan.target));
  report.total_seconds = seconds_since(t0);
  return report;
}

}  // namespace backupctl
