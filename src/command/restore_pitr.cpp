#include "command/restore_pitr.hpp"

#include <fmt/format.h>
#include <pwd.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
#include <regex>
#include <set>
#include <thread>

#include "catalog/catalog.hpp"
#include "command/backup_base.hpp"
#include "command/remote.hpp"
#include "command/verify_wal.hpp"
#include "io/age.hpp"
#include "io/incoming.hpp"
#include "io/atomic_file.hpp"
#include "io/read_ahead.hpp"
#include "pg/connection.hpp"
#include "pg/tools.hpp"
#include "pg/wal.hpp"
#include "pg/wal_archive.hpp"
#include "service/compose.hpp"
#include "util/background.hpp"
#include "util/error.hpp"
#include "util/format.hpp"
#include "util/fs.hpp"
#include "util/json.hpp"
#include "util/process.hpp"
#include "util/signals.hpp"
#include "util/time.hpp"

namespace backupctl {

namespace fs = std::filesystem;

namespace {

// The OID of the live server's database `live` names, when it says.
std::optional<std::uint32_t> live_database_oid(const PgTarget& live) {
  try {
    PgConnection conn = PgConnection::open(live);
    return static_cast<std::uint32_t>(std::stoul(conn.scalar("SELECT oid FROM pg_database WHERE datname = current_database()")));
  } catch (const Error& e) {
    if (e.code() == ErrorCode::interrupted) throw;
    return std::nullopt;
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

}  // namespace

std::uint64_t live_system_identifier(const PgTarget& live) {
  try {
    PgConnection conn = PgConnection::open(live);
    return std::stoull(conn.scalar("SELECT system_identifier FROM pg_control_system()"));
  } catch (const Error& e) {
    if (e.code() == ErrorCode::interrupted) throw;
    return 0;
  } catch (const std::exception&) {
    return 0;
  }
}

namespace {

// The cluster whose backups a restore uses: the live server's when BACKUP_DIR has base backups
// of it, else the only cluster there is; several others are refused (which one is meant?).
std::uint64_t choose_cluster(const std::vector<BaseBackup>& bases, std::uint64_t live) {
  std::set<std::uint64_t> clusters;
  for (const auto& b : bases) clusters.insert(b.sysid);
  if (clusters.empty()) {
    throw Error(ErrorCode::not_found, "no base backup in BACKUP_DIR/base",
                "point-in-time recovery starts from one: `backupctl backup base` (with BACKUP_WAL=stream and `wal stream` running)");
  }
  if (clusters.count(live)) return live;
  if (clusters.size() == 1) return *clusters.begin();
  std::string names;
  for (auto c : clusters) names += (names.empty() ? "" : ", ") + std::to_string(c);
  throw Error(ErrorCode::usage, "BACKUP_DIR holds base backups of several clusters (" + names + "), none of them the live server's",
              "move the other clusters' base/ and wal/ folders away, or restore on the server they came from");
}

const BaseBackup& choose_base(const std::vector<BaseBackup>& bases, std::uint64_t cluster, const RecoveryTarget& target) {
  const BaseBackup* best = nullptr;
  std::optional<Clock::time_point> when;
  if (target.kind == RecoveryTarget::Kind::time) {
    when = parse_precise_time(target.value.substr(0, 10) + "T" + target.value.substr(11));
  }
  const std::optional<Lsn> lsn = target.kind == RecoveryTarget::Kind::lsn ? parse_lsn(target.value) : std::nullopt;
  for (const auto& b : bases) {
    if (b.sysid != cluster) continue;
    // PostgreSQL refuses a target before the backup's consistent point.
    if (when && b.finished > *when) continue;
    if (lsn && b.stop > *lsn) continue;
    if (!best || b.finished > best->finished) best = &b;
  }
  if (!best) {
    throw Error(ErrorCode::not_found, "no base backup of cluster " + std::to_string(cluster) + " ended before " + target.describe(),
                "a moment after the oldest base backup's end can be restored (`backupctl list --kind base`)");
  }
  return *best;
}

// "2026-12-06T14:01:59.5Z" -> "2026-12-06 14:01:59.5+00:00" (PostgreSQL rejects the T and Z).
const std::regex kIsoTime(R"(^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(\.\d{1,6})?(Z|[+-]\d{2}:?\d{2})$)");

// The server log's words for where replay stopped: the last commit replayed (at or before the
// target) and the first one that was not (after it). Together they prove the moment: every
// transaction committed up to the first is in the database, none from the second on.
std::string recovered_to(const std::string& log) {
  std::smatch m;
  static const std::regex stop(R"(recovery stopping (before|after) commit of transaction \d+, time ([^\n]+))");
  static const std::regex last(R"(last completed transaction was at log time ([^\n]+))");
  std::string out;
  if (std::regex_search(log, m, last)) out = "the last transaction replayed committed at " + std::string(m[1]);
  if (std::regex_search(log, m, stop)) {
    out += (out.empty() ? "" : "; ") + std::string("stopped ") + std::string(m[1]) + " the commit at " + std::string(m[2]);
  }
  return out;
}

// Run as root, the temporary server runs as `postgres` and must reach its folder: every folder
// above PITR_WORK_DIR that exists must let others (or postgres) through. Said in the plan, before
// anything is unpacked, not as a server that would not start.
void require_reachable_by_postgres(const fs::path& work) {
  if (::geteuid() != 0) return;
  struct passwd* pw = ::getpwnam("postgres");
  if (!pw) return;  // RecoveryCluster says what is missing
  for (fs::path p = work.parent_path(); !p.empty(); p = p.parent_path()) {
    struct stat st{};
    if (::stat(p.c_str(), &st) == 0) {
      const bool through = (st.st_mode & S_IXOTH) || (st.st_uid == pw->pw_uid && (st.st_mode & S_IXUSR)) ||
                           (st.st_gid == pw->pw_gid && (st.st_mode & S_IXGRP));
      if (!through) {
        throw Error(ErrorCode::usage,
                    fmt::format("the postgres user cannot reach PITR_WORK_DIR {}: {} is mode {:04o}", work.string(),
                                p.string(), st.st_mode & 07777),
                    "set PITR_WORK_DIR to a folder postgres can reach, on a disk with room for the database "
                    "(e.g. /var/tmp/backupctl-pitr)");
      }
    }
    if (p == p.root_path()) break;
  }
}

}  // namespace

const BaseBackup& pick_base_backup(const std::vector<BaseBackup>& bases, std::uint64_t live, const RecoveryTarget& target) {
  return choose_base(bases, choose_cluster(bases, live), target);
}

RecoveryTarget parse_recovery_target(const std::string& to_time, const std::string& to_lsn) {
  if (!to_time.empty() && !to_lsn.empty()) {
    throw Error(ErrorCode::usage, "--to-time and --to-lsn name two targets", "give one of them");
  }
  if (!to_lsn.empty()) {
    if (!parse_lsn(to_lsn)) throw Error(ErrorCode::usage, "--to-lsn " + to_lsn + " is not a WAL position", "write it as PostgreSQL does: 0/16B3F48");
    return {RecoveryTarget::Kind::lsn, format_lsn(*parse_lsn(to_lsn))};
  }
  if (to_time == "latest") return {RecoveryTarget::Kind::latest, ""};
  std::smatch m;
  if (!std::regex_match(to_time, m, kIsoTime) || !parse_iso8601(std::string(m[1]) + "T" + std::string(m[2]) + (m[4] == "Z" ? "Z" : std::string(m[4])))) {
    throw Error(ErrorCode::usage, "--to-time " + to_time + " is not a moment backupctl can restore to",
                "use ISO 8601 with Z or an offset (2026-12-06T14:01:59Z, 2026-12-06T23:01:59.250+09:00) or latest");
  }
  std::string zone = m[4] == "Z" ? "+00:00" : std::string(m[4]);
  if (zone.size() == 5) zone = zone.substr(0, 3) + ":" + zone.substr(3);
  const std::string pg = std::string(m[1]) + " " + std::string(m[2]) + std::string(m[3]) + zone;
  auto when = parse_iso8601(std::string(m[1]) + "T" + std::string(m[2]) + zone);
  if (when && dated_in_future(*when, Clock::now())) {
    throw Error(ErrorCode::usage, "--to-time " + to_time + " is in the future", "to restore everything received, use --to-time latest");
  }
  return {RecoveryTarget::Kind::time, pg};
}

std::string PitrPlan::describe() const {
  std::string s = fmt::format(
      "Point-in-time restore plan (nothing has been changed):\n"
      "  target:       {}\n"
      "  base backup:  {} (cluster {}, timeline {}, WAL {} to {}, ended {})\n"
      "  WAL:          {} segment(s) kept after it{}{}\n"
      "  recovery:     a temporary server ({}) replays them to the target{}; then\n"
      "                pg_dump of \"{}\" from it is restored as `restore db` restores a dump\n"
      "                (services stopped, side database, swap, checklist; `restore undo` goes back)\n",
      target.describe(), base.string(), system_identifier, timeline, start_lsn, stop_lsn, base_meta.finished_at,
      segments.size(), partial ? ", and the unfinished " + *partial : "",
      gap.empty() ? "" : "; the WAL has a gap at " + gap + " (nothing after it can be replayed)", server.describe(),
      database_oid ? fmt::format(" (only this database's files unpacked, OID {}; the others' as sparse zeroes)", *database_oid) : "",
      database);
  return s;
}

nlohmann::json PitrPlan::to_json() const {
  return {{"target", target.describe()},
          {"base", base.string()},
          {"system_identifier", std::to_string(system_identifier)},
          {"timeline", timeline},
          {"start_lsn", start_lsn},
          {"stop_lsn", stop_lsn},
          {"segments", segments.size()},
          {"partial", partial.value_or("")},
          {"gap", gap},
          {"database", database},
          {"database_oid", database_oid ? nlohmann::json(*database_oid) : nlohmann::json(nullptr)},
          {"server", server.describe()}};
}

std::vector<std::string> recovery_service_exec(const Config& config) {
  return compose_argv(config, {"exec", "-T", "-u", "postgres", config.pg_service});
}

namespace {

Error base_not_its_meta(const fs::path& file) {
  return Error(ErrorCode::verification, "the base backup " + file.filename().string() + " does not match its meta (sha256)",
               "it was changed or damaged; use another (`backupctl list --kind base`)");
}

void check_base(const fs::path& file, const Meta& meta) {
  spdlog::debug("restore: checking {} against its meta", file.filename().string());
  const io::FileDigest digest = io::digest_file(file.string());
  if (digest.sha256 != meta.sha256 || digest.size != meta.size) throw base_not_its_meta(file);
}

// Unpacks the base backup into `cluster`, its bytes hashed as they are read (on a thread of their
// own, beside the unpack) and compared with the meta's before anything starts a server on them:
// one read of the file instead of two. An encrypted one is checked first (its meta's sha256 is
// of the encrypted bytes, which age reads itself). A damaged file can stop the unpack first (a
// zstd frame that does not decode): the cause then named is the file that is not its meta's.
void unpack_checked(RecoveryCluster& cluster, const fs::path& file, const Meta& meta, const fs::path& identity,
                    std::optional<std::uint32_t> only_database) {
  if (io::is_encrypted(file)) {
    check_base(file, meta);
    auto source = io::open_plaintext(file, identity);
    cluster.unpack_base(*source, only_database);
    return;
  }
  auto raw = io::open_plaintext(file, identity);
  NoProgress quiet;
  io::HashingReadAhead hashed(*raw, quiet);
  auto matches = [&] { return hashed.finish() == meta.sha256 && hashed.total() == meta.size; };
  try {
    cluster.unpack_base(hashed, only_database);
  } catch (const Error& e) {
    if (e.code() == ErrorCode::interrupted) throw;
    bool ours = true;
    try {
      ours = matches();
    } catch (const Error&) {  // the file's own read error: the unpack's says it
    }
    if (!ours) throw base_not_its_meta(file);
    throw;
  }
  if (!matches()) throw base_not_its_meta(file);
}

// The server that replays: this host's programs of the backup's major version; else, under
// compose, the service's (the same rule as the client tools, pg/tools.hpp).
RecoveryServer recovery_server(const Config& config, int major) {
  auto in_service = [&] { return find_service_server(recovery_service_exec(config), config.pg_service, major); };
  if (config.pg_tools == PgTools::compose) return in_service();
  Config host = config;
  host.pg_tools = PgTools::host;
  std::string missing;
  try {
    const PgTool postgres = find_pg_tool("postgres", major, host);
    if (postgres.major == major) return {fs::path(postgres.path).parent_path(), {}, ""};
    missing = fmt::format("the base backup is of PostgreSQL {}, this host's server programs are {}", major, postgres.major);
  } catch (const Error& e) {
    if (e.code() != ErrorCode::not_found && e.code() != ErrorCode::usage && e.code() != ErrorCode::tool_failed) throw;
    missing = fmt::format("no PostgreSQL {} server programs on this host ({})", major, e.what());
  }
  const std::string hint = fmt::format(
      "install postgresql-{} (the server package) or set PG_BINDIR to its bin folder; or PG_TOOLS=compose, to recover in "
      "the stack's {} service", major, config.pg_service);
  if (config.pg_tools == PgTools::automatic && config.service_control == ServiceControl::compose) {
    try {
      RecoveryServer s = in_service();
      spdlog::info("{}; recovering in the compose service {} instead", missing, config.pg_service);
      return s;
    } catch (const Error& e) {
      throw Error(ErrorCode::not_found, missing + "; " + e.what(), hint);
    }
  }
  throw Error(ErrorCode::not_found, missing, hint);
}

}  // namespace

PitrPlan plan_pitr(const Config& config, const PgTarget& live, const PitrOptions& options) {
  PitrPlan plan;
  plan.target = parse_recovery_target(options.to_time, options.to_lsn);
  plan.database = live.dbname();  // the database recovered; --target-db is where it goes
  const std::vector<BaseBackup> bases = list_base_backups(config);
  const std::uint64_t live_cluster = live_system_identifier(live);
  const BaseBackup& base = pick_base_backup(bases, live_cluster, plan.target);
  plan.base = base.file;
  plan.base_meta = base.meta;
  plan.system_identifier = base.sysid;
  plan.timeline = base.timeline;
  plan.segment_size = base.segment_size;
  plan.start_lsn = format_lsn(base.start);
  plan.stop_lsn = format_lsn(base.stop);

  // Where its server can run (said before the base backup is read: that takes a while).
  plan.server = recovery_server(config, base.major);
  if (!plan.server.in_service()) require_reachable_by_postgres(config.pitr_work_dir);

  // The base backup's bytes are its meta's: read here for a plan that is shown, as it unpacks for
  // one that runs (check_base_in_plan).
  if (options.check_base_in_plan) check_base(base.file, base.meta);

  // The WAL after it, on its timeline, to the first gap.
  WalReach reach = wal_reach(WalArchive(config.backup_dir, base.sysid), base);
  plan.segments = std::move(reach.segments);
  plan.partial = reach.partial;
  plan.gap = reach.gap;

  plan.major = base.major;
  // ignore_invalid_pages (RecoveryCluster::zeroed_databases()) came with PostgreSQL 13.
  if (!plan.server.in_service() && plan.major >= 13) {
    if (auto it = base.databases.find(plan.database); it != base.databases.end()) {
      plan.database_oid = it->second;
    } else if (base.databases.empty() && live_cluster == base.sysid) {
      plan.database_oid = live_database_oid(live);  // an older meta: the live server's, likely the same
    }
  }
  return plan;
}

namespace {

constexpr std::size_t kStagedAhead = 16;  // segments: 256 MiB at the default size

// Stages the plan's WAL into the cluster on a thread of its own, each segment whole before the
// server sees it. wait() waits for the end and rethrows what it threw, check() rethrows it once it
// ended; the destructor (an exception on this side, or the target reached) stops it after the
// segment at hand.
class WalStager {
 public:
  // `ahead`: at most that many segments staged and not yet taken by the server (0: no limit).
  WalStager(WalArchive archive, const PitrPlan& plan, const RecoveryCluster& cluster, std::size_t ahead)
      : m_archive(std::move(archive)), m_plan(plan), m_cluster(cluster), m_ahead(ahead),
        m_task([this](const std::atomic<bool>& stop) { run(stop); }) {}

  void wait() {
    m_task.join();
    m_task.rethrow();
  }
  void check() const { m_task.rethrow(); }

 private:
  void run(const std::atomic<bool>& stop) {
    const fs::path dir = m_cluster.wal_dir();
    auto stage = [&](const std::string& name, bool partial) {
      const fs::path staging = dir / (name + ".staging");
      if (partial) {
        if (!m_archive.restore_partial(name, staging)) return;  // said why; replay ends before it
      } else {
        m_archive.restore_segment(name, staging);
      }
      m_cluster.add_wal(staging, name);
    };
    for (const auto& s : m_plan.segments) {
      while (!stop && m_ahead && waiting(dir) >= m_ahead) std::this_thread::sleep_for(std::chrono::milliseconds(20));
      if (stop) return;
      stage(s, false);
    }
    if (m_plan.partial && !stop) stage(*m_plan.partial, true);
    if (!stop) m_cluster.wal_staged();
  }

  // The segments in `dir` the server has not taken yet.
  static std::size_t waiting(const fs::path& dir) {
    std::size_t n = 0;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir, ec)) n += e.path().filename().string().size() == 24;
    return n;
  }

  const WalArchive m_archive;
  const PitrPlan& m_plan;
  const RecoveryCluster& m_cluster;
  const std::size_t m_ahead;
  BackgroundTask m_task;  // last: started once the rest is set
};

}  // namespace

namespace {

// pg_dump of the plan's database from the recovered server, where that server is (its socket
// is in a folder only that side sees).
struct DumpProgram {
  std::string name;
  SpawnOptions spawn;
};

DumpProgram recovered_dump_program(const Config& config, const PgTarget& live, const PitrPlan& plan,
                                   const RecoveryCluster& cluster) {
  Config where_server = config;
  where_server.pg_tools = plan.server.in_service() ? PgTools::compose : PgTools::host;
  const PgTool pg_dump = find_pg_tool("pg_dump", plan.major, where_server);
  std::vector<std::string> args = {"--format=custom", "--compress=0", "--no-password"};
  if (pg_dump.in_service()) {  // PGHOST and PGPORT do not go into the container
    args.push_back("--host=" + cluster.server_root());
    args.push_back("--port=" + std::to_string(cluster.port()));
  }
  return {pg_dump.name(), {.argv = pg_dump.argv(args), .env = cluster.target(live, plan.database).child_env()}};
}

// The temporary server stopped (immediate: no checkpoint for a folder removed next) and its
// data removed: room for the load.
void stop_and_clear(std::optional<RecoveryCluster>& cluster) {
  const fs::path data = cluster->data_dir();
  cluster.reset();
  std::error_code ec;
  fs::remove_all(data, ec);
  spdlog::debug("restore: the temporary server is stopped and its data removed");
}

// The recovered database as the dump restore reads it: pg_dump's output, never stored (an
// io::IncomingFile of a size known at its end, spooled in the recovery folder), written on a
// thread of its own while the restore plans and loads it. Once pg_dump is done, that thread
// stops the temporary server and removes its data, while the load goes on. The restore swaps
// nothing in before wait() saw pg_dump end well.
class RecoveredDump final : public IncomingDump {
 public:
  RecoveredDump(DumpProgram program, Meta meta, std::optional<RecoveryCluster>& cluster)
      : m_program(std::move(program)), m_meta(std::move(meta)), m_cluster(cluster) {
    const fs::path name = m_cluster->root() / m_meta.file;
    m_file = io::IncomingFile::create(name, io::IncomingFile::kUnknownSize, m_cluster->root(),
                                      io::IncomingFile::window_setting());
    m_origin = "pg_dump of \"" + json_string(m_meta.source, "database") + "\" from the recovered server";
    try {
      m_thread = std::thread([this] { dump(); });
    } catch (const std::system_error& e) {
      throw Error(ErrorCode::internal, std::string("cannot start pg_dump's thread: ") + e.what(), "the system is out of threads or memory");
    }
  }
  RecoveredDump(const RecoveredDump&) = delete;
  RecoveredDump& operator=(const RecoveredDump&) = delete;
  ~RecoveredDump() override {
    if (!m_thread.joinable()) return;
    if (!m_dumped) m_file->cancel();  // else it is only stopping the server: let it
    m_thread.join();
  }

