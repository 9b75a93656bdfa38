#include "command/wal_stream.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <signal.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <functional>
#include <optional>
#include <thread>

#include "command/backup_base.hpp"
#include "command/wal_push.hpp"
#include "command/wal_status.hpp"
#include "command/wal_sync_guard.hpp"
#include "monitor/state.hpp"
#include "pg/wal_archive.hpp"
#include "pg/connection.hpp"
#include "pg/wal_receiver.hpp"
#include "util/error.hpp"
#include "util/fd.hpp"
#include "util/fs.hpp"
#include "util/process.hpp"
#include "util/background.hpp"
#include "util/signals.hpp"

namespace backupctl {

namespace fs = std::filesystem;

namespace {

constexpr int kMaxBackoffSeconds = 60;

// Sleeps up to `ms`, returning early (true) when SIGINT or SIGTERM arrived.
// A receiver asked to stop (SIGTERM from systemd or compose, SIGINT, or SIGHUP when the terminal
// it ran in went away) ends cleanly: what it received is on disk, the unfinished segment kept.
// Exit 0; the log says why, so a hangup is not mistaken for an operator's stop.
int stopped() {
  const int sig = interrupt_signal();
  if (sig == SIGHUP) {
    spdlog::warn("wal: stopped by SIGHUP (the terminal or SSH session went away): everything received is on "
                 "disk; start `backupctl wal stream` again (as a systemd unit or the compose service it outlives a session)");
  } else {
    spdlog::info("wal: stopped{}", sig ? " by " + signal_name(sig) : "");
  }
  return 0;
}

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
// grow without bound unless the operator said so. True when the slot had lost WAL and was made
// again: there is a gap, which only a new base backup closes.
bool ensure_slot(const Config& config, PgConnection& conn) {
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
    return false;
  }
  if (rows[0][0].value_or("") == "lost") {
    // The server removed WAL the slot still needed: there is a gap. A new slot starts after it;
    // restores to moments before the gap need an earlier base backup, after it a new one.
    spdlog::error("wal: the slot {} lost WAL the server removed (max_slot_wal_keep_size); recreating it. "
                  "There is a gap in the WAL kept: a base backup starts now to close it",
                  config.wal_slot);
    conn.query("SELECT pg_drop_replication_slot($1)", {config.wal_slot});
    conn.query("SELECT pg_create_physical_replication_slot($1, true)", {config.wal_slot});
    return true;
  }
  return false;
}

// `backupctl backup base` run by the receiver (a process of its own: it takes BACKUP_DIR's lock,
// prunes and copies off-site like a scheduled one). Retried by the next round while it fails.
class BaseBackupRun {
 public:
  void start() {
    std::error_code ec;
    const std::string self = fs::canonical("/proc/self/exe", ec).string();
    if (ec) return spdlog::error("wal: cannot start the base backup: {}", ec.message());
    spdlog::info("wal: starting `backupctl backup base` to close the gap");
    m_child.emplace(Child::spawn({.argv = {self, "backup", "base"}, .in = Stdio::null, .out = Stdio::null, .err = Stdio::inherit}));
  }
  bool running() const { return m_child.has_value(); }
  // Whether it ended (and how), without waiting.
  void poll() {
    if (!m_child) return;
    if (auto status = m_child->try_wait()) {
      if (status->ok()) {
        spdlog::info("wal: the base backup is done; the window starts again at its end");
        m_pending = false;
      } else {
        spdlog::error("wal: the base backup failed ({}); trying again in a minute", status->describe());
        m_retry_at = std::chrono::steady_clock::now() + std::chrono::minutes(1);
      }
      m_child.reset();
    }
  }
  void need() { m_pending = true; }
  // Starts it when it is needed, not running, and not waiting for a retry.
  void round() {
    poll();
    if (m_pending && !m_child && std::chrono::steady_clock::now() >= m_retry_at) start();
  }
  void stop() {
    if (!m_child) return;
    m_child->kill(SIGTERM);
    m_child->wait();
    m_child.reset();
  }

