#include "command/wal_stream.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <signal.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <optional>

#include "command/backup_base.hpp"
#include "pg/wal_archive.hpp"
#include "pg/connection.hpp"
#include "pg/tools.hpp"
#include "util/error.hpp"
#include "util/fd.hpp"
#include "util/fs.hpp"
#include "util/process.hpp"
#include "util/signals.hpp"

namespace backupctl {

namespace fs = std::filesystem;

namespace {

constexpr int kMaxBackoffSeconds = 60;

// Sleeps up to `ms`, returning early (true) when SIGINT or SIGTERM arrived.
bool sleep_or_stop(int ms) {
  if (interrupt_pending()) return true;
  struct pollfd p{interrupt_fd(), POLLIN, 0};
  ::poll(&p, p.fd >= 0 ? 1 : 0, ms);
  return interrupt_pending();
}

std::string setting(PgConnection& conn, const std::string& name) {
  return conn.scalar("SELECT setting FROM pg_settings WHERE name = $1", {name});
}

const char* const kReplicationHint =
    "give the role REPLICATION (ALTER ROLE <user> REPLICATION) and pg_hba.conf a line "
    "`host replication <user> <backup host>/32 scram-sha-256` (README: continuous protection)";

// The slot, created when missing (reserving WAL at once). Refuses a slot the server would let
// grow without bound unless the operator said so.
void ensure_slot(const Config& config, PgConnection& conn) {
  const std::string keep = setting(conn, "max_slot_wal_keep_size");
  if (keep == "-1" && !config.wal_allow_unbounded_slot) {
    throw Error(ErrorCode::usage,
                "max_slot_wal_keep_size is -1: a receiver that stops would let the slot keep WAL until the server's disk is full",
                "set max_slot_wal_keep_size (e.g. ALTER SYSTEM SET max_slot_wal_keep_size = '10GB'; SELECT pg_reload_conf()), "
                "or WAL_ALLOW_UNBOUNDED_SLOT=yes to accept the risk");
  }
  PgRows rows = conn.query("SELECT coalesce(wal_status, '') FROM pg_replication_slots WHERE slot_name = $1", {config.wal_slot});
  if (rows.empty()) {
    conn.query("SELECT pg_create_physical_replication_slot($1, true)", {config.wal_slot});
    spdlog::info("wal: created the replication slot {}", config.wal_slot);
    return;
  }
  if (rows[0][0].value_or("") == "lost") {
    // The server removed WAL the slot still needed: there is a gap. A new slot starts after it;
    // restores to moments before the gap need an earlier base backup, after it a new one.
    spdlog::error("wal: the slot {} lost WAL the server removed (max_slot_wal_keep_size); recreating it. "
                  "There is a gap in the WAL kept: take a base backup now (`backupctl backup base`)",
                  config.wal_slot);
    conn.query("SELECT pg_drop_replication_slot($1)", {config.wal_slot});
    conn.query("SELECT pg_create_physical_replication_slot($1, true)", {config.wal_slot});
  }
}

// The receiver's lock on the cluster's folder: one receiver writes it.
Fd lock_receiver(const WalArchive& archive) {
  const fs::path path = archive.dir() / ".receiver.lock";
  Fd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) throw_errno("cannot open " + path.string());
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    throw Error(ErrorCode::usage, "another `backupctl wal stream` receives the WAL of this cluster into " + archive.dir().string(),
                "run one receiver per cluster (stop the other first)");
  }
  return fd;
}

// One run of pg_receivewal, archiving finished segments every second, until it ends or we are
// asked to stop. Returns true when asked to stop.
bool receive_once(const Config& config, const PgTarget& target, WalArchive& archive, const PgTool& tool) {
  make_dirs(archive.incoming(), 0700);
  Child child = Child::spawn({.argv = tool.argv({"-D", archive.incoming().string(), "--slot=" + config.wal_slot,
                                                 "--synchronous", "--no-loop", "--no-password"}),
                              .env = target.child_env(),
                              .in = Stdio::null,
                              .out = Stdio::null,
                              .err = Stdio::inherit});
  for (;;) {
    const bool stop = sleep_or_stop(1000);
    if (stop) {
      child.kill(SIGINT);  // pg_receivewal flushes what it has and exits
      InterruptShield shield;
      child.wait();
      archive.archive_incoming();
      return true;
    }
    for (const auto& name : archive.archive_incoming()) spdlog::info("wal: archived {}", name);
    if (auto status = child.try_wait()) {
      for (const auto& name : archive.archive_incoming()) spdlog::info("wal: archived {}", name);
      spdlog::warn("wal: pg_receivewal ended ({})", status->describe());
      return false;
    }
  }
}