  const fs::path& file() const override { return m_file->name(); }
  const Meta& meta() const override { return m_meta; }
  std::optional<fs::path> roles_file() const override { return std::nullopt; }  // the roles are the live server's
  std::string origin() const override { return m_origin; }
  std::string checksum_state() const override {
    return "written by pg_dump as the restore reads it; nothing is swapped in before pg_dump ended well";
  }
  std::string wait_phase() const override { return "pg_dump end"; }
  void wait() override {
    // Read on to the end (the loader did): a reader asking for bytes lets on a writer the
    // spool's window holds back; the end comes only once pg_dump exited 0. (The thread may
    // still be stopping the server: the destructor waits for that, the swap need not.)
    std::vector<char> buf(1 << 16);
    for (std::uint64_t at = m_file->arrived();;) {
      const std::size_t n = m_file->read_at(at, buf, nullptr);
      if (n == 0) break;
      at += n;
    }
  }

 private:
  void dump() {
    StopScope stop_when_cancelled(m_file->cancel_flag());
    try {
      io::IncomingSink spool(*m_file);
      NoProgress quiet;
      StreamResult out = stream_pg_program(m_program.name, m_program.spawn, spool, nullptr, 0, {}, quiet, "nothing was restored");
      m_dumped = true;
      m_file->complete();
      spdlog::debug("restore: the recovered database is dumped ({})", human_bytes(out.size));
    } catch (...) {
      m_file->fail(std::current_exception());
      return;  // the restore fails; the server goes with the recovery folder
    }
    try {
      stop_and_clear(m_cluster);
    } catch (...) {  // the journal's recovery_cluster entry removes the folder at the end
    }
  }