 private:
  std::optional<Child> m_child;
  bool m_pending = false;
  std::chrono::steady_clock::time_point m_retry_at{};
};

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

// The off-site side of the receiver: each archived segment goes to the remote at once, the
// unfinished one every WAL_PUSH_INTERVAL. A remote that fails is retried on the next round and
// never stops the receiving (status says how old the remote's WAL is).
class OffSite {
 public:
  OffSite(const Config& config, const WalArchive& archive) : m_config(config) {
    if (!config.remote) return;
    if (auto why = wal_push_refused(config)) {
      spdlog::error("wal: not copying the WAL to {}: {}", config.remote->url, *why);
      return;
    }
    m_remote = make_remote(config);
    m_pusher.emplace(config, *m_remote, archive);
  }

  // After each archiving round; `archived`: segments were archived in it.
  void round(bool archived) {
    if (!m_pusher) return;
    const auto now = std::chrono::steady_clock::now();
    const bool due = now - m_last >= std::chrono::seconds(m_config.wal_push_interval);
    if (!archived && !due) return;
    if (now < m_retry_at) return;
    try {
      m_pusher->push_all();
      m_last = now;
      if (m_failing) spdlog::info("wal: copying to {} again", m_config.remote->url);
      m_failing = false;
    } catch (const Error& e) {
      if (e.code() == ErrorCode::interrupted) throw;
      failed(now, std::string(e.what()) + (e.hint().empty() ? "" : " (" + e.hint() + ")"));
    } catch (const std::exception& e) {
      failed(now, e.what());  // whatever it is, the receiving goes on
    }
  }

 private:
  void failed(std::chrono::steady_clock::time_point now, const std::string& why) {
    if (!m_failing) spdlog::warn("wal: cannot copy the WAL to {}: {} (retrying)", m_config.remote->url, why);
    m_failing = true;
    m_retry_at = now + std::chrono::seconds(5);
  }

 private:
  const Config& m_config;
  std::unique_ptr<Remote> m_remote;
  std::optional<WalPusher> m_pusher;
  std::chrono::steady_clock::time_point m_last{}, m_retry_at{};
  bool m_failing = false;
};

// BACKUP_METRICS_FILE kept fresh by the receiver (every 15 s): the RPO and the receiver's state
// are only as current as the file, and the scheduled runs write it once a day.
class MetricsFile {
 public:
  explicit MetricsFile(const Config& config) : m_config(config) {}
  void round() {
    if (m_config.metrics_file.empty()) return;
    const auto now = std::chrono::steady_clock::now();
    if (now - m_last < std::chrono::seconds(15)) return;
    m_last = now;
    try {
      write_metrics_file(m_config, RunState::load(m_config.backup_dir), wal_metrics(m_config, Clock::now()));
    } catch (const Error& e) {
      if (e.code() == ErrorCode::interrupted) throw;
      spdlog::warn("wal: cannot write BACKUP_METRICS_FILE: {}", e.what());
    } catch (const std::exception& e) {
      spdlog::warn("wal: cannot write BACKUP_METRICS_FILE: {}", e.what());
    }
  }

