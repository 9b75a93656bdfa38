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
#include "util/time.hpp"

namespace backupctl {

namespace fs = std::filesystem;

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
      "  recovery:     a temporary server ({}) replays them to the target; then\n"
      "                pg_dump of \"{}\" from it is restored as `restore db` restores a dump\n"
      "                (services stopped, side database, swap, checklist; `restore undo` goes back)\n",
      target.describe(), base.string(), system_identifier, timeline, start_lsn, stop_lsn, base_meta.finished_at,
      segments.size(), partial ? ", and the unfinished " + *partial : "",
      gap.empty() ? "" : "; the WAL has a gap at " + gap + " (nothing after it can be replayed)", server.describe(), database);
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
void unpack_checked(RecoveryCluster& cluster, const fs::path& file, const Meta& meta, const fs::path& identity) {
  if (io::is_encrypted(file)) {
    check_base(file, meta);
    auto source = io::open_plaintext(file, identity);
    cluster.unpack_base(*source);
    return;
  }
  auto raw = io::open_plaintext(file, identity);
  NoProgress quiet;
  io::HashingReadAhead hashed(*raw, quiet);
  auto matches = [&] { return hashed.finish() == meta.sha256 && hashed.total() == meta.size; };
  try {
    cluster.unpack_base(hashed);
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
  const BaseBackup& base = pick_base_backup(bases, live_system_identifier(live), plan.target);
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
  journal.step("restore-pitr.unpack");
  std::optional<RecoveryCluster> cluster;
  cluster.emplace(root, plan.server);
  {
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
    unpack_checked(*cluster, plan.base, plan.base_meta, config.age_identity);
    spdlog::debug("restore: the base backup is unpacked and matches its meta");
    journal.step("restore-pitr.wal");
    if (plan.server.in_service()) wal.wait();  // its container gets the folder whole
    if (!plan.gap.empty()) {
      spdlog::warn("restore: the WAL kept has a gap at {}: replay cannot go past it (a base backup after the gap "
                   "starts a new window)", plan.gap);
    }
    journal.step("restore-pitr.replay");
    cluster->start(plan.target);
    cluster->wait_until_promoted([&] { wal.check(); });
  }  // a target before the WAL's end: the segments after it are not staged
  const std::string reached = recovered_to(cluster->log_tail());
  spdlog::info("restore: recovered to {} ({})", plan.target.describe(), reached.empty() ? "no transaction replayed" : reached);

  journal.step("restore-pitr.dump");
  const fs::path dump_path = root / "recovered.dump";
  {
    // pg_dump where the server is: its socket is in a folder only that side sees.
    Config where_server = config;
    where_server.pg_tools = plan.server.in_service() ? PgTools::compose : PgTools::host;
    const PgTool pg_dump = find_pg_tool("pg_dump", plan.major, where_server);
    std::vector<std::string> args = {"--format=custom", "--compress=0", "--no-password"};
    if (pg_dump.in_service()) {  // PGHOST and PGPORT do not go into the container
      args.push_back("--host=" + cluster->server_root());
      args.push_back("--port=" + std::to_string(cluster->port()));
    }
    auto dump = io::AtomicFileSink::try_create(dump_path);
    if (!dump) throw Error(ErrorCode::internal, dump_path.string() + ".partial exists in a new folder");
    NoProgress quiet;
    const auto t0 = std::chrono::steady_clock::now();
    StreamResult out = stream_pg_program(pg_dump.name(),
                                         {.argv = pg_dump.argv(args),
                                          .env = cluster->target(live, plan.database).child_env()},
                                         *dump, nullptr, 0, {}, quiet, "nothing was restored");
    // Its meta, as a backup's: the dump restore checks the file against it like any other.
    Meta meta = new_backup_meta("db", dump_path, out.size, out.sha256, config.profile, Clock::now(), seconds_since(t0),
                                plan.base_meta.set_id, {});
    meta.format = "pg_custom";
    meta.compression = "none";  // read once, right away, from the same disk: gzip would only cost CPU
    meta.source = {{"database", plan.database}, {"recovered_to", plan.target.describe()}, {"base", plan.base.filename().string()}};
    struct stat written {};
    const bool have_written = ::fstat(dump->fd(), &written) == 0;
    publish_backup(*dump, meta);
    // Hashed as it was written: the dump restore's plan reads only its table of contents.
    if (have_written) remember_written_sha256(dump_path, out.sha256, written);
    spdlog::debug("restore: the recovered database is dumped ({})", human_bytes(out.size));
  }
  cluster.reset();  // an immediate shutdown: no checkpoint for a folder removed next
  std::error_code ec;
  fs::remove_all(root / "data", ec);  // room for the restore
  spdlog::debug("restore: the temporary server is stopped and its data removed");

  RestoreDbOptions restore = options.restore;
  restore.file = dump_path;
  restore.incoming = nullptr;
  RestorePlan dump_plan = plan_restore_db(config, live, restore, progress);
  RestoreReport report = run_restore_db(config, live, dump_plan, restore, journal, progress);
  report.file = plan.base;
  report.recovered_to = plan.target.describe() + (reached.empty() ? "" : " (" + reached + ")");
  return report;  // `folder`, unsettled, removes the temporary cluster's folder
}

}  // namespace backupctl
