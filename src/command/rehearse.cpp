#include "command/rehearse.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <iostream>

#include "check/checklist.hpp"
#include "command/restore_db.hpp"
#include "command/restore_objects.hpp"
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

}  // namespace

RehearsalReport rehearse(const Config& config, const PgTarget& live, const std::string& set_id,
                         Journal& journal, Progress& progress) {
  const auto t0 = std::chrono::steady_clock::now();
  const std::string ts = name_timestamp(Clock::now());
  RehearsalReport report;
  // The staging places, and their removal whatever happens (journal entries: undone at the end,
  // on an error or a signal, or by the repair after a crash).
  PgTarget staging = config.staging_database_url.empty()
                         ? live.with_database(live.dbname() + "_rehearsal")
                         : PgTarget::from_url(config.staging_database_url, "STAGING_DATABASE_URL");
  // Before anything changes: the staging database can never be the live one, however the URL
  // spells it (localhost or 127.0.0.1, options, a pooler's port).
  refuse_live_target(live, staging, config.staging_database_url.empty() ? "the staging database" : "STAGING_DATABASE_URL");
  json set = find_set(config, set_id, set_scope(config, live));
  report.set_id = json_string(set, "set_id", set_id);
  json j = {{"set_id", report.set_id}, {"started_at", iso8601(Clock::now())}, {"steps", json::array()}};
  auto step = [&](const std::string& name, bool ok, const std::string& detail, double seconds) {
    j["steps"].push_back({{"step", name}, {"ok", ok}, {"detail", detail}, {"seconds", seconds}});
    spdlog::info("rehearse: {} {}: {}", name, ok ? "ok" : "FAILED", detail);
  };
  auto part = [&](const char* kind) -> std::string {
    auto p = set_part_path(config, set, kind);
    return p ? p->string() : "";
  };

  std::unique_ptr<ObjectStore> store;
  std::string objects_target;
  fs::path staging_dir;
  Config quiet = config;  // restores into staging never stop the live services
  quiet.service_control = ServiceControl::none;
  quiet.confirmed = true;
  quiet.restore_keep_previous_days = 0;
  j["staging_database"] = staging.dbname();
  journal.step("rehearse.staging-database");
  Journal::Entry staging_db;
  {
    PgConnection conn = PgConnection::open(maintenance_target(staging));
    staging_db = journal.add("staging_database",
                             {{"server", server_record(conn)}, {"name", staging.dbname()}, {"live", live.dbname()}});
  }
  Journal::Entry staging_objects;
  Journal::Entry staging_app;  // its undo is STAGING_APP_STOP_CMD

  bool ok = true;
  std::string reason;
  std::string db_file = part("db"), objects_file = part("objects");
  ObjectsPlan objects_plan;
  try {
    // 1. The database.
    if (db_file.empty()) throw Error(ErrorCode::not_found, "the set has no database backup");
    {
      PgConnection conn = PgConnection::open(maintenance_target(staging));
      drop_database(conn, staging.dbname());  // a leftover of an earlier rehearsal
    }
    auto t = std::chrono::steady_clock::now();
    RestoreDbOptions o;
    o.file = db_file;
    o.target_db = staging.dbname();
    o.live = live;
    journal.step("rehearse.restore-db");
    RestorePlan plan = plan_restore_db(quiet, staging, o, progress);
    RestoreReport r = run_restore_db(quiet, staging, plan, o, journal, progress);
    step("restore database", true, fmt::format("{} into {}", fs::path(db_file).filename().string(), staging.dbname()),
         seconds_since(t));

    // Rows against the backup.
    t = std::chrono::steady_clock::now();
    auto expected = dump_rows(db_file, config);
    std::vector<std::string> differ;
    json rows = json::object();
    for (const auto& [table, n] : r.tables) {
      auto it = expected.find(table);
      rows[table] = {{"restored", n}, {"backup", it == expected.end() ? json(nullptr) : json(it->second)}};
      if (it != expected.end() && it->second != n) differ.push_back(fmt::format("{} ({} vs {})", table, n, it->second));
    }
    j["rows"] = rows;
    if (expected.empty()) {
      step("row counts", true, "not compared: the backup is not a custom-format dump", seconds_since(t));
    } else {
      step("row counts", differ.empty(),
           differ.empty() ? fmt::format("{} tables equal to the backup", expected.size()) : "differ: " + differ.front(),
           seconds_since(t));
      if (!differ.empty()) throw Error(ErrorCode::check_failed, "restored row counts differ from the backup: " + differ.front());
    }

    // 2. The attachments.
    if (!objects_file.empty()) {
      t = std::chrono::steady_clock::now();
      RestoreObjectsOptions oo;
      oo.file = objects_file;
      journal.step("rehearse.restore-objects");
      if (config.object_storage == ObjectStorage::disk) {
        staging_dir = config.backup_dir / (".rehearsal-" + ts);
        staging_objects = journal.add("temp_dir", {{"path", staging_dir.string()}});
        make_dirs(staging_dir, 0700);
        store = std::make_unique<DiskStore>(staging_dir);
        oo.target = staging_dir.string();
      } else {
        store = make_object_store(config);
        objects_target = "rehearsal-" + ts;
        oo.target = config.staging_bucket + "/" + objects_target;
        staging_objects = journal.add("staging_objects", {{"endpoint", store->describe()},
                                                          {"bucket", config.staging_bucket},
                                                          {"prefix", objects_target},
                                                          {"created_bucket", !store->bucket_exists(config.staging_bucket)}});
      }
      objects_plan = plan_restore_objects(quiet, *store, oo, progress);
      ObjectsReport orp = run_restore_objects(quiet, *store, objects_plan, journal, progress);
      step("restore objects", true, fmt::format("{} objects into {}", orp.uploaded, oo.target), seconds_since(t));
    } else {
      step("restore objects", true, "the set has no attachments backup", 0);
    }

    // 3. The app on the staging copies, so the checklist's http checks ask a real api.
    if (!config.staging_app_start_cmd.empty()) {
      t = std::chrono::steady_clock::now();
      journal.step("rehearse.staging-app");
      staging_app = journal.add("staging_app", {{"stop_digest", command_digest(config.staging_app_stop_cmd)},
                                                {"stop_shown", describe_command(config.staging_app_stop_cmd)}});
      start_staging_app(config, staging, staging_dir.string(),
                        objects_target.empty() ? "" : config.staging_bucket + "/" + objects_target);
      step("staging app", true, "answering at " + config.staging_api_url, seconds_since(t));
    }

    // 4. The checklist against staging.
    std::error_code ec;
    if (fs::exists(config.checks_file, ec)) {
      t = std::chrono::steady_clock::now();
      CheckTarget target{staging, store.get(), nullptr, config.staging_api_url};
      target.place = [&](const std::string& b, const std::string& k) {
        Placement p = objects_plan.place(ManifestObject{b, k, "", 0, "", "", "", {}, ""});
        return std::make_pair(p.bucket, p.key);
      };
      journal.step("rehearse.checklist");
      auto results = run_checks(load_checklist(config.checks_file), target);
      json checks = json::array();
      for (const auto& c : results) {
        checks.push_back({{"name", c.name}, {"kind", c.kind}, {"status", c.status}, {"detail", c.detail}});
      }
      j["checks"] = checks;
      std::cerr << checks_table(results);
      bool passed = all_passed(results);
      step("checklist", passed, fmt::format("{} checks, {}", results.size(), passed ? "none failed" : "some failed"),
           seconds_since(t));
      if (!passed) throw Error(ErrorCode::check_failed, "checks failed against the staging copy");
    } else {
      step("checklist", true, "no checklist at " + config.checks_file.string(), 0);
    }
  } catch (const Error& e) {
    if (e.code() == ErrorCode::interrupted) throw;
    ok = false;
    reason = e.what();
    if (!e.hint().empty()) reason += " (" + e.hint() + ")";
    step("rehearsal", false, reason, 0);
  }

  // The staging copies go now, before the report is written (newest first, as the journal walks
  // back): a failure to remove them is part of the report.
  journal.step("rehearse.cleanup");
  for (Journal::Entry* e : {&staging_app, &staging_objects, &staging_db}) {
    try {
      e->undo();
    } catch (const std::exception& err) {
      ok = false;
      if (reason.empty()) reason = std::string("cannot remove the staging copies: ") + err.what();
      step("cleanup", false, err.what(), 0);
    }
  }
  store.reset();

  report.ok = ok;
  j["ok"] = ok;
  j["reason"] = reason;
  j["finished_at"] = iso8601(Clock::now());
  j["seconds"] = seconds_since(t0);
  j["files"] = {{"db", db_file}, {"objects", objects_file}};
  report.json = j;

  std::string md = fmt::format("# Restore rehearsal of set {}\n\n", report.set_id);
  md += fmt::format("- result: **{}**{}\n- started: {}\n- took: {}\n- staging database: {}\n\n", ok ? "PASSED" : "FAILED",
                    ok ? "" : " — " + md_escape(reason), j["started_at"].get<std::string>(),
                    human_duration(j["seconds"].get<double>()), staging.dbname());
  md += "| step | result | detail | seconds |\n|---|---|---|---|\n";
  for (const auto& s : j["steps"]) {
    md += fmt::format("| {} | {} | {} | {:.1f} |\n", s["step"].get<std::string>(), s["ok"].get<bool>() ? "ok" : "FAILED",
                      md_escape(s["detail"].get<std::string>()), s["seconds"].get<double>());
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
  report.markdown = md;
  fs::path dir = config.backup_dir / "rehearsals";
  make_dirs(dir, 0700);
  report.json_file = dir / ("rehearsal_" + ts + ".json");
  report.md_file = dir / ("rehearsal_" + ts + ".md");
  write_file_atomic(report.json_file, j.dump(2) + "\n", 0600);
  write_file_atomic(report.md_file, md, 0600);

  // The set remembers its rehearsals (`list` shows the last one).
  fs::path sets = config.backup_dir / "sets";
  for (const auto& de : fs::directory_iterator(sets)) {
    auto s = json::parse(read_file(de.path()), nullptr, false);
    if (!s.is_object() || json_string(s, "set_id") != report.set_id) continue;
    if (!s.contains("rehearsals") || !s["rehearsals"].is_array()) s["rehearsals"] = nlohmann::json::array();
    s["rehearsals"].push_back({{"at", iso8601(Clock::now())}, {"ok", ok}, {"report", report.json_file.string()}});
    write_file_atomic(de.path(), s.dump(2) + "\n", 0600);
  }
  return report;
}

}  // namespace backupctl