 private:
  const Config& m_config;
  std::chrono::steady_clock::time_point m_last{};
};

// One stream, received on a thread of its own (an fsync or a slow remote on this one never holds
// the WAL back), while this one archives finished segments every second, copies them off-site,
// runs a due base backup and keeps the metrics fresh. Returns true when asked to stop.
bool receive_once(const Config& config, WalReceiver& receiver, const WalStreamStart& start, WalArchive& archive,
                  BaseBackupRun& base, SyncGuard* guard) {
  OffSite off_site(config, archive);
  MetricsFile metrics(config);
  BackgroundTask receiving([&](const std::atomic<bool>& stop) { receiver.run(start, stop); });
  for (;;) {
    if (sleep_or_stop(1000)) {
      InterruptShield shield;  // everything received is fsynced before we go
      if (guard) guard->stop();  // first: no commit waits for a receiver that is going
      receiving.stop();
      receiving.join();
      base.stop();
      archive.archive_incoming();
      return true;
    }
    const auto archived = archive.archive_incoming();
    for (const auto& name : archived) spdlog::info("wal: archived {}", name);
    off_site.round(!archived.empty());
    base.round();
    metrics.round();
    if (guard) guard->round();
    if (receiving.ended()) {
      for (const auto& name : archive.archive_incoming()) spdlog::info("wal: archived {}", name);
      receiving.rethrow();
      spdlog::warn("wal: the server ended the stream");
      return false;
    }
  }
}

std::optional<Lsn> slot_restart(PgConnection& conn, const std::string& slot) {
  PgRows rows = conn.query("SELECT restart_lsn FROM pg_replication_slots WHERE slot_name = $1", {slot});
  if (rows.empty() || !rows[0][0]) return std::nullopt;
  return parse_lsn(*rows[0][0]);
}

}  // namespace

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
  if (config.wal_synchronous) {
    const std::string why = sync_refusal(conn, config.wal_slot);
    out.push_back({"WAL_SYNCHRONOUS", why.empty(),
                   why.empty() ? fmt::format("commits will wait for the receiver (at most {} s when it stops flushing)",
                                             kFallbackAfter.count())
                               : why});
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
  BaseBackupRun base;
  std::optional<SyncGuard> guard;  // WAL_SYNCHRONOUS=yes: started once the server allows it
  bool from_slot = false;  // the server no longer has where we left off: a gap, resume at the slot
  for (;;) {
    bool stop = false;
    const auto started = std::chrono::steady_clock::now();
    try {
      PgConnection conn = PgConnection::open(target);
      PgConnection replication = PgConnection::open(target, Session::replication);
      const SystemIdentity id = replication.identify_system();
      const std::uint64_t segment_size = std::stoull(setting(conn, "wal_segment_size"));
      if (ensure_slot(config, conn)) base.need();
      WalArchive archive(config.backup_dir, id.system_identifier);
      make_dirs(archive.incoming(), 0700);
      Fd lock = lock_receiver(archive);
      // After the lock: a second receiver, refused, never starts a guard that would take the
      // first one's setting for its own and clear it.
      if (config.wal_synchronous && !guard) {
        if (std::string why = sync_refusal(conn, config.wal_slot); !why.empty()) {
          throw Error(ErrorCode::usage, "WAL_SYNCHRONOUS=yes: " + why, "or set WAL_SYNCHRONOUS=no (commits then never wait for the receiver)");
        }
        guard.emplace();
      }
      // After a gap the files kept say nothing of where to resume: the slot does.
      const WalStreamStart start =
          wal_stream_start(from_slot ? std::vector<std::string>{} : archive.segments(),
                           from_slot ? std::nullopt : archive.partial(), id.timeline,
                           parse_lsn(id.wal_position).value_or(0), slot_restart(conn, config.wal_slot), segment_size);
      spdlog::info("wal: receiving the WAL of cluster {} (timeline {}, from {}) into {} through slot {}", id.system_identifier,
                   start.timeline, format_lsn(start.position), archive.dir().string(), config.wal_slot);
      WalReceiver receiver(std::move(replication), archive.incoming(), config.wal_slot, segment_size, guard.has_value());
      from_slot = false;
      try {
        stop = receive_once(config, receiver, start, archive, base, guard ? &*guard : nullptr);
      } catch (const Error& e) {
        // WAL we never received is gone from the server (the slot was lost while we were away):
        // only a base backup closes that gap; the receiving starts again at the slot.
        if (std::string(e.what()).find("has already been removed") == std::string::npos) throw;
        spdlog::error("wal: the server no longer has the WAL after {}: there is a gap; resuming at the slot, "
                      "and a base backup starts now to close it ({})", format_lsn(start.position), e.what());
        from_slot = true;
        base.need();
        continue;
      }
    } catch (const Error& e) {
      if (e.code() == ErrorCode::interrupted) return stopped();
      if (e.code() == ErrorCode::usage) throw;  // nothing a retry would change
      spdlog::warn("wal: {}{}", e.what(), e.hint().empty() ? "" : " (" + e.hint() + ")");
    }
    if (stop) return stopped();
    if (std::chrono::steady_clock::now() - started > std::chrono::seconds(30)) failures = 0;
    const int wait = std::min(kMaxBackoffSeconds, 1 << std::min(failures++, 6));
    spdlog::warn("wal: the receiver stopped; trying again in {} s", wait);
    if (sleep_or_stop(wait * 1000)) {
      base.stop();
      return stopped();
    }
  }
}

}  // namespace backupctl