// Whether a `wal stream` holds the cluster folder's lock now.
bool receiver_running(const WalArchive& archive) {
  const fs::path path = archive.dir() / ".receiver.lock";
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) return false;
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) == 0) {
    ::flock(fd.get(), LOCK_UN);
    return false;
  }
  return errno == EWOULDBLOCK;
}

// When the newest WAL of the cluster arrived: the newest file's time, archived or in incoming/.
std::optional<Clock::time_point> newest_wal(const WalArchive& archive) {
  std::optional<Clock::time_point> newest;
  std::error_code ec;
  for (const fs::path& dir : {archive.dir(), archive.incoming()}) {
    for (const auto& e : fs::directory_iterator(dir, ec)) {
      const std::string name = e.path().filename().string();
      struct stat st{};
      if (name.starts_with(".") || name.ends_with(".rejected") || name.ends_with(".conflict") ||
          ::lstat(e.path().c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
        continue;
      }
      const Clock::time_point t = Clock::from_time_t(st.st_mtim.tv_sec) +
                                  std::chrono::duration_cast<Clock::duration>(std::chrono::nanoseconds(st.st_mtim.tv_nsec));
      if (!newest || t > *newest) newest = t;
    }
  }
  return newest;
}

}  // namespace

WalStatus wal_status(const Config& config, Clock::time_point now) {
  WalStatus w;
  nlohmann::json clusters = nlohmann::json::array();
  const std::vector<BaseBackup> bases = list_base_backups(config);
  for (std::uint64_t id : wal_clusters(config.backup_dir)) {
    WalArchive archive(config.backup_dir, id);
    const bool running = receiver_running(archive);
    std::optional<Clock::time_point> oldest_base, newest = newest_wal(archive);
    for (const auto& b : bases) {
      if (b.sysid == id && (!oldest_base || b.finished < *oldest_base)) oldest_base = b.finished;
    }
    nlohmann::json c = {{"system_identifier", std::to_string(id)},
                        {"receiver", running ? "running" : "not running"},
                        {"newest_wal", newest ? nlohmann::json(iso8601(*newest)) : nlohmann::json(nullptr)},
                        {"newest_wal_age_seconds", newest ? nlohmann::json(std::chrono::duration<double>(now - *newest).count()) : nlohmann::json(nullptr)},
                        {"window_from", oldest_base ? nlohmann::json(iso8601(*oldest_base)) : nlohmann::json(nullptr)},
                        {"window_to", oldest_base && newest ? nlohmann::json(iso8601(*newest)) : nlohmann::json(nullptr)}};
    w.failing = w.failing || !running || !oldest_base;
    clusters.push_back(c);
  }
  if (clusters.empty()) w.failing = true;  // switched on, and nothing received yet
  w.json = {{"clusters", clusters}, {"ok", !w.failing}};
  return w;
}

std::string WalStatus::describe() const {
  if (json["clusters"].empty()) {
    return "  wal      FAIL   BACKUP_WAL=stream and no WAL received yet: start the receiver (`make wal-stream`)\n";
  }
  std::string out;
  for (const auto& c : json["clusters"]) {
    const bool running = c["receiver"] == "running";
    const bool base = !c["window_from"].is_null();
    std::string line = fmt::format("cluster {}: receiver {}", c["system_identifier"].get<std::string>(), c["receiver"].get<std::string>());
    if (!c["newest_wal"].is_null()) line += ", newest WAL " + c["newest_wal"].get<std::string>();
    line += base && !c["window_to"].is_null()
                ? "; restorable from " + c["window_from"].get<std::string>() + " to " + c["window_to"].get<std::string>()
                : "; no base backup yet (`make backup-base`): nothing can be restored to a moment";
    out += fmt::format("  {:<8} {:<6} {}\n", "wal", running && base ? "ok" : "FAIL", line);
  }
  return out;
}