  DumpProgram m_program;
  Meta m_meta;
  std::optional<RecoveryCluster>& m_cluster;  // only this thread's from the start to the join
  std::shared_ptr<io::IncomingFile> m_file;
  std::string m_origin;
  std::atomic<bool> m_dumped{false};
  std::thread m_thread;
};

}  // namespace

bool own_recovery_folder(const Config& config, const fs::path& root) {
  return root.is_absolute() && root.lexically_normal() == root && root.parent_path() == config.pitr_work_dir &&
         root.filename().string().starts_with("pitr-");
}

RestoreReport run_pitr(const Config& config, const PgTarget& live, const PitrPlan& plan, const PitrOptions& options,
                       Journal& journal, Progress& progress) {
  // The work folder can be traversed by the server's user (as root: postgres); what is inside is
  // that user's alone (0700).
  make_dirs(config.pitr_work_dir, 0711);
  const fs::path root = config.pitr_work_dir / ("pitr-" + run_tag());
  nlohmann::json where = {{"path", root.string()}};
  if (plan.server.in_service()) {
    where["service_root"] = service_recovery_root();
    where["bindir"] = plan.server.bindir.string();
  }
  Journal::Entry folder = journal.add("recovery_cluster", where);
  std::optional<RecoveryCluster> cluster;
  // Unpacks and replays; false when a restore of only the plan's database (the others sparse)
  // cannot be trusted and must be done again with the whole base backup: the database was not
  // in it (made since: it may have been copied from one that is zeroes here), the replay failed
  // (WAL without full-page images, full_page_writes off), or the database of that name at the
  // target is another one (renamed, made again).
  auto recover = [&](std::optional<std::uint32_t> only) {
    journal.step("restore-pitr.unpack");
    cluster.emplace(root, plan.server);
    // The WAL is staged while the base backup unpacks, then while the server replays it: all
    // three mostly one core each (zstd, zstd, the startup process). On this host the server takes
    // each segment as it replays it (and removes it at its next restartpoint): a few staged
    // ahead keep it busy, so wal/ never holds all of it. A service's container gets the folder
    // whole.
    std::vector<std::string> expected = plan.segments;
    if (plan.partial) expected.push_back(*plan.partial);
    cluster->expect_wal(expected);
    WalStager wal(WalArchive(config.backup_dir, plan.system_identifier), plan, *cluster,
                  plan.server.in_service() ? 0 : kStagedAhead);
    unpack_checked(*cluster, plan.base, plan.base_meta, config.age_identity, only);
    spdlog::debug("restore: the base backup is unpacked and matches its meta{}",
                  only ? fmt::format(" ({} other database(s) as sparse zeroes)", cluster->zeroed_databases().size()) : "");
    if (only && !cluster->kept_database_seen()) {
      spdlog::info("restore: \"{}\" (OID {}) is not in the base backup: again with the whole base backup", plan.database, *only);
      return false;
    }
    journal.step("restore-pitr.wal");
    if (plan.server.in_service()) wal.wait();  // its container gets the folder whole
    if (!plan.gap.empty()) {
      spdlog::warn("restore: the WAL kept has a gap at {}: replay cannot go past it (a base backup after the gap "
                   "starts a new window)", plan.gap);
    }
    journal.step("restore-pitr.replay");
    cluster->start(plan.target);
    try {
      cluster->wait_until_promoted([&] { wal.check(); });
    } catch (const Error& e) {
      if (!only || cluster->zeroed_databases().empty() || e.code() != ErrorCode::tool_failed) throw;
      spdlog::warn("restore: the replay with only \"{}\" unpacked failed ({}): again with the whole base backup",
                   plan.database, e.what());
      return false;
    }
    if (only && !cluster->zeroed_databases().empty()) {
      if (const std::string line = cluster->invalid_page_outside_zeroed(); !line.empty()) {
        spdlog::warn("restore: the replay with only \"{}\" unpacked met a damaged page outside the other databases "
                     "({}): again with the whole base backup", plan.database, line);
        return false;
      }
    }
    if (only) {
      std::optional<std::uint32_t> oid;
      try {
        PgConnection conn = PgConnection::open(cluster->target(live, plan.database));
        oid = static_cast<std::uint32_t>(std::stoul(conn.scalar("SELECT oid FROM pg_database WHERE datname = current_database()")));
      } catch (const Error& e) {
        if (e.code() == ErrorCode::interrupted) throw;  // else pg_dump says why it cannot connect
      }
      if (oid && *oid != *only) {
        spdlog::info("restore: \"{}\" at the target is OID {}, not {} as in the base backup: again with the whole base backup",
                     plan.database, *oid, *only);
        return false;
      }
    }
    return true;
  };  // a target before the WAL's end: the segments after it are not staged
  if (!recover(plan.database_oid)) {
    cluster.reset();
    std::error_code ec;
    fs::remove_all(root, ec);
    if (ec) throw Error(ErrorCode::io, "cannot remove " + root.string() + ": " + ec.message(), "remove it, then restore again");
    if (!recover(std::nullopt)) throw Error(ErrorCode::internal, "the whole base backup was refused as a partial one");
  }
  const std::string reached = recovered_to(cluster->log_tail());
  spdlog::info("restore: recovered to {} ({})", plan.target.describe(), reached.empty() ? "no transaction replayed" : reached);

  journal.step("restore-pitr.dump");
  const fs::path dump_path = root / "recovered.dump";
  // Its meta, as a backup's: the dump restore checks the file against it like any other.
  Meta meta = new_backup_meta("db", dump_path, 0, "", config.profile, Clock::now(), 0, plan.base_meta.set_id, {});
  meta.format = "pg_custom";
  meta.compression = "none";  // read once, right away, from the same disk: gzip would only cost CPU
  meta.source = {{"database", plan.database}, {"recovered_to", plan.target.describe()}, {"base", plan.base.filename().string()}};
  RestoreDbOptions restore = options.restore;
  restore.file = dump_path;
  restore.incoming = nullptr;
  std::optional<RecoveredDump> streamed;
  if (!restore.in_place) {
    // Loaded as pg_dump writes it (the load has to wait for nothing but pg_dump); the server
    // stops once pg_dump is done.
    streamed.emplace(recovered_dump_program(config, live, plan, *cluster), meta, cluster);
    restore.incoming = &*streamed;
  } else {
    // --in-place drops the live database before the load: the dump is whole on disk first.
    const DumpProgram pg_dump = recovered_dump_program(config, live, plan, *cluster);
    auto dump = io::AtomicFileSink::try_create(dump_path);
    if (!dump) throw Error(ErrorCode::internal, dump_path.string() + ".partial exists in a new folder");
    NoProgress quiet;
    const auto t0 = std::chrono::steady_clock::now();
    StreamResult out = stream_pg_program(pg_dump.name, pg_dump.spawn, *dump, nullptr, 0, {}, quiet, "nothing was restored");
    meta.size = out.size;
    meta.sha256 = out.sha256;
    meta.duration_seconds = seconds_since(t0);
    struct stat written {};
    const bool have_written = ::fstat(dump->fd(), &written) == 0;
    publish_backup(*dump, meta);
    // Hashed as it was written: the dump restore's plan reads only its table of contents.
    if (have_written) remember_written_sha256(dump_path, out.sha256, written);
    spdlog::debug("restore: the recovered database is dumped ({})", human_bytes(out.size));
    stop_and_clear(cluster);
  }
  RestorePlan dump_plan = plan_restore_db(config, live, restore, progress);
  RestoreReport report = run_restore_db(config, live, dump_plan, restore, journal, progress);
  report.file = plan.base;
  report.recovered_to = plan.target.describe() + (reached.empty() ? "" : " (" + reached + ")");
  return report;  // `folder`, unsettled, removes the temporary cluster's folder
}

}  // namespace backupctl
