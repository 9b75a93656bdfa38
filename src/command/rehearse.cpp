#include "command/rehearse.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <iostream>
#include <optional>
#include <random>
#include <thread>

#include "check/checklist.hpp"
#include "command/restore_db.hpp"
#include "command/restore_objects.hpp"
#include "command/remote_meta.hpp"
#include "command/restore_pitr.hpp"
#include "command/backup_base.hpp"
#include "command/sets.hpp"
#include "io/age.hpp"
#include "io/zstd.hpp"
#include "pg/dump_file.hpp"
#include "pg/connection.hpp"
#include "pg/dump_parser.hpp"
#include "pg/identity.hpp"
#include "pg/swap.hpp"
#include "storage/disk/disk_store.hpp"
#include "util/error.hpp"
#include "util/format.hpp"
#include "util/fs.hpp"
#include "util/json.hpp"
#include "util/process.hpp"
#include "util/signals.hpp"
#include "util/time.hpp"
#include "util/words.hpp"

namespace backupctl {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// Rows per table as the backup holds them (lines of COPY data), for custom-format dumps.
std::map<std::string, std::int64_t> dump_rows(const fs::path& file, const Config& config) {
  std::map<std::string, std::int64_t> out;
  auto format = db_format_of(file);
  if (!format || !is_custom(*format)) return out;
  DumpStream stream(file, *format, config.age_identity);
  io::NullSink null;
  DumpInflater reader(null);
  reader.run(stream.source());
  for (const auto& [id, t] : reader.tables()) out[t.schema + "." + t.table] = t.rows;
  return out;
}

std::string md_escape(std::string s) {
  for (auto& c : s) {
    if (c == '|' || c == '\n') c = ' ';
  }
  return s;
}


// STAGING_APP_START_CMD, run with the staging copies in its environment: the staging database as
// PG* (DATABASE_URL unset, so it cannot point the app elsewhere) and the staging objects as
// OBJECT_STORAGE_DIR (a folder) or OBJECT_TARGET=bucket/prefix (S3), the form of `restore objects
// --target`; STAGING_API_URL says where the app must answer.
void start_staging_app(const Config& config, const PgTarget& staging, const std::string& objects_dir,
                       const std::string& objects_target) {
  SpawnOptions spawn{.argv = config.staging_app_start_cmd, .env = staging.child_env()};
  spawn.env.emplace_back("DATABASE_URL", std::nullopt);
  spawn.env.emplace_back("BACKUPCTL_STAGING", "1");
  spawn.env.emplace_back("STAGING_API_URL", config.staging_api_url);
  if (!objects_dir.empty()) {
    spawn.env.emplace_back("OBJECT_STORAGE", "disk");
    spawn.env.emplace_back("OBJECT_STORAGE_DIR", objects_dir);
  }
  if (!objects_target.empty()) spawn.env.emplace_back("OBJECT_TARGET", objects_target);
  spdlog::info("rehearse: starting the staging app: {}", describe_command(spawn.argv));
  RunResult r = run_command(std::move(spawn));
  if (!r.status.ok()) {
    throw Error(ErrorCode::check_failed,
                "the staging app did not start: " + describe_command(config.staging_app_start_cmd) + " " + r.status.describe() +
                    ": " + redact_arguments(first_line(last_lines(r.err.empty() ? r.out : r.err, 1)), config.staging_app_start_cmd),
                "run STAGING_APP_START_CMD by hand with the staging settings to see why");
  }
  // A start command may return before the app listens (`compose up -d`).
  std::string error = wait_until_http_answers(config.staging_api_url, 60);
  if (!error.empty()) {
    throw Error(ErrorCode::check_failed, "the staging app does not answer at " + config.staging_api_url + ": " + error,
                "STAGING_API_URL must be where STAGING_APP_START_CMD's app listens");
  }
}

// A moment inside the window of point-in-time recovery, chosen at random: from the oldest base
// backup's end of the live server's cluster to a few seconds ago. First an empty transaction on
// the live server, received by the WAL receiver: replay stops at the first commit after the
// moment, so there must be one after every moment chosen.
std::string random_moment(const Config& config, const PgTarget& live) {
  const std::vector<BaseBackup> bases = list_base_backups(config);
  const RecoveryTarget latest{RecoveryTarget::Kind::latest, ""};
  const BaseBackup& oldest_kind = pick_base_backup(bases, live_system_identifier(live), latest);
  Clock::time_point from = oldest_kind.finished;
  for (const auto& b : bases) {
    if (b.sysid == oldest_kind.sysid && b.finished < from) from = b.finished;
  }
  PgConnection conn = PgConnection::open(live);
  conn.query("SELECT txid_current()");
  const std::string lsn = conn.scalar("SELECT pg_current_wal_lsn()::text");
  // The receiver reports each group fsync (50 ms apart at most): the slot follows within a second.
  bool received = false;
  for (int i = 0; i < 100 && !received; ++i) {
    received = conn.scalar("SELECT coalesce(bool_or(restart_lsn >= $1::pg_lsn), false) FROM pg_replication_slots WHERE slot_name = $2",
                           {lsn, config.wal_slot}) == "t";
    if (!received) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  if (!received) {
    throw Error(ErrorCode::not_found, "the WAL receiver has not received the WAL written now",
                "start it (`make wal-stream`), or rehearse a moment you name (--to-time 2026-12-06T14:01:59Z)");
  }
  const auto server_now = parse_precise_time(
      conn.scalar("SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"));
  const Clock::time_point to = (server_now ? *server_now : Clock::now()) - std::chrono::seconds(2);
  if (to <= from) return "latest";
  std::random_device rd;
  std::uniform_real_distribution<double> pick(0.0, 1.0);
  const auto span = std::chrono::duration_cast<std::chrono::microseconds>(to - from);
  const Clock::time_point t = from + std::chrono::duration_cast<Clock::duration>(
                                         std::chrono::microseconds(static_cast<std::int64_t>(pick(rd) * static_cast<double>(span.count()))));
  const auto whole = std::chrono::time_point_cast<std::chrono::seconds>(t);
  return fmt::format("{}.{:06}Z", iso8601(whole).substr(0, 19),
                     std::chrono::duration_cast<std::chrono::microseconds>(t - whole).count());
}

// The newest complete set of this database and store made at or before `moment` (the attachments
// a moment's rehearsal restores, until they are captured in step with the WAL); none: nullopt.
std::optional<json> set_at_or_before(const Config& config, const std::string& moment) {
  const auto t = moment == "latest" ? std::optional<Clock::time_point>(Clock::now()) : parse_precise_time(moment);
  if (!t) return std::nullopt;
  std::optional<json> best;
  std::error_code ec;
  for (const auto& de : fs::directory_iterator(config.backup_dir / "sets", ec)) {
    if (!is_set_name(de.path().filename().string())) continue;
    auto s = json::parse(read_file(de.path()), nullptr, false);
    if (!s.is_object() || !json_bool(s, "complete", false)) continue;
    auto created = parse_iso8601(json_string(s, "created_at", ""));
    if (!created || *created > *t || !set_part_path(config, s, "objects")) continue;
    if (!best || json_string(s, "created_at", "") > json_string(*best, "created_at", "")) best = s;
  }
  return best;
}

// One rehearsal: its methods are the journal's steps (rehearse.staging-database, .restore-db,
// .restore-objects, .staging-app, .checklist, .cleanup), then the report.
class Rehearsal {
 public:
  Rehearsal(const Config& config, const PgTarget& live, Journal& journal, Progress& progress)
      : m_config(config), m_live(live), m_journal(journal), m_progress(progress), m_quiet(config),
        m_ts(name_timestamp(Clock::now())),
        // The staging places, and their removal whatever happens (journal entries: undone at the
        // end, on an error or a signal, or by the repair after a crash).
        m_staging(config.staging_database_url.empty()
                      ? live.with_database(live.dbname() + "_rehearsal")
                      : PgTarget::from_url(config.staging_database_url, "STAGING_DATABASE_URL")) {
    // Restores into staging never stop the live services.
    m_quiet.service_control = ServiceControl::none;
    m_quiet.confirmed = true;
    m_quiet.restore_keep_previous_days = 0;
  }

  RehearsalReport run(const std::string& set_id, const std::string& to_time) {
    const auto t0 = std::chrono::steady_clock::now();
    // Before anything changes: the staging database can never be the live one, however the URL
    // spells it (localhost or 127.0.0.1, options, a pooler's port).
    refuse_live_target(m_live, m_staging,
                       m_config.staging_database_url.empty() ? "the staging database" : "STAGING_DATABASE_URL");
    std::optional<json> set;
    if (to_time.empty()) {
      set = find_set(m_config, set_id, set_scope(m_config, m_live));
    } else {
      // A moment: the database recovered to it, the attachments of the newest set made by then.
      m_to_time = to_time == "random" ? random_moment(m_config, m_live) : to_time;
      m_pitr_plan = plan_pitr(m_quiet, m_live, pitr_options());
      set = set_at_or_before(m_config, m_to_time);
    }
    m_report.set_id = set ? json_string(*set, "set_id", set_id) : "";
    m_j = {{"set_id", m_report.set_id}, {"started_at", iso8601(Clock::now())}, {"steps", json::array()}};
    if (!m_to_time.empty()) m_j["to_time"] = m_to_time;
    auto part = [&](const char* kind) -> std::string {
      auto p = set ? set_part_path(m_config, *set, kind) : std::nullopt;
      return p ? p->string() : "";
    };
    m_db_file = m_to_time.empty() ? part("db") : "";
    m_objects_file = part("objects");
    staging_database();
    try {
      if (m_to_time.empty()) {
        restore_db();
      } else {
        recover_db();
      }
      restore_objects();
      staging_app();
      checklist();
    } catch (const Error& e) {
      if (e.code() == ErrorCode::interrupted) throw;
      fail(e.what() + (e.hint().empty() ? "" : " (" + e.hint() + ")"));
      step("rehearsal", false, m_reason, 0);
    }
    cleanup();
    m_j["seconds"] = seconds_since(t0);
    write_report();
    remember_in_set();
    return m_report;
  }

 private:
  void step(const std::string& name, bool ok, const std::string& detail, double seconds) {
    m_j["steps"].push_back({{"step", name}, {"ok", ok}, {"detail", detail}, {"seconds", seconds}});
    spdlog::info("rehearse: {} {}: {}", name, ok ? "ok" : "FAILED", detail);
  }
  void fail(const std::string& reason) {
    m_ok = false;
    if (m_reason.empty()) m_reason = reason;
  }

  void staging_database() {
    m_j["staging_database"] = m_staging.dbname();
    m_journal.step("rehearse.staging-database");
    PgConnection conn = PgConnection::open(maintenance_target(m_staging));
    m_staging_db = m_journal.add("staging_database", {{"server", server_record(conn)},
                                                      {"name", m_staging.dbname()},
                                                      {"live", m_live.dbname()}});
  }

  PitrOptions pitr_options() const {
    PitrOptions p;
    p.to_time = m_to_time;
    p.restore.target_db = m_staging.dbname();
    p.restore.live = m_live;
    p.check_base_in_plan = false;  // checked as it unpacks, in the step that recovers
    return p;
  }

  // 1 (--to-time). The database as it was at the moment, recovered from the base backup and the
  // WAL into the staging database; the report names the last commit replayed and the first not.
  void recover_db() {
    {
      PgConnection conn = PgConnection::open(maintenance_target(m_staging));
      drop_database(conn, m_staging.dbname());  // a leftover of an earlier rehearsal
    }
    auto t = std::chrono::steady_clock::now();
    m_journal.step("rehearse.restore-db");
    RestoreReport r = run_pitr(m_quiet, m_staging, *m_pitr_plan, pitr_options(), m_journal, m_progress);
    m_j["recovered_to"] = r.recovered_to;
    m_j["base"] = m_pitr_plan->base.filename().string();
    step("recover database", true,
         fmt::format("{} + {} WAL segment(s) to {} into {}", m_pitr_plan->base.filename().string(), m_pitr_plan->segments.size(),
                     r.recovered_to, m_staging.dbname()),
         seconds_since(t));
    json rows = json::object();
    for (const auto& [table, n] : r.tables) rows[table] = {{"restored", n}, {"backup", nullptr}};
    m_j["rows"] = rows;
  }

  // 1. The database, and its rows against the backup.
  void restore_db() {
    if (m_db_file.empty()) throw Error(ErrorCode::not_found, "the set has no database backup");
    {
      PgConnection conn = PgConnection::open(maintenance_target(m_staging));
      drop_database(conn, m_staging.dbname());  // a leftover of an earlier rehearsal
    }
    auto t = std::chrono::steady_clock::now();
    RestoreDbOptions o;
    o.file = m_db_file;
    o.target_db = m_staging.dbname();
    o.live = m_live;
    m_journal.step("rehearse.restore-db");
    RestorePlan plan = plan_restore_db(m_quiet, m_staging, o, m_progress);
    RestoreReport r = run_restore_db(m_quiet, m_staging, plan, o, m_journal, m_progress);
    step("restore database", true,
         fmt::format("{} into {}", fs::path(m_db_file).filename().string(), m_staging.dbname()), seconds_since(t));
    compare_rows(r.tables);
  }

  void compare_rows(const std::vector<std::pair<std::string, std::int64_t>>& restored) {
    auto t = std::chrono::steady_clock::now();
    auto expected = dump_rows(m_db_file, m_config);
    std::vector<std::string> differ;
    json rows = json::object();
    for (const auto& [table, n] : restored) {
      auto it = expected.find(table);
      rows[table] = {{"restored", n}, {"backup", it == expected.end() ? json(nullptr) : json(it->second)}};
      if (it != expected.end() && it->second != n) differ.push_back(fmt::format("{} ({} vs {})", table, n, it->second));
    }
    m_j["rows"] = rows;
    if (expected.empty()) {
      step("row counts", true, "not compared: the backup is not a custom-format dump", seconds_since(t));
      return;
    }
    step("row counts", differ.empty(),
         differ.empty() ? fmt::format("{} tables equal to the backup", expected.size()) : "differ: " + differ.front(),
         seconds_since(t));
    if (!differ.empty()) throw Error(ErrorCode::check_failed, "restored row counts differ from the backup: " + differ.front());
  }

  // 2. The attachments, into a folder of BACKUP_DIR or a prefix of the staging bucket.
  void restore_objects() {
    if (m_objects_file.empty()) {
      step("restore objects", true, "the set has no attachments backup", 0);
      return;
    }
    auto t = std::chrono::steady_clock::now();
    RestoreObjectsOptions oo;
    oo.file = m_objects_file;
    m_journal.step("rehearse.restore-objects");
    if (m_config.object_storage == ObjectStorage::disk) {
      m_staging_dir = m_config.backup_dir / (".rehearsal-" + m_ts);
      m_staging_objects = m_journal.add("temp_dir", {{"path", m_staging_dir.string()}});
      make_dirs(m_staging_dir, 0700);
      m_store = std::make_unique<DiskStore>(m_staging_dir);
      oo.target = m_staging_dir.string();
    } else {
      m_store = make_object_store(m_config);
      m_objects_target = "rehearsal-" + m_ts;
      oo.target = m_config.staging_bucket + "/" + m_objects_target;
      m_staging_objects = m_journal.add("staging_objects",
                                        {{"endpoint", m_store->describe()},
                                         {"bucket", m_config.staging_bucket},
                                         {"prefix", m_objects_target},
                                         {"created_bucket", !m_store->bucket_exists(m_config.staging_bucket)}});
    }
    m_objects_plan = plan_restore_objects(m_quiet, *m_store, oo, m_progress);
    ObjectsReport orp = run_restore_objects(m_quiet, *m_store, m_objects_plan, m_journal, m_progress);
    step("restore objects", true, fmt::format("{} objects into {}", orp.uploaded, oo.target), seconds_since(t));
  }

  // 3. The app on the staging copies, so the checklist's http checks ask a real api.
  void staging_app() {
    if (m_config.staging_app_start_cmd.empty()) return;
    auto t = std::chrono::steady_clock::now();
    m_journal.step("rehearse.staging-app");
    m_staging_app = m_journal.add("staging_app", {{"stop_digest", command_digest(m_config.staging_app_stop_cmd)},
                                                  {"stop_shown", describe_command(m_config.staging_app_stop_cmd)}});
    start_staging_app(m_config, m_staging, m_staging_dir.string(),
                      m_objects_target.empty() ? "" : m_config.staging_bucket + "/" + m_objects_target);
    step("staging app", true, "answering at " + m_config.staging_api_url, seconds_since(t));
  }

  // 4. The checklist against staging.
  void checklist() {
    std::error_code ec;
    if (!fs::exists(m_config.checks_file, ec)) {
      step("checklist", true, "no checklist at " + m_config.checks_file.string(), 0);
      return;
    }
    auto t = std::chrono::steady_clock::now();
    CheckTarget target{m_staging, m_store.get(), nullptr, m_config.staging_api_url};
    target.place = [&](const std::string& b, const std::string& k) {
      Placement p = m_objects_plan.place(ManifestObject{b, k, "", 0, "", "", "", {}, ""});
      return std::make_pair(p.bucket, p.key);
    };
    m_journal.step("rehearse.checklist");
    auto results = run_checks(load_checklist(m_config.checks_file), target);
    json checks = json::array();
    for (const auto& c : results) {
      checks.push_back({{"name", c.name}, {"kind", c.kind}, {"status", c.status}, {"detail", c.detail}});
    }
    m_j["checks"] = checks;
    std::cerr << checks_table(results);
    bool passed = all_passed(results);
    step("checklist", passed, fmt::format("{} checks, {}", results.size(), passed ? "none failed" : "some failed"),
         seconds_since(t));
    if (!passed) throw Error(ErrorCode::check_failed, "checks failed against the staging copy");
  }

  // The staging copies go now, before the report is written (newest first, as the journal walks
  // back): a failure to remove them is part of the report.
  void cleanup() {
    m_journal.step("rehearse.cleanup");
    for (Journal::Entry* e : {&m_staging_app, &m_staging_objects, &m_staging_db}) {
      try {
        e->undo();
      } catch (const std::exception& err) {
        fail(std::string("cannot remove the staging copies: ") + err.what());
        step("cleanup", false, err.what(), 0);
      }
    }
    m_store.reset();
  }

  void write_report() {
    m_report.ok = m_ok;
    m_j["ok"] = m_ok;
    m_j["reason"] = m_reason;
    m_j["finished_at"] = iso8601(Clock::now());
    m_j["files"] = {{"db", m_db_file}, {"objects", m_objects_file}};
    m_report.json = m_j;
    m_report.markdown = markdown();
    fs::path dir = m_config.backup_dir / "rehearsals";
    make_dirs(dir, 0700);
    m_report.json_file = dir / ("rehearsal_" + m_ts + ".json");
    m_report.md_file = dir / ("rehearsal_" + m_ts + ".md");
    write_file_atomic(m_report.json_file, m_j.dump(2) + "\n", 0600);
    write_file_atomic(m_report.md_file, m_report.markdown, 0600);
  }

  std::string markdown() const {
    const json& j = m_j;
    std::string md = m_to_time.empty() ? fmt::format("# Restore rehearsal of set {}\n\n", m_report.set_id)
                                       : fmt::format("# Restore rehearsal of the moment {}\n\n", m_to_time);
    md += fmt::format("- result: **{}**{}\n- started: {}\n- took: {}\n- staging database: {}\n",
                      m_ok ? "PASSED" : "FAILED", m_ok ? "" : " — " + md_escape(m_reason),
                      j["started_at"].get<std::string>(), human_duration(j["seconds"].get<double>()),
                      m_staging.dbname());
    if (j.contains("to_time")) {
      md += fmt::format("- moment: {} (from {}; {})\n", j["to_time"].get<std::string>(), j.value("base", "?"),
                        md_escape(j.value("recovered_to", "not recovered")));
    }
    md += "\n";
    md += "| step | result | detail | seconds |\n|---|---|---|---|\n";
    for (const auto& s : j["steps"]) {
      md += fmt::format("| {} | {} | {} | {:.1f} |\n", s["step"].get<std::string>(),
                        s["ok"].get<bool>() ? "ok" : "FAILED", md_escape(s["detail"].get<std::string>()),
                        s["seconds"].get<double>());
    }
    if (j.contains("checks")) {
      md += "\n| check | kind | result | detail |\n|---|---|---|---|\n";
      for (const auto& c : j["checks"]) {
        md += fmt::format("| {} | {} | {} | {} |\n", md_escape(c["name"]), c["kind"].get<std::string>(),
                          c["status"].get<std::string>(), md_escape(c["detail"]));
      }
    }
    if (j.contains("rows")) {
      md += "\n| table | rows restored | rows in the backup |\n|---|---|---|\n";
      for (const auto& [table, v] : j["rows"].items()) {
        md += fmt::format("| {} | {} | {} |\n", table, v["restored"].dump(), v["backup"].dump());
      }
    }
    return md;
  }

  // The set remembers its rehearsals (`list` shows the last one).
  void remember_in_set() {
    if (m_report.set_id.empty()) return;  // a moment's rehearsal without a set
    fs::path sets = m_config.backup_dir / "sets";
    for (const auto& de : fs::directory_iterator(sets)) {
      auto s = json::parse(read_file(de.path()), nullptr, false);
      if (!s.is_object() || json_string(s, "set_id") != m_report.set_id) continue;
      if (!s.contains("rehearsals") || !s["rehearsals"].is_array()) s["rehearsals"] = nlohmann::json::array();
      s["rehearsals"].push_back(
          {{"at", iso8601(Clock::now())}, {"ok", m_ok}, {"report", m_report.json_file.string()}});
      write_file_atomic(de.path(), s.dump(2) + "\n", 0600);
    }
  }

  std::string m_to_time;                 // --to-time: the moment rehearsed
  std::optional<PitrPlan> m_pitr_plan;
  const Config& m_config;
  const PgTarget& m_live;
  Journal& m_journal;
  Progress& m_progress;
  Config m_quiet;
  const std::string m_ts;
  const PgTarget m_staging;
  RehearsalReport m_report;
  json m_j;
  std::string m_db_file, m_objects_file;
  bool m_ok = true;
  std::string m_reason;
  std::unique_ptr<ObjectStore> m_store;
  std::string m_objects_target;
  fs::path m_staging_dir;
  ObjectsPlan m_objects_plan;
  Journal::Entry m_staging_db, m_staging_objects;
  Journal::Entry m_staging_app;  // its undo is STAGING_APP_STOP_CMD
};

}  // namespace

RehearsalReport rehearse(const Config& config, const PgTarget& live, const std::string& set_id,
                         Journal& journal, Progress& progress, const std::string& to_time) {
  return Rehearsal(config, live, journal, progress).run(set_id, to_time);
}

}  // namespace backupctl