std::vector<WalCheckItem> wal_check(const Config& config, const PgTarget& target) {
  std::vector<WalCheckItem> out;
  PgConnection conn = PgConnection::open(target);
  const std::string level = setting(conn, "wal_level");
  out.push_back({"wal_level", level != "minimal", level == "minimal" ? "minimal: set wal_level = replica (a restart)" : level});
  const std::string senders = setting(conn, "max_wal_senders");
  out.push_back({"max_wal_senders", senders != "0", senders == "0" ? "0: set max_wal_senders = 10 (a restart)" : senders});
  const std::string keep = setting(conn, "max_slot_wal_keep_size");
  const bool bounded = keep != "-1";
  out.push_back({"max_slot_wal_keep_size", bounded || config.wal_allow_unbounded_slot,
                 bounded ? keep + " MB"
                 : config.wal_allow_unbounded_slot ? "-1 (unbounded; accepted by WAL_ALLOW_UNBOUNDED_SLOT=yes)"
                                                   : "-1 (unbounded): set it, e.g. '10GB', or WAL_ALLOW_UNBOUNDED_SLOT=yes"});
  const std::string replication = conn.scalar("SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user");
  out.push_back({"REPLICATION role", replication == "t", replication == "t" ? conn.scalar("SELECT current_user") : kReplicationHint});
  try {
    SystemIdentity id = PgConnection::open(target, Session::replication).identify_system();
    out.push_back({"replication connection", true, "cluster " + std::to_string(id.system_identifier) + ", timeline " +
                                                       std::to_string(id.timeline)});
  } catch (const Error& e) {
    out.push_back({"replication connection", false, std::string(e.what()) + " — " + kReplicationHint});
  }
  PgRows slot = conn.query("SELECT coalesce(wal_status, '') FROM pg_replication_slots WHERE slot_name = $1", {config.wal_slot});
  out.push_back({"slot " + config.wal_slot, slot.empty() || slot[0][0].value_or("") != "lost",
                 slot.empty() ? "not there yet (`wal stream` creates it)" : "wal_status " + slot[0][0].value_or("")});
  return out;
}

int wal_stream(const Config& config, const PgTarget& target) {
  if (!config.wal_stream) {
    throw Error(ErrorCode::usage, "continuous protection is off (BACKUP_WAL=off)", "set BACKUP_WAL=stream to run the WAL receiver");
  }
  int failures = 0;
  for (;;) {
    bool stop = false;
    const auto started = std::chrono::steady_clock::now();
    try {
      PgConnection conn = PgConnection::open(target);
      const SystemIdentity id = PgConnection::open(target, Session::replication).identify_system();
      const PgTool tool = find_pg_tool("pg_receivewal", conn.server_major(), config);
      ensure_slot(config, conn);
      WalArchive archive(config.backup_dir, id.system_identifier);
      make_dirs(archive.incoming(), 0700);
      Fd lock = lock_receiver(archive);
      spdlog::info("wal: receiving the WAL of cluster {} (timeline {}, at {}) into {} through slot {}", id.system_identifier,
                   id.timeline, id.wal_position, archive.dir().string(), config.wal_slot);
      stop = receive_once(config, target, archive, tool);
    } catch (const Error& e) {
      if (e.code() == ErrorCode::interrupted) return 0;
      if (e.code() == ErrorCode::usage) throw;  // nothing a retry would change
      spdlog::warn("wal: {}{}", e.what(), e.hint().empty() ? "" : " (" + e.hint() + ")");
    }
    if (stop) {
      spdlog::info("wal: stopped");
      return 0;
    }
    if (std::chrono::steady_clock::now() - started > std::chrono::seconds(30)) failures = 0;
    const int wait = std::min(kMaxBackoffSeconds, 1 << std::min(failures++, 6));
    spdlog::warn("wal: the receiver stopped; trying again in {} s", wait);
    if (sleep_or_stop(wait * 1000)) return 0;
  }
}

}  // namespace backupctl
