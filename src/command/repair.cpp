#include "command/repair.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <cstdlib>
#include <optional>

#include "catalog/catalog.hpp"
#include "catalog/lock.hpp"
#include "catalog/meta.hpp"
#include "catalog/naming.hpp"
#include "command/restore_config.hpp"
#include "command/restore_db.hpp"
#include "command/restore_pitr.hpp"
#include "pg/recovery_cluster.hpp"
#include "pg/connection.hpp"
#include "pg/identity.hpp"
#include "pg/swap.hpp"
#include "service/service.hpp"
#include "storage/object_store.hpp"
#include "storage/s3/s3_store.hpp"
#include "util/error.hpp"
#include "util/fs.hpp"
#include "util/json.hpp"
#include "util/process.hpp"
#include "util/time.hpp"
#include "util/words.hpp"

namespace backupctl {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {


Error forged(const std::string& what) {
  return Error(ErrorCode::verification, "the journal names " + what + ": not acted on",
               "a journal is written by backupctl only; look at the file, then `backupctl repair --discard`");
}

// The password (DATABASE_URL's) and other settings of this run's environment, for reaching the
// server a journal recorded.
PgTarget current_target() {
  try {
    return PgTarget::from_environment();
  } catch (const Error&) {
    return PgTarget::from_url("postgresql://");
  }
}

// "<live><infix><YYYYMMDD_HHMMSS>": the names restores give their helper databases.
bool helper_name(const std::string& name, const std::string& live, std::string_view infix) {
  std::string prefix = live + std::string(infix);
  return !live.empty() && name.size() > prefix.size() && name.starts_with(prefix) &&
         parse_name_timestamp(name.substr(prefix.size())).has_value();
}


PgConnection server_of(const json& d) {
  if (!d.contains("server") || !d["server"].is_object()) throw forged("no server");
  return open_recorded_server(d["server"], current_target());
}

// The argv a journal entry recorded under `key` (strings only; empty when there is none).
std::vector<std::string> recorded_argv(const json& d, const char* key) {
  std::vector<std::string> out;
  if (d.contains(key) && d[key].is_array()) {
    for (const auto& a : d[key]) {
      if (a.is_string()) out.push_back(a.get<std::string>());
    }
  }
  return out;
}

// Whether the command a journal entry recorded under `key` (its digest under `key`_digest, or,
// from older versions, its words) is `have`.
bool recorded_command_is(const json& d, const std::string& key, const std::vector<std::string>& have) {
  if (std::string digest = json_string(d, key + "_digest"); !digest.empty()) return digest == command_digest(have);
  std::vector<std::string> words = recorded_argv(d, key.c_str());
  return !words.empty() && words == have;
}
// Whether it recorded one at all.
bool recorded_command(const json& d, const std::string& key) {
  return !json_string(d, key + "_digest").empty() || !recorded_argv(d, key.c_str()).empty();
}

std::string repair_services(const Config& config, const json& d) {
  if (!recorded_command(d, "start")) return "";
  auto controller = make_service_controller(config);
  if (controller->start_argv().empty() || !recorded_command_is(d, "start", controller->start_argv())) {
    throw Error(ErrorCode::repair_needed,
                "the services the run stopped are not started again: its start command (" +
                    json_string(d, "start_shown", describe_command(recorded_argv(d, "start"))) +
                    ") is not this configuration's (" + controller->describe_start() + ")",
                "start them by hand with that run's start command, or run `backupctl repair` with that run's "
                "settings (its --env-file / infra/env)");
  }
  controller->start();
  return "started the services it had stopped (" + controller->describe_start() + ")";
}

// A rehearsal's staging app: stopped with STAGING_APP_STOP_CMD, when the entry's is this
// configuration's (a journal in BACKUP_DIR never chooses what we run).
std::string repair_staging_app(const Config& config, const json& d) {
  if (!recorded_command(d, "stop")) return "";
  const std::vector<std::string>& have = config.staging_app_stop_cmd;
  if (have.empty() || !recorded_command_is(d, "stop", have)) {
    throw Error(ErrorCode::repair_needed,
                "the rehearsal's staging app is not stopped: its stop command (" +
                    json_string(d, "stop_shown", describe_command(recorded_argv(d, "stop"))) +
                    ") is not this configuration's (" + describe_command(have) + ")",
                "stop it by hand, or run `backupctl repair` with that run's settings");
  }
  RunResult r = run_command({.argv = have});
  if (!r.status.ok()) {
    throw Error(ErrorCode::tool_failed,
                "cannot stop the staging app: " + describe_command(have) + " " + r.status.describe() + ": " +
                    redact_arguments(first_line(last_lines(r.err.empty() ? r.out : r.err, 1)), have),
                "stop it by hand, then run `backupctl repair`");
  }
  return "stopped the rehearsal's staging app (" + describe_command(have) + ")";
}

std::string repair_side_database(const json& d) {
  std::string live = json_string(d, "live"), name = json_string(d, "name");
  if (!helper_name(name, live, "__restore_")) throw forged("\"" + name + "\" as the side database of \"" + live + "\"");
  PgConnection conn = server_of(d);
  if (!database_exists(conn, name)) return "";
  drop_database(conn, name);
  return "dropped the side database " + name + " (its sessions ended first)";
}

std::string repair_swap(const json& d) {
  std::string live = json_string(d, "live"), side = json_string(d, "side"), previous = json_string(d, "previous");
  bool undo = json_bool(d, "undo", false);
  if (!helper_name(side, live, undo ? "__pre_restore_" : "__restore_") || !helper_name(previous, live, "__pre_restore_")) {
    throw forged("a swap of \"" + side + "\" into \"" + live + "\"");
  }
  PgConnection conn = server_of(d);
  return settle_swap(conn, live, side, previous, json_bool(d, "live_allowed", true));
}

// Backup files in BACKUP_DIR named by a journal: `<kind>/<a backup's name>` (or its meta, or its
// roles file), never anything else.
std::optional<fs::path> backup_path(const Config& config, const std::string& rel) {
  fs::path p(rel);
  if (p.is_absolute() || std::distance(p.begin(), p.end()) != 2) return std::nullopt;
  std::string kind = p.begin()->string();
  std::string name = p.filename().string();
  if (kind != "db" && kind != "objects" && kind != "config") return std::nullopt;
  std::string base = name.ends_with(".meta") ? name.substr(0, name.size() - 5) : name;
  bool roles = kind == "db" && (base.ends_with(".roles.sql") || base.ends_with(".roles.sql.age"));
  if (!roles && !parse_backup_filename(base)) return std::nullopt;
  return config.backup_dir / kind / name;
}

std::string repair_in_place(const Config& config, const json& d) {
  std::string live = json_string(d, "live");
  if (live.empty()) throw forged("an in-place restore without a database");
  PgConnection conn = server_of(d);
  if (!json_bool(d, "existed", true)) {
    // There was no database before: leave none rather than a half-restored one, but only the one
    // this run created (its oid is in the journal).
    auto oid = conn.query("SELECT oid::text FROM pg_database WHERE datname = $1", {live});
    if (oid.empty()) return "";
    if (json_string(d, "created_oid").empty() || *oid[0][0] != json_string(d, "created_oid")) {
      throw forged("database \"" + live + "\" as one an in-place restore created");
    }
    drop_database(conn, live);
    return "dropped " + live + ", which the interrupted in-place restore had created half-way (there was none before)";
  }
  auto dump = backup_path(config, json_string(d, "safety_dump"));
  if (!dump || !fs::is_regular_file(*dump)) throw forged("\"" + json_string(d, "safety_dump") + "\" as the safety dump");
  Meta meta = read_meta(dump->string() + ".meta");
  if (json_string(meta.source, "database") != live) {
    throw forged("a safety dump of \"" + json_string(meta.source, "database") + "\" for \"" + live + "\"");
  }
  const auto& server = json_object(d, "server");
  PgTarget target = current_target()
                        .with_server(json_string(server, "host"), json_string(server, "port"), json_string(server, "user"))
                        .with_database(live);
  put_back_safety_dump(config, target, live, *dump);
  return "put the safety dump " + dump->string() + " back into " + live;
}

// backupctl's own temporary folders: under the temporary directory with our prefix, or the
// staging folders of rehearsals and the scratch folders of verify --remote --read-data in
// BACKUP_DIR.
bool own_temp_dir(const Config& config, const fs::path& p) {
  if (!p.is_absolute() || p.lexically_normal() != p) return false;
  const char* tmp = std::getenv("TMPDIR");
  fs::path root = tmp && *tmp ? fs::path(tmp) : fs::path("/tmp");
  std::string name = p.filename().string();
  if (p.parent_path() == root.lexically_normal() && name.starts_with("backupctl")) return true;
  return p.parent_path() == config.backup_dir && (name.starts_with(".rehearsal-") || name.starts_with(".remote-verify."));
}

// Whether the folder a journal entry names is still there; a path that is not one of ours, or
// not a folder, is a forged entry.
bool journaled_folder_exists(const fs::path& p, bool ours, const std::string& as) {
  if (!ours) throw forged("\"" + p.string() + "\" as " + as);
  struct stat st{};
  if (::lstat(p.c_str(), &st) != 0) return false;
  if (!S_ISDIR(st.st_mode)) throw forged("\"" + p.string() + "\", not a folder, as " + as);
  return true;
}

std::string repair_temp_dir(const Config& config, const json& d) {
  fs::path p = json_string(d, "path");
  if (!journaled_folder_exists(p, own_temp_dir(config, p), "a temporary folder")) return "";
  std::error_code ec;
  fs::remove_all(p, ec);
  if (ec) throw Error(ErrorCode::io, "cannot remove " + p.string() + ": " + ec.message());
  return "removed " + p.string();
}

// A point-in-time restore's temporary cluster: its server stopped, its folder removed.
std::string repair_recovery_cluster(const Config& config, const json& d) {
  fs::path p = json_string(d, "path");
  if (!journaled_folder_exists(p, own_recovery_folder(config, p), "a recovery folder")) return "";
  std::string did;
  if (d.contains("service_root")) {  // the server ran in the compose service's container
    const std::string inside = json_string(d, "service_root"), bindir = json_string(d, "bindir");
    if (!is_service_recovery_root(inside) || !service_server_bindir(bindir)) {
      throw forged("a folder (" + inside + ") or programs (" + bindir + ") in the compose service as a recovery's");
    }
    did = remove_service_recovery(recovery_service_exec(config), inside, bindir) + "; ";
  }
  return did + remove_recovery_cluster(p);
}

std::string repair_staging_database(const json& d) {
  std::string name = json_string(d, "name"), live = json_string(d, "live");
  if (name.empty() || name == live || name == current_target().dbname()) {
    throw forged("the live database \"" + name + "\" as a staging database");
  }
  PgConnection conn = server_of(d);
  std::vector<std::string> dropped;
  for (const auto& row : conn.query("SELECT datname FROM pg_database WHERE datname = $1 OR left(datname, length($1) + 2) = $1 || '__'",
                                    {name})) {
    std::string db = *row[0];
    if (db != name && !helper_name(db, name, "__restore_") && !helper_name(db, name, "__pre_restore_")) continue;
    drop_database(conn, db);
    dropped.push_back(db);
  }
  return dropped.empty() ? "" : "dropped the staging database(s) " + join_words(dropped);
}

std::unique_ptr<ObjectStore> store_of(const Config& config, const json& d) {
  auto store = make_object_store(config);
  if (store->describe() != json_string(d, "endpoint")) {
    throw Error(ErrorCode::repair_needed,
                "the interrupted run used the object store " + json_string(d, "endpoint") + ", this configuration " +
                    store->describe(),
                "run `backupctl repair` with that run's settings (MINIO_ENDPOINT and keys)");
  }
  return store;
}

std::string repair_staging_objects(const Config& config, const json& d) {
  std::string bucket = json_string(d, "bucket"), prefix = json_string(d, "prefix");
  if (bucket.empty() || !prefix.starts_with("rehearsal-") || prefix.find('/') != std::string::npos) {
    throw forged("\"" + bucket + "/" + prefix + "\" as a rehearsal's staging prefix");
  }
  auto store = store_of(config, d);
  if (!store->bucket_exists(bucket)) return "";
  std::vector<std::string> keys;
  store->list_objects(bucket, prefix + "/", [&](const ObjectEntry& e) { keys.push_back(e.key); });
  store->delete_objects(bucket, keys);
  std::string line = fmt::format("deleted the {} staging object(s) under {}/{}/", keys.size(), bucket, prefix);
  if (json_bool(d, "created_bucket", false)) {
    bool empty = true;
    store->list_objects(bucket, "", [&](const ObjectEntry&) { empty = false; });
    if (empty) {
      store->delete_bucket(bucket);
      line += " and the bucket";
    }
  }
  return line;
}

std::string repair_multipart(const Config& config, const json& d) {
  auto store = store_of(config, d);
  const std::string bucket = json_string(d, "bucket"), key = json_string(d, "key");
  if (std::string id = json_string(d, "upload_id"); !id.empty()) {
    store->abort_multipart(bucket, key, id);
    return "aborted the unfinished upload of " + bucket + "/" + key;
  }
  // Killed while it started: the uploads of that key begun since the entry are the run's.
  auto* s3 = dynamic_cast<S3Store*>(store.get());
  const auto since = parse_iso8601(json_string(d, "since"));
  if (!s3 || !since) return "";
  int aborted = 0;
  for (const auto& u : s3->open_uploads(bucket, key)) {
    auto started = parse_iso8601(u.initiated);
    if (u.key != key || !started || *started < *since) continue;
    s3->abort_multipart(bucket, key, u.id);
    ++aborted;
  }
  return aborted == 0 ? "" : fmt::format("aborted the unfinished upload of {}/{} ({} begun by the run)", bucket, key, aborted);
}

std::string repair_objects_restore(const Config& config, const json& d) {
  std::string swept;
  fs::path root = json_string(d, "folder");
  std::error_code ec;
  std::size_t removed = 0;
  if (!root.empty() && root.is_absolute() && fs::is_directory(root, ec)) {
    // The disk store writes each object as .backupctl-tmp-* beside it, then renames it.
    std::vector<fs::path> tmp;
    for (auto it = fs::recursive_directory_iterator(root, ec); !ec && it != fs::recursive_directory_iterator();
         it.increment(ec)) {
      if (it->is_symlink(ec)) {
        it.disable_recursion_pending();
        continue;
      }
      if (it->is_regular_file(ec) && it->path().filename().string().starts_with(".backupctl-tmp-")) {
        tmp.push_back(it->path());
      }
    }
    for (const auto& p : tmp) removed += fs::remove(p, ec) ? 1 : 0;
  }
  (void)config;
  return fmt::format("the restore of objects from {} into {} was interrupted{}: the objects it put are there, "
                     "each whole; run it again to complete it",
                     json_string(d, "file"), json_string(d, "target"),
                     removed ? fmt::format(" (removed {} unfinished file(s))", removed) : "");
}

std::string repair_prune(const Config& config, const json& d) {
  std::vector<std::string> removed;
  if (!d.contains("files") || !d["files"].is_array()) return "";
  for (const auto& f : d["files"]) {
    auto p = f.is_string() ? backup_path(config, f.get<std::string>()) : std::nullopt;
    if (!p) throw forged(f.dump() + " as a backup file to delete");
    struct stat st{};
    if (::lstat(p->c_str(), &st) != 0) continue;
    if (!S_ISREG(st.st_mode)) throw forged(p->string() + ", not a file, as a backup file to delete");
    if (::unlink(p->c_str()) == 0) removed.push_back(f.get<std::string>());
  }
  return removed.empty() ? "" : "finished the interrupted prune: deleted " + join_words(removed);
}

std::string repair_backup(const Config& config) {
  std::vector<std::string> removed;
  for (const auto& [p, why] : interrupted_leftovers(config.backup_dir)) {
    std::error_code ec;
    if (fs::remove(p, ec)) removed.push_back(fs::relative(p, config.backup_dir, ec).string());
  }
  return removed.empty() ? "" : "removed what the interrupted run had not finished: " + join_words(removed);
}

}  // namespace

std::string repair_entry(const Config& config, const std::string& type, const json& data) {
  if (type == "services") return repair_services(config, data);
  if (type == "side_database") return repair_side_database(data);
  if (type == "swap") return repair_swap(data);
  if (type == "in_place") return repair_in_place(config, data);
  if (type == "temp_dir") return repair_temp_dir(config, data);
  if (type == "recovery_cluster") return repair_recovery_cluster(config, data);
  if (type == "staging_database") return repair_staging_database(data);
  if (type == "staging_app") return repair_staging_app(config, data);
  if (type == "staging_objects") return repair_staging_objects(config, data);
  if (type == "multipart") return repair_multipart(config, data);
  if (type == "objects_restore") return repair_objects_restore(config, data);
  if (type == "config_apply") return rollback_config_apply(config, data);
  if (type == "prune") return repair_prune(config, data);
  if (type == "backup") return repair_backup(config);
  throw Error(ErrorCode::repair_needed, "the journal has an entry of an unknown kind \"" + type + "\"",
              "it was written by a newer backupctl: run the repair with that version");
}

Journal::Undo journal_undo(const Config& config) {
  return [&config](const std::string& type, const json& data) {
    std::string line = repair_entry(config, type, data);
    if (!line.empty()) spdlog::info("{}", line);
  };
}

namespace {

std::string describe_run(const json& j) {
  std::string step = json_string(j, "step");
  auto pid = j.find("pid");
  auto text = [&](const char* key) {
    std::string s = json_string(j, key);
    return s.empty() ? std::string("?") : s;
  };
  return fmt::format("`{}` (pid {} on {}, started {}{})", text("command"),
                     pid != j.end() && pid->is_number_integer() ? std::to_string(pid->get<long long>()) : "?",
                     text("host"), text("started_at"), step.empty() ? "" : ", died in step " + step);
}

}  // namespace

RepairOutcome repair_interrupted_runs(const Config& config, LockHeld held) {
  const bool holding_lock = held == LockHeld::yes;
  RepairOutcome out;
  std::vector<JournalFile> journals = read_journals(config.backup_dir);
  if (journals.empty() && journal_leftovers(config.backup_dir).empty()) return out;
  std::optional<BackupLock> lock;
  if (!holding_lock) {
    try {
      lock.emplace(BackupLock::acquire(config.backup_dir, "backupctl repair"));
    } catch (const Error& e) {
      if (e.code() != ErrorCode::locked) throw;
      out.in_progress = true;  // the journals are a live run's
      return out;
    }
    journals = read_journals(config.backup_dir);  // its run may have ended meanwhile
  }
  // A run killed while it rewrote its journal left the half-written copy (the journal itself is
  // whole: the rename is atomic).
  remove_journal_leftovers(config.backup_dir);
  for (JournalFile& j : journals) {
    if (!j.problem.empty()) {
      std::string line = j.path.string() + ": " + j.problem;
      spdlog::warn("journal {}", line);
      out.unresolved.push_back(line);
      continue;
    }
    spdlog::warn("found an interrupted run: {}; repairing it", describe_run(j.json));
    json& pending = j.json["pending"];
    std::string failure;
    while (!pending.empty()) {  // newest first: the journal walked back
      json& e = pending.back();
      try {
        if (!e.is_object()) throw forged("an entry that is not one");
        const json data = e.contains("data") && e["data"].is_object() ? e["data"] : json::object();
        std::string line = repair_entry(config, json_string(e, "type"), data);
        if (!line.empty()) {
          spdlog::warn("  {}", line);
          out.lines.push_back(line);
        }
        pending.erase(pending.size() - 1);
      } catch (const std::exception& err) {
        // What comes after (older entries: the services, last) waits: starting the app on a
        // database that is not settled would be worse than leaving it stopped.
        const auto* be = dynamic_cast<const Error*>(&err);
        failure = std::string(err.what()) + (be && !be->hint().empty() ? " (" + be->hint() + ")" : "");
        if (e.is_object()) e["repair_error"] = failure;
        break;
      }
    }
    try {
      if (pending.empty()) {
        remove_journal_file(j);
        spdlog::warn("repaired the interrupted run {}", describe_run(j.json));
      } else {
        j.json["repair_attempted_at"] = iso8601(Clock::now());
        write_journal_file(j);
        std::string line = fmt::format("{}: could not be repaired: {}; fix that, then run `backupctl repair`",
                                       describe_run(j.json), failure);
        spdlog::error("{}", line);
        out.unresolved.push_back(line);
      }
    } catch (const Error& e) {
      out.unresolved.push_back(j.path.string() + ": " + e.what());
    }
  }
  return out;
}

std::vector<std::string> pending_repairs(const Config& config) {
  std::vector<std::string> out;
  for (const JournalFile& j : read_journals(config.backup_dir)) {
    if (!j.problem.empty()) {
      out.push_back(j.path.string() + ": " + j.problem);
      continue;
    }
    std::string why;
    for (const auto& e : j.json["pending"]) {
      if (!e.is_object()) continue;
      if (!json_string(e, "repair_error").empty()) why = json_string(e, "repair_error");
      if (why.empty()) why = json_string(e, "undo_error");
    }
    out.push_back(describe_run(j.json) + (why.empty() ? "" : ": " + why));
  }
  return out;
}

}  // namespace backupctl
