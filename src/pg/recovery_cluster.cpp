#include "pg/recovery_cluster.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <libpq-fe.h>
#include <pwd.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <iterator>
#include <fstream>
#include <regex>
#include <set>
#include <thread>

#include "pg/tools.hpp"
#include "tar/tar.hpp"
#include "util/error.hpp"
#include "util/fd.hpp"
#include "util/fs.hpp"
#include "util/process.hpp"
#include "util/signals.hpp"
#include "util/words.hpp"

namespace backupctl {

namespace fs = std::filesystem;

namespace {

constexpr int kPort = 5432;  // names only the socket file in our private folder
constexpr const char* kServiceRoot = "/tmp/backupctl-pitr.";  // + run tag, in a service's container
constexpr const char* kStagedMarker = ".staged";  // in wal/: every segment is there
constexpr const char* kExpectedList = ".expected";  // in wal/: the names that will be staged

std::vector<std::string> concat(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// A path PostgreSQL's configuration and restore_command (a shell's double quotes) can quote: no
// quotes, backslashes, percent signs, $, backticks or control characters.
void require_plain_path(const fs::path& p) {
  for (char c : p.string()) {
    if (c == '\'' || c == '"' || c == '\\' || c == '%' || c == '$' || c == '`' || static_cast<unsigned char>(c) < 0x20) {
      throw Error(ErrorCode::usage,
                  "the recovery folder " + p.string() + " has a quote, backslash, %, $, backtick or control character",
                  "set PITR_WORK_DIR to a plain path");
    }
  }
}

// A tar entry's path as a relative path with no ".." segment ("." segments dropped:
// pg_basebackup writes the WAL it fetched as ./pg_wal/...); nullopt otherwise.
std::optional<fs::path> safe_relative(std::string path) {
  while (path.ends_with('/')) path.pop_back();
  if (path.empty() || path.starts_with('/')) return std::nullopt;
  fs::path out;
  for (const auto& part : fs::path(path)) {
    const std::string s = part.string();
    if (s == "..") return std::nullopt;
    if (s.empty() || s == ".") continue;
    out /= part;
  }
  if (out.empty()) return std::nullopt;
  return out;
}

void write_text(const fs::path& p, const std::string& text) {
  std::ofstream f(p, std::ios::trunc);
  f << text;
  f.close();
  if (!f) throw Error(ErrorCode::io, "cannot write " + p.string());
}

std::string read_tail(const fs::path& p, std::size_t bytes) {
  std::ifstream f(p, std::ios::binary);
  if (!f) return "";
  f.seekg(0, std::ios::end);
  const auto size = static_cast<std::size_t>(f.tellg());
  const std::size_t from = size > bytes ? size - bytes : 0;
  f.seekg(static_cast<std::streamoff>(from));
  std::string out(size - from, '\0');
  f.read(out.data(), static_cast<std::streamsize>(out.size()));
  return out;
}

// The most telling line of a server log: the last FATAL, else the last line.
std::string log_reason(const std::string& log) {
  std::string last, fatal;
  std::size_t start = 0;
  while (start < log.size()) {
    std::size_t nl = log.find('\n', start);
    std::string line = log.substr(start, nl == std::string::npos ? std::string::npos : nl - start);
    if (!line.empty()) last = line;
    if (line.find("FATAL:") != std::string::npos || line.find("PANIC:") != std::string::npos) fatal = line;
    if (nl == std::string::npos) break;
    start = nl + 1;
  }
  return fatal.empty() ? last : fatal;
}

}  // namespace

std::string RecoveryTarget::describe() const {
  switch (kind) {
    case Kind::time: return value;
    case Kind::lsn: return "LSN " + value;
    case Kind::latest: break;
  }
  return "the end of the WAL kept";
}

std::string RecoveryServer::describe() const {
  const std::string postgres = (bindir / "postgres").string();
  return in_service() ? postgres + " in the compose service " + service : postgres;
}

RecoveryServer find_service_server(const std::vector<std::string>& service_exec, const std::string& service, int major) {
  const std::vector<std::string> dirs = {"/usr/lib/postgresql/" + std::to_string(major) + "/bin", "/usr/local/bin",
                                         "/usr/local/pgsql/bin"};
  std::string found, error;
  for (const auto& dir : dirs) {
    RunResult r = run_command({.argv = concat(service_exec, {dir + "/postgres", "--version"})});
    auto v = r.status.ok() ? parse_tool_version(r.out) : std::nullopt;
    if (v && v->major == major) return {dir, service_exec, service};
    if (v) found += (found.empty() ? "" : ", ") + dir + "/postgres " + v->version;
    if (!v && error.empty()) error = first_line(last_lines(r.err.empty() ? r.out : r.err, 1));
  }
  if (!found.empty()) {
    throw Error(ErrorCode::not_found,
                fmt::format("the compose service {} has no PostgreSQL {} server ({})", service, major, found),
                "the base backup is of another major version than the stack's server: restore it where that version runs");
  }
  throw Error(ErrorCode::not_found, fmt::format("cannot run the PostgreSQL {} server in the compose service {}: {}", major, service, error),
              "is the stack up? PG_SERVICE names the service that runs PostgreSQL (its image must have "
              "/usr/lib/postgresql/" + std::to_string(major) + "/bin/postgres or postgres in /usr/local/bin)");
}

bool service_server_bindir(const std::string& bindir) {
  static const std::regex ok(R"(/usr/lib/postgresql/[0-9]{1,3}/bin|/usr/local/bin|/usr/local/pgsql/bin)");
  return std::regex_match(bindir, ok);
}

bool is_service_recovery_root(const std::string& path) {
  static const std::regex ok(R"(/tmp/backupctl-pitr\.[0-9A-Za-z]+(\.[0-9A-Za-z]+)*)");
  return std::regex_match(path, ok);
}

std::string service_recovery_root() { return kServiceRoot + run_tag(); }

RecoveryCluster::RecoveryCluster(fs::path root, RecoveryServer where) : m_root(std::move(root)), m_where(std::move(where)) {
  require_plain_path(m_root);
  m_server_root = m_where.in_service() ? service_recovery_root() : m_root.string();
  if (!m_where.in_service() && ::geteuid() == 0) {
    struct passwd* pw = ::getpwnam("postgres");
    if (!pw) {
      throw Error(ErrorCode::usage, "running as root, the temporary server needs a `postgres` user (PostgreSQL refuses root)",
                  "install the PostgreSQL server package (it creates the user), or run backupctl as another user");
    }
    m_uid = pw->pw_uid;
    m_gid = pw->pw_gid;
  }
  make_dirs(data_dir(), 0700);
  make_dirs(wal_dir(), 0700);
}

RecoveryCluster::~RecoveryCluster() {
  if (m_server && m_where.in_service()) {
    // Killing `compose exec` would leave the server running in the container: pg_ctl stops it.
    InterruptShield shield;
    try {
      run_command({.argv = program("pg_ctl", {"-D", m_server_root + "/data", "-m", "immediate", "-w", "-t", "30", "stop"})});
    } catch (const std::exception& e) {
      spdlog::warn("cannot stop the temporary server in the compose service {}: {}", m_where.service, e.what());
    }
  }
  if (m_server) {
    m_server->kill(SIGQUIT);  // immediate shutdown: the folder goes next
    try {
      m_server->wait();
    } catch (...) {  // a signal: the Child's destructor reaps it
    }
  }
}

namespace {

// The database's OID from "base/<oid>" or below.
std::optional<std::uint32_t> database_folder(const fs::path& rel) {
  auto it = rel.begin();
  if (it == rel.end() || *it != "base" || ++it == rel.end()) return std::nullopt;
  const std::string oid = it->string();
  if (oid.empty() || oid.size() > 10 || oid.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
  const std::uint64_t n = std::stoull(oid);
  if (n > 0xffffffffu) return std::nullopt;
  return static_cast<std::uint32_t>(n);
}

// The OID of the database `rel` (a path in a data directory) is in, when it is a relation file
// of a database users made: "base/<oid>/<relfilenode>[_fsm|_vm|_init][.<segment>]" with the OID
// at least 16384 (FirstNormalObjectId: template0, template1 and postgres come before).
std::optional<std::uint32_t> user_database_relation(const fs::path& rel) {
  const auto oid = database_folder(rel);
  const std::string file = rel.filename().string();
  if (!oid || *oid < 16384 || std::distance(rel.begin(), rel.end()) != 3 || file.empty() ||
      !std::isdigit(static_cast<unsigned char>(file[0]))) {
    return std::nullopt;
  }
  return oid;
}

}  // namespace

void RecoveryCluster::unpack_base(io::Source& tar, std::optional<std::uint32_t> only_database) {
  m_zeroed.clear();
  m_kept_seen = false;
  TarReader reader(tar);
  TarEntry entry;
  std::vector<char> buf(1 << 20);
  std::set<fs::path> seen;
  while (reader.next(entry)) {
    check_interrupted();
    auto rel = safe_relative(entry.path);
    if (!rel) throw Error(ErrorCode::verification, "the base backup has an entry outside its folder: " + entry.path, "use another base backup");
    if (!seen.insert(*rel).second) {
      throw Error(ErrorCode::verification, "the base backup has " + entry.path + " twice", "use another base backup");
    }
    const fs::path dest = data_dir() / *rel;
    if (entry.type == "directory") {
      make_dirs(dest, 0700);
      continue;
    }
    if (!entry.regular) {
      throw Error(ErrorCode::verification,
                  "the base backup has a " + entry.type + " (" + entry.path + "): only folders and files belong in it",
                  "use another base backup");
    }
    make_dirs(dest.parent_path(), 0700);
    Fd fd(::open(dest.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!fd) throw_errno("cannot create " + dest.string());
    std::uint64_t written = 0;
    if (only_database && database_folder(*rel) == only_database) m_kept_seen = true;
    const auto other = only_database ? user_database_relation(*rel) : std::nullopt;
    if (other && *other != *only_database) {
      m_zeroed.insert(*other);
      // Read past (the hash of the whole file still needs every byte), nothing written.
      for (std::size_t n; (n = reader.read(buf)) > 0;) written += n;
      if (written == entry.size && ::ftruncate(fd.get(), static_cast<off_t>(written)) != 0) {
        throw_errno("cannot size " + dest.string());
      }
    } else {
      for (std::size_t n; (n = reader.read(buf)) > 0;) {
        write_all(fd.get(), buf.data(), n, dest.string());
        written += n;
      }
    }
    if (written != entry.size) throw Error(ErrorCode::verification, "the base backup ends inside " + entry.path, "use another base backup");
  }
  if (!fs::exists(data_dir() / "PG_VERSION") || !fs::exists(data_dir() / "global/pg_control")) {
    throw Error(ErrorCode::verification, "the base backup has no PG_VERSION or global/pg_control: not a data directory",
                "use another base backup");
  }
}

void RecoveryCluster::write_config(const RecoveryTarget& target) {
  const std::string& root = m_server_root;  // as the server sees it
  std::string conf =
      "# written by backupctl for a point-in-time restore; removed with this folder\n"
      "listen_addresses = ''\n"
      "port = " + std::to_string(kPort) + "\n"
      "unix_socket_directories = '" + root + "'\n"
      "hba_file = '" + root + "/hba.conf'\n"
      "ident_file = '" + root + "/ident.conf'\n"
      "max_connections = 20\n"
      "archive_mode = off\n"
      // A throwaway server: a crash means starting over from the base backup, so nothing it
      // writes needs to reach the disk; the replay's restartpoints and the checkpoint at its end
      // (every page the WAL touched) are then writes to the page cache, not fsyncs.
      "fsync = off\n"
      "synchronous_commit = off\n"
      "full_page_writes = off\n"
      // A restartpoint at every checkpoint record of the live server once 256 MiB were replayed:
      // each removes the segments replayed before it, so pg_wal/ holds about the WAL between two
      // of the live server's checkpoints, not all of it, and their pages are freed before they
      // are written back (measured on bench/pitr.sh's 3.2 GB of WAL: replay 16-19 s with 16 GB,
      // 15.5-15.9 s with 256 MB; pg_wal/ peaked at 3.2 GB with 16 GB and at 1.4 GB with 1 GB).
      "max_wal_size = '256MB'\n"
      "checkpoint_timeout = '1h'\n"
      "shared_buffers = '256MB'\n"
      "autovacuum = off\n"  // the dump that follows is all it serves: no worker competes with it
      "hot_standby = off\n"  // no connection before recovery ended: one that works means promoted
      "restore_command = '" + restore_command() + "'\n"
      "recovery_target_action = 'promote'\n"
      "recovery_target_timeline = 'current'\n";
  if (!m_zeroed.empty()) conf += "ignore_invalid_pages = on\n";  // see zeroed_databases()
  if (target.kind == RecoveryTarget::Kind::time) conf += "recovery_target_time = '" + target.value + "'\n";
  if (target.kind == RecoveryTarget::Kind::lsn) conf += "recovery_target_lsn = '" + target.value + "'\n";
  write_text(m_root / "server.conf", conf);
  write_text(m_root / "hba.conf", "local all all trust\n");
  write_text(m_root / "ident.conf", "");
  // ALTER SYSTEM settings of the live server (preloaded libraries, ports) do not apply here.
  write_text(data_dir() / "postgresql.auto.conf", "");
  std::error_code ec;
  fs::remove(data_dir() / "standby.signal", ec);
  fs::remove(data_dir() / "postmaster.pid", ec);
  write_text(data_dir() / "recovery.signal", "");
}

void RecoveryCluster::own(const fs::path& p) const {
  if (m_uid < 0 || m_where.in_service()) return;
  if (::lchown(p.c_str(), static_cast<uid_t>(m_uid), static_cast<gid_t>(m_gid)) != 0) throw_errno("chown " + p.string());
}

void RecoveryCluster::own_tree() {
  if (m_uid < 0 || m_where.in_service()) return;
  own(m_root);
  // wal/'s files are the stager's, which owns each as it adds it (add_wal): it may be renaming
  // one this very moment.
  for (auto it = fs::recursive_directory_iterator(m_root); it != fs::recursive_directory_iterator(); ++it) {
    own(it->path());
    if (it->path() == wal_dir()) it.disable_recursion_pending();
  }
}

std::string RecoveryCluster::restore_command() const {
  // In a service's container the WAL was moved into pg_wal/ before the folder was shipped.
  if (m_where.in_service()) return "false";
  // Here the server starts as soon as the base backup is unpacked and replays while the rest of
  // the WAL is staged (a core each): it waits for each segment in wal/ and takes it with a
  // rename. Only a name in wal/.expected (expect_wal()) is waited for: any other (a segment the
  // base backup's tar carries, another timeline's name, a history file) fails at once, and
  // PostgreSQL looks in pg_wal/, as with nothing staged; waiting for it could wait for ever on a
  // stager that waits for room. It also gives up once wal/.staged says every one is there (one
  // that failed its check), and when the folder went away or the process that asked is gone (a
  // killed run, its server stopped by the repair).
  const std::string w = wal_dir().string();
  return "w=\"" + w + "\"; grep -qxF \"%f\" \"$w/" + kExpectedList + "\" || exit 1; while [ ! -e \"$w/%f\" ] && [ ! -e \"$w/" +
         kStagedMarker + "\" ] && [ -d \"$w\" ] && kill -0 $PPID 2>/dev/null; do sleep 0.05; done; exec mv \"$w/%f\" \"%p\"";
}

void RecoveryCluster::add_wal(const fs::path& staged, const std::string& name) const {
  own(staged);
  fs::rename(staged, wal_dir() / name);
}

void RecoveryCluster::expect_wal(const std::vector<std::string>& names) const {
  std::string list;
  for (const auto& n : names) list += n + "\n";
  const fs::path file = wal_dir() / kExpectedList;
  write_file_atomic(file, list, 0600);
  own(file);
}

void RecoveryCluster::wal_staged() const {
  const fs::path marker = wal_dir() / kStagedMarker;
  Fd fd(::open(marker.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fd) throw_errno("cannot create " + marker.string());
  own(marker);
}

int RecoveryCluster::port() const { return kPort; }

std::vector<std::string> RecoveryCluster::program(const std::string& name, std::vector<std::string> args) const {
  args.insert(args.begin(), (m_where.bindir / name).string());
  return concat(m_where.service_exec, args);
}

void RecoveryCluster::ship() {
  // mkdir without -p: a folder that is there already is never taken over. 0711: pg_dump, run as
  // the service's user, reaches the socket in it; data/ inside stays the server's alone.
  RunResult made = run_command({.argv = concat(m_where.service_exec, {"mkdir", "-m", "0711", m_server_root})});
  if (!made.status.ok()) {
    throw Error(ErrorCode::tool_failed,
                "cannot make " + m_server_root + " in the compose service " + m_where.service + ": " + first_line(made.err),
                "the service's container needs a writable /tmp with room for the database");
  }
  spdlog::info("restore: copying the recovery folder into the compose service {} ({})", m_where.service, m_server_root);
  MemFile err("stderr");
  SpawnOptions spawn{.argv = concat(m_where.service_exec, {"tar", "-x", "-f", "-", "-C", m_server_root})};
  spawn.in = Stdio::pipe;
  spawn.out = Stdio::null;
  spawn.err_fd = err.fd();
  Child tar = Child::spawn(spawn);
  {
    io::ChildStdinSink sink(tar.stdin_pipe(), "tar");
    TarWriter out(sink, TarCompression::none, 0);
    std::vector<char> buf(1 << 20);
    for (const auto& e : fs::recursive_directory_iterator(m_root)) {
      check_interrupted();
      const std::string rel = e.path().lexically_relative(m_root).string();
      const std::time_t mtime = std::time(nullptr);
      if (e.is_directory()) {
        out.add_directory(rel, 0700, mtime);
        continue;
      }
      Fd in = open_read(e.path());
      out.begin(rel, e.file_size(), mtime, false, 0600);
      for (ssize_t n; (n = ::read(in.get(), buf.data(), buf.size())) != 0;) {
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) throw_errno("cannot read " + e.path().string());
        out.write(std::span<const char>(buf.data(), static_cast<std::size_t>(n)));
      }
      out.end();
    }
    out.close();
  }
  const ExitStatus status = tar.wait();
  if (!status.ok()) {
    throw Error(ErrorCode::tool_failed, "tar in the compose service " + m_where.service + " failed (" + status.describe() +
                "): " + first_line(last_lines(err.read_all(), 1)), "the service's container needs tar and room in /tmp for the database");
  }
  // Room here: only server.log is written from now on.
  std::error_code ec;
  fs::remove_all(data_dir(), ec);
  fs::remove_all(wal_dir(), ec);
}

bool RecoveryCluster::accepting() {
  if (m_where.in_service()) {
    return run_command({.argv = program("pg_isready", {"-q", "-h", m_server_root, "-p", std::to_string(kPort), "-d", "postgres", "-t", "2"})})
        .status.ok();
  }
  const std::string port = std::to_string(kPort), host = m_root.string();
  const char* keys[] = {"host", "port", "dbname", "connect_timeout", nullptr};
  const char* values[] = {host.c_str(), port.c_str(), "postgres", "2", nullptr};
  return PQpingParams(keys, values, 0) == PQPING_OK;
}

void RecoveryCluster::move_wal_into_pg_wal() {
  // For a server in a compose service's container (the folder is shipped whole, after the WAL
  // was staged): it reads the WAL from pg_wal/ itself, as in crash recovery, with no
  // restore_command (which would copy every segment once more). A staged segment replaces the
  // base backup's copy of it (pg_basebackup -X fetch carries the ones it needs to be consistent):
  // the last of those is the server's file as it was when the backup ended, whose tail is stale
  // when no segment switch ended the backup (one taken from a standby), and replay would stop
  // there. So the bytes replayed are the ones restore_command gives on this host, first.
  const fs::path pg_wal = data_dir() / "pg_wal";
  make_dirs(pg_wal, 0700);
  for (const auto& e : fs::directory_iterator(wal_dir())) {
    if (!e.path().filename().string().starts_with(".")) fs::rename(e.path(), pg_wal / e.path().filename());
  }
}

void RecoveryCluster::start(const RecoveryTarget& target) {
  if (m_where.in_service()) move_wal_into_pg_wal();
  write_config(target);
  ::chmod(data_dir().c_str(), 0700);
  own_tree();
  if (m_where.in_service()) ship();
  Fd log(::open((m_root / "server.log").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
  if (!log) throw_errno("cannot create " + (m_root / "server.log").string());
  if (m_uid >= 0 && ::fchown(log.get(), static_cast<uid_t>(m_uid), static_cast<gid_t>(m_gid)) != 0) {
    throw_errno("chown server.log");
  }
  std::vector<std::string> argv =
      program("postgres", {"-D", m_server_root + "/data", "-c", "config_file=" + m_server_root + "/server.conf"});
  if (m_uid >= 0 && !m_where.in_service()) argv.insert(argv.begin(), {"setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"});
  spdlog::info("restore: starting a temporary server in {}{} to recover to {}", m_server_root,
               m_where.in_service() ? " (in the compose service " + m_where.service + ")" : "", target.describe());
  m_server.emplace(Child::spawn({.argv = argv, .in = Stdio::null, .out_fd = log.get(), .err_fd = log.get()}));
}

void RecoveryCluster::wait_until_promoted(const std::function<void()>& check) {
  for (;;) {
    check_interrupted();
    if (check) check();
    if (auto status = m_server->try_wait()) {
      m_server.reset();
      const std::string reason = log_reason(log_tail());
      std::string hint = "the server log is " + (m_root / "server.log").string();
      if (reason.find("before configured recovery target") != std::string::npos ||
          reason.find("recovery target") != std::string::npos) {
        hint = "the WAL kept ends before that moment: choose an earlier one (`backupctl status` shows the window)";
      }
      throw Error(ErrorCode::tool_failed, "the temporary server stopped during recovery (" + status->describe() + "): " + reason, hint);
    }
    if (accepting()) return;  // hot_standby = off: a session is possible only once promoted
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

PgTarget RecoveryCluster::target(const PgTarget& like, const std::string& dbname) const {
  std::string user;
  for (const auto& [k, v] : like.params()) {
    if (k == "user") user = v;
  }
  if (user.empty()) {
    const char* u = std::getenv("PGUSER");
    user = u && *u ? u : "postgres";
  }
  return like.with_server(m_server_root, std::to_string(kPort), user).with_database(dbname);
}

void RecoveryCluster::stop() noexcept {
  if (!m_server) return;
  if (m_where.in_service()) {
    try {  // fast shutdown; the `compose exec` that runs it ends with it
      run_command({.argv = program("pg_ctl", {"-D", m_server_root + "/data", "-m", "fast", "-w", "-t", "60", "stop"})});
    } catch (const std::exception&) {  // the SIGKILL below, then the journal's repair
    }
  } else {
    m_server->kill(SIGINT);  // fast shutdown
  }
  m_server->wait_for(std::chrono::seconds(60), std::chrono::milliseconds(100));
  m_server->kill(SIGKILL);
  m_server.reset();
}

std::string RecoveryCluster::log_tail() const { return read_tail(m_root / "server.log", 8192); }

std::string RecoveryCluster::invalid_page_outside_zeroed() const {
  // xlogutils.c's report_invalid_page(): "page 12 of relation base/16463/16490 is uninitialized"
  // (or "does not exist", "was uninitialized"); the path is relative to the data directory.
  static const std::regex invalid(R"(page \d+ of relation (\S+) (is uninitialized|was uninitialized|does not exist))");
  std::ifstream log(m_root / "server.log");
  std::string line;
  while (std::getline(log, line)) {
    std::smatch m;
    if (!std::regex_search(line, m, invalid)) continue;
    const auto oid = database_folder(fs::path(std::string(m[1])));
    if (!oid || !m_zeroed.count(*oid) || !fs::path(std::string(m[1])).string().starts_with("base/")) return line;
  }
  return "";
}

std::string remove_recovery_cluster(const fs::path& root) {
  std::error_code ec;
  if (!fs::exists(fs::symlink_status(root, ec))) return "";
  std::string did;
  // The postmaster of a killed run (as root it ran under another user: it did not die with us).
  std::ifstream pidfile(root / "data/postmaster.pid");
  long pid = 0;
  if (pidfile >> pid && pid > 1) {
    // Only a process working in this data directory is ours (the pid may be another's by now).
    auto runs_here = [&] {
      std::error_code e2;
      fs::path cwd = fs::read_symlink("/proc/" + std::to_string(pid) + "/cwd", e2);
      return !e2 && fs::equivalent(cwd, root / "data", e2);
    };
    if (runs_here()) {
      ::kill(static_cast<pid_t>(pid), SIGQUIT);  // immediate shutdown
      for (int i = 0; i < 100 && runs_here(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
      if (runs_here()) ::kill(static_cast<pid_t>(pid), SIGKILL);
      did = "stopped the temporary server (pid " + std::to_string(pid) + "), ";
    }
  }
  fs::remove_all(root, ec);
  if (ec) throw Error(ErrorCode::io, "cannot remove " + root.string() + ": " + ec.message());
  return did + "removed " + root.string();
}

std::string remove_service_recovery(const std::vector<std::string>& service_exec, const std::string& server_root,
                                    const std::string& bindir) {
  // Fails when no server runs there (the usual case: it was stopped, or died with its container).
  RunResult stop = run_command(
      {.argv = concat(service_exec, {bindir + "/pg_ctl", "-D", server_root + "/data", "-m", "immediate", "-w", "-t", "30", "stop"})});
  RunResult rm = run_command({.argv = concat(service_exec, {"rm", "-rf", server_root})});
  if (!rm.status.ok()) {
    throw Error(ErrorCode::tool_failed, "cannot remove " + server_root + " in the compose service: " + first_line(rm.err),
                "is the stack up? the next command tries again");
  }
  return (stop.status.ok() ? "stopped the temporary server in the compose service and removed " : "removed ") + server_root +
         " there";
}

}  // namespace backupctl
