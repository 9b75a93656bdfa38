// Crash safety: every command that changes live state, killed with SIGKILL at each of its named
// points (BACKUPCTL_FAULT, util/fault.hpp) and interrupted from outside by SIGKILL, SIGHUP,
// SIGTERM, SIGQUIT and a closed output pipe at random moments; then, after the NEXT command (any
// command: `list` here, which must repair before it lists): the live database exists, is either
// the old or the restored one and accepts connections; the services run; nothing is left behind
// (side and staging databases, journal, unfinished files, temporary folders, child processes).
//
// The points of each command are taken from a normal run (BACKUPCTL_FAULT_LOG) and compared with
// the list here, so a new point without a crash test fails this test.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <sstream>

#include "fixture.hpp"
#include "writer.hpp"

namespace backupctl::test {

namespace {

using Points = std::vector<std::string>;

// Files (recursively) under `dir` whose name contains one of `marks`.
std::vector<std::string> files_marked(const fs::path& dir, const std::vector<std::string>& marks) {
  std::vector<std::string> out;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    std::string name = it->path().filename().string();
    for (const auto& m : marks) {
      if (name.find(m) != std::string::npos) out.push_back(it->path().string());
    }
  }
  return out;
}

// The whole of a small /proc file, or "" when the process is gone.
std::string read_proc_file(const fs::path& p) {
  std::string out;
  int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return out;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

// Processes whose command line mentions `text` (a test's private folder), other than us.
std::vector<std::string> processes_mentioning(const std::string& text) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& de : fs::directory_iterator("/proc", ec)) {
    std::string pid = de.path().filename();
    if (pid.find_first_not_of("0123456789") != std::string::npos || pid == std::to_string(::getpid())) continue;
    // A process can exit between the listing and the read (the read then fails with ESRCH, which
    // libstdc++'s filebuf throws through an istreambuf_iterator): read by hand, a failure is "gone".
    std::string cmd = read_proc_file(de.path() / "cmdline");
    for (char& c : cmd) {
      if (c == '\0') c = ' ';
    }
    std::string st = read_proc_file(de.path() / "stat");
    bool zombie = st.find(") Z ") != std::string::npos;
    if (!zombie && cmd.find(text) != std::string::npos) out.push_back(pid + ": " + cmd);
  }
  return out;
}

// A live stack: PostgreSQL with `archive` (the backup holds 1000 documents; the live database 100
// before each restore, so a look tells which one is there), the writer as the services, a private
// TMPDIR for every run.
class Crash : public ::testing::Test {
 protected:
  PgCluster pg;
  TempDir dir;  // BACKUP_DIR
  TempDir tmp;  // TMPDIR
  Writer writer;
  fs::path dump;

  // Rows of the filler table (indexed, so each restore rebuilds the index). The named points need
  // no bulk: a kill there is exact. The tests that interrupt from outside need a load that lasts.
  virtual int big_rows() const { return 2000; }

  void SetUp() override {
    pg.create_database("archive");
    create_restore_tables(pg, "archive", big_rows());
    CliResult r = run_backupctl({"backup", "db", "--json"}, env());
    ASSERT_EQ(r.exit_code, 0) << r.err;
    dump = nlohmann::json::parse(r.out)["path"].get<std::string>();
  }

  EnvList env() const {
    EnvList e = backup_env(pg, "archive", dir.path());
    for (const auto& v : writer.service_env()) e.push_back(v);
    e.emplace_back("TMPDIR", tmp.path().string());
    e.emplace_back("CONFIRM", "YES");
    return e;
  }

  // The points a normal run of `args` passes, in order (repeats removed).
  Points points_of(const std::vector<std::string>& args, EnvList e) {
    fs::path log = tmp.path() / "points.log";
    fs::remove(log);
    e.emplace_back("BACKUPCTL_FAULT_LOG", log.string());
    CliResult r = run_backupctl(args, e);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    std::string text;
    std::error_code ec;
    if (fs::exists(log, ec)) text = read_file(log);
    fs::remove(log);
    Points out;
    for (const auto& p : split_lines(text)) {
      if (std::find(out.begin(), out.end(), p) == out.end()) out.push_back(p);
    }
    return out;
  }

  // Runs `args`, killed by SIGKILL at `point`; EXPECTs that it died there.
  void kill_at(const std::vector<std::string>& args, const std::string& point, EnvList e) {
    e.emplace_back("BACKUPCTL_FAULT", point);
    CliResult r = run_backupctl(args, e);
    EXPECT_EQ(r.exit_code, 128 + SIGKILL) << "did not die at " << point << ": " << r.err;
  }

  // The next command, which must repair first: `backupctl list`.
  CliResult next_command(const EnvList& e) {
    CliResult r = run_backupctl({"list"}, e);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r;
  }

  std::vector<std::string> databases() const {
    return split_lines(pg.psql("postgres", "SELECT datname || ':' || CASE WHEN datallowconn THEN 't' ELSE 'f' END FROM pg_database "
                                        "WHERE datname LIKE 'archive%' ORDER BY 1"));
  }

  int documents() const { return std::stoi(pg.psql("archive", "SELECT count(*) FROM documents")); }

  // What every crash must leave after the next command.
  void expect_nothing_left(const std::string& at) {
    EXPECT_TRUE(list_dir(dir.path() / "journal").empty()) << at << ": a journal is left: " << list_dir(dir.path() / "journal")[0];
    auto left = files_marked(dir.path(), {".partial", ".tmp.", ".backupctl-new", ".backupctl-prev", ".backupctl-tmp"});
    EXPECT_TRUE(left.empty()) << at << ": left " << left[0];
    auto tmp_left = list_dir(tmp.path());
    std::erase_if(tmp_left, [](const std::string& n) { return n == "points.log"; });
    EXPECT_TRUE(tmp_left.empty()) << at << ": left in TMPDIR " << tmp_left[0];
    auto procs = processes_mentioning(tmp.path().string());
    EXPECT_TRUE(procs.empty()) << at << ": still running " << procs[0];
    for (const auto& d : databases()) {
      EXPECT_EQ(d.find("__restore_"), std::string::npos) << at << ": a side database is left: " << d;
      EXPECT_EQ(d.find("_rehearsal"), std::string::npos) << at << ": a staging database is left: " << d;
    }
    CliResult status = run_backupctl({"status", "--json"}, env());
    auto j = nlohmann::json::parse(status.out, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << status.out << status.err;
    EXPECT_TRUE(j["repairs_pending"].empty()) << at << ": " << j["repairs_pending"].dump();
  }

  // The live database after the next command: there, accepting connections, `docs` documents.
  void expect_live(int docs, const std::string& at) {
    auto dbs = databases();
    EXPECT_NE(std::find(dbs.begin(), dbs.end(), "archive:t"), dbs.end())
        << at << ": no live database accepting connections: " << testing::PrintToString(dbs);
    EXPECT_EQ(documents(), docs) << at;
  }

  // Back to the state before a restore: 100 live documents, no kept copies, the writer running.
  void reset_live() {
    pg.psql("archive", "DELETE FROM documents WHERE id > 100");
    for (const auto& d : databases()) {
      std::string name = d.substr(0, d.find(':'));
      if (name != "archive") pg.psql("postgres", "DROP DATABASE \"" + name + "\"");
    }
    if (!writer.running()) writer.start(pg, "archive");
  }
};

// For the signals sent from outside at a moment, not at a point: a restore that takes seconds.
class CrashMidLoad : public Crash {
 protected:
  int big_rows() const override { return 200000; }
};

}  // namespace

TEST_F(Crash, RestoreDbAtEveryPoint) {
  const std::vector<std::string> args = {"restore", "db", "--file", dump.string()};
  reset_live();
  Points points = points_of(args, env());
  ASSERT_EQ(points, (Points{"restore-db.stop-services", "restore-db.roles", "restore-db.scratch-made", "restore-db.create-side",
                            "restore-db.load", "restore-db.analyze", "restore-db.swap", "swap.before-commit",
                            "restore-db.start-services", "restore-db.prune-previous"}));
  for (const auto& point : points) {
    reset_live();
    kill_at(args, point, env());
    CliResult next = next_command(env());
    EXPECT_NE(next.err.find("found an interrupted run: `restore db`"), std::string::npos) << point << ": " << next.err;
    EXPECT_NE(next.err.find("died in step"), std::string::npos) << next.err;
    // Once the swap's transaction committed the restored database is live; before, the old one.
    bool committed = point == "restore-db.start-services" || point == "restore-db.prune-previous";
    expect_live(committed ? 1000 : 100, point);
    if (point == "swap.before-commit") {
      EXPECT_NE(next.err.find("the swap had not committed"), std::string::npos) << next.err;
    }
    writer.expect_running();
    expect_nothing_left(point);
  }
}

// restore db --remote: the dump read as it downloads (from a folder remote; nothing is stored in
// BACKUP_DIR) and checked against the remote meta before the swap. Killed at each point, or
// interrupted by SIGTERM or SIGHUP, the live database is the old one until the swap committed.
TEST_F(Crash, RestoreDbFromTheRemoteAtEveryPoint) {
  TempDir offsite("backupctl-offsite");
  EnvList e = env();
  e.insert(e.end(), {{"BACKUP_REMOTE_URL", "file://" + offsite.path().string()}, {"BACKUP_REMOTE_ALLOW_PLAINTEXT", "yes"}});
  CliResult pushed = run_backupctl({"push", "--all"}, e);
  ASSERT_EQ(pushed.exit_code, 0) << pushed.err;
  for (const auto& n : list_dir(dump.parent_path())) fs::remove(dump.parent_path() / n);  // only the remote has it
  const std::vector<std::string> args = {"restore", "db", "--remote", "--file", dump.filename().string()};
  reset_live();
  Points points = points_of(args, e);
  ASSERT_EQ(points, (Points{"restore-db.stop-services", "restore-db.roles", "restore-db.scratch-made", "restore-db.create-side", "restore-db.load",
                            "restore-db.analyze", "restore-db.remote-checked", "restore-db.swap", "swap.before-commit",
                            "restore-db.start-services", "restore-db.prune-previous"}));
  for (const auto& point : points) {
    reset_live();
    kill_at(args, point, e);
    next_command(e);
    bool committed = point == "restore-db.start-services" || point == "restore-db.prune-previous";
    expect_live(committed ? 1000 : 100, point);
    writer.expect_running();
    expect_nothing_left(point);
    EXPECT_EQ(list_dir(dump.parent_path()), std::vector<std::string>{}) << point << ": the streamed dump was stored";
  }
  for (auto [sig, number] : {std::pair<const char*, int>{"TERM", SIGTERM}, {"HUP", SIGHUP}}) {
    for (const char* point : {"restore-db.load", "restore-db.remote-checked"}) {
      reset_live();
      EnvList signalled = e;
      signalled.insert(signalled.end(), {{"BACKUPCTL_FAULT", point}, {"BACKUPCTL_FAULT_SIGNAL", sig}});
      CliResult r = run_backupctl(args, signalled);
      EXPECT_EQ(r.exit_code, 128 + number) << sig << " at " << point << ": " << r.err;
      expect_live(100, point);
      writer.expect_running();
      expect_nothing_left(std::string(sig) + " at " + point);
    }
  }
}

TEST_F(Crash, RestoreDbInPlaceAtEveryPoint) {
  const std::vector<std::string> args = {"restore", "db", "--in-place", "--file", dump.string()};
  reset_live();
  Points points = points_of(args, env());
  ASSERT_EQ(points, (Points{"restore-db.stop-services", "restore-db.roles", "restore-db.scratch-made", "restore-db.safety-dump", "backup.publish",
                            "restore-db.drop", "restore-db.create", "restore-db.load", "restore-db.start-services"}));
  for (const auto& point : points) {
    reset_live();
    kill_at(args, point, env());
    CliResult next = next_command(env());
    // Killed after the drop, the live database is put back from the safety dump first.
    if (point == "restore-db.create" || point == "restore-db.load") {
      EXPECT_NE(next.err.find("put the safety dump"), std::string::npos) << point << ": " << next.err;
    }
    expect_live(point == "restore-db.start-services" ? 1000 : 100, point);
    writer.expect_running();
    expect_nothing_left(point);
  }
}

TEST_F(Crash, RestoreUndoAtEveryPoint) {
  reset_live();
  ASSERT_EQ(run_backupctl({"restore", "db", "--file", dump.string()}, env()).exit_code, 0);
  ASSERT_EQ(documents(), 1000);
  const std::vector<std::string> args = {"restore", "undo"};
  Points points = points_of(args, env());
  ASSERT_EQ(points, (Points{"restore-undo.stop-services", "restore-undo.swap", "swap.before-commit",
                            "restore-undo.start-services"}));
  for (const auto& point : points) {
    // Live: the restored 1000; kept: the 100 of before, which an undo puts back.
    if (documents() != 1000) {
      ASSERT_EQ(run_backupctl({"restore", "db", "--file", dump.string()}, env()).exit_code, 0);
    }
    ASSERT_EQ(documents(), 1000);
    kill_at(args, point, env());
    next_command(env());
    expect_live(point == "restore-undo.start-services" ? 100 : 1000, point);
    writer.expect_running();
    expect_nothing_left(point);
  }
}

TEST_F(CrashMidLoad, SignalsAndKillsFromOutsideAtRandomMoments) {
  // How long a restore takes here, to pick moments inside it.
  reset_live();
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(run_backupctl({"restore", "db", "--file", dump.string()}, env()).exit_code, 0);
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::mt19937 rng(20261201);
  std::uniform_real_distribution<double> moment(0.05, std::max(0.2, seconds * 0.9));
  for (int sig : {SIGKILL, SIGHUP, SIGTERM, SIGQUIT, SIGKILL, SIGHUP}) {
    reset_live();
    double at = moment(rng);
    Child c = spawn_backupctl({"restore", "db", "--file", dump.string()}, env());
    std::this_thread::sleep_for(std::chrono::duration<double>(at));
    ::kill(c.pid(), sig);
    c.drain();
    ExitStatus s = c.wait();
    std::string what = strsignal(sig) + std::string(" after ") + std::to_string(at) + " s";
    if (s.ok()) {
      // It finished before the signal came.
    } else if (sig == SIGKILL || s.signal == sig) {
      // SIGKILL; or another signal so early that backupctl had not installed its handlers yet
      // (nothing was changed then).
      EXPECT_EQ(s.signal, sig) << what;
    } else {
      // Handled like SIGTERM: cleaned up, services started, a non-zero exit naming the signal.
      EXPECT_EQ(s.code, 128 + sig) << what << ": " << c.stderr_tail();
      EXPECT_NE(c.stderr_tail().find("interrupted by SIG"), std::string::npos) << c.stderr_tail();
      // Nothing for the next command to repair: the run undid its own changes.
      EXPECT_TRUE(list_dir(dir.path() / "journal").empty()) << what;
    }
    CliResult next = next_command(env());
    auto dbs = databases();
    EXPECT_NE(std::find(dbs.begin(), dbs.end(), "archive:t"), dbs.end()) << what << ": " << testing::PrintToString(dbs);
    int docs = documents();
    EXPECT_TRUE(docs == 100 || docs == 1000) << what << ": " << docs;
    if (s.code == 128 + sig) {
      // Before the swap committed, the signal undid the restore; after, it let the restore finish.
      bool finished = c.stderr_tail().find("after the restore had finished") != std::string::npos;
      EXPECT_EQ(docs, finished ? 1000 : 100) << what << ": " << c.stderr_tail();
    }
    writer.expect_running();
    if (::testing::Test::HasFailure()) return;
    expect_nothing_left(what);
  }
}

TEST_F(CrashMidLoad, AClosedOutputPipeStopsTheRestoreLikeSigterm) {
  // `backupctl restore db ... | tee log` over SSH: the session drops, tee dies, our next write to
  // the pipe raises SIGPIPE. Handled like SIGTERM.
  reset_live();
  Pipe err = Pipe::create();
  EnvList e = env();
  std::vector<std::string> argv = {BACKUPCTL_BIN, "-v", "restore", "db", "--file", dump.string()};
  EnvList full = e;
  full.emplace_back("PATH", std::getenv("PATH"));
  Child c = Child::spawn({.argv = argv, .env = full, .out = Stdio::null, .err_fd = err.write.get()});
  err.write.reset();
  // Read until the restore has begun loading, then stop reading: close our end.
  std::string seen;
  char buf[4096];
  while (seen.find("restore: restore") == std::string::npos) {
    ssize_t n = ::read(err.read.get(), buf, sizeof buf);
    if (n <= 0) break;
    seen.append(buf, static_cast<std::size_t>(n));
  }
  err.read.reset();
  ExitStatus s = c.wait();
  EXPECT_EQ(s.code, 128 + SIGPIPE) << seen;
  next_command(env());
  expect_live(100, "SIGPIPE");
  writer.expect_running();
  expect_nothing_left("SIGPIPE");
}

TEST_F(Crash, BackupAndItsPruneAtEveryPoint) {
  // Old backups for the prune after the backup to delete (their metas say so).
  for (int i = 0; i < 2; ++i) {
    CliResult b = run_backupctl({"backup", "db", "--json"}, env());
    ASSERT_EQ(b.exit_code, 0) << b.err;
  }
  auto age_all = [&] {
    for (const auto& f : list_dir(dir.path() / "db")) {
      if (!f.ends_with(".meta")) continue;
      auto meta = nlohmann::json::parse(read_file(dir.path() / "db" / f));
      meta["created_at"] = "2026-01-01T00:00:00+00:00";
      write_file_atomic(dir.path() / "db" / f, meta.dump());
    }
  };
  EnvList e = env();
  e.emplace_back("BACKUP_KEEP_MIN", "1");
  const std::vector<std::string> args = {"backup", "db"};
  age_all();
  Points points = points_of(args, e);
  ASSERT_EQ(points, (Points{"backup.publish", "prune.delete", "prune.deleting"}));
  for (const auto& point : points) {
    for (int i = 0; i < 2; ++i) ASSERT_EQ(run_backupctl({"backup", "db", "--json", "-q"}, env()).exit_code, 0);
    age_all();
    kill_at(args, point, e);
    next_command(e);
    // Every backup is whole (file, meta, roles) or gone; none looks finished without its meta.
    std::set<std::string> names;
    for (const auto& f : list_dir(dir.path() / "db")) names.insert(f);
    for (const auto& f : names) {
      if (f.ends_with(".dump")) {
        EXPECT_TRUE(names.count(f + ".meta")) << point << ": " << f << " has no meta";
        auto meta = nlohmann::json::parse(read_file(dir.path() / "db" / (f + ".meta")));
        EXPECT_TRUE(names.count(meta["parts"]["roles"]["file"].get<std::string>())) << point << ": " << f;
      }
      if (f.ends_with(".meta")) {
        EXPECT_TRUE(names.count(f.substr(0, f.size() - 5))) << point << ": orphan " << f;
      }
    }
    expect_nothing_left(point);
  }
}

TEST_F(Crash, RehearsalAtEveryPointNeverTouchesTheLiveSystem) {
  TempDir objects;
  make_dirs(objects.path() / "attachments/docs");
  for (int i = 0; i < 20; ++i) {
    write_file_atomic(objects.path() / "attachments/docs" / ("f" + std::to_string(i) + ".txt"), "content " + std::to_string(i));
  }
  TempDir app;
  make_dirs(app.path() / "infra");
  write_file_atomic(app.path() / "infra/env", "LOG_LEVEL=info\n");
  write_file_atomic(app.path() / "infra/backup-checks.toml",
                    "[[check]]\nname = \"documents\"\nkind = \"sql\"\nquery = \"SELECT count(*) FROM documents\"\n"
                    "expect_nonzero = true\n");
  EnvList e = env();
  e.emplace_back("APP_ROOT", app.path().string());
  e.emplace_back("OBJECT_STORAGE", "disk");
  e.emplace_back("OBJECT_STORAGE_DIR", objects.path().string());
  CliResult all = run_backupctl({"backup", "all", "-q"}, e);
  ASSERT_EQ(all.exit_code, 0) << all.err;
  reset_live();
  // A staging app (the sample app's api and worker), its pid files under TMPDIR: one left running
  // is a process mentioning TMPDIR (expect_nothing_left).
  const std::string appctl = (fs::path(BACKUPCTL_SOURCE_DIR) / "examples/archive-app/appctl.sh").string();
  const std::string staging_run = (tmp.path() / "staging-app").string();
  const int staging_port = free_port();
  e.emplace_back("ARCHIVE_APP", ARCHIVE_APP_BIN);
  e.emplace_back("STAGING_API_URL", "http://127.0.0.1:" + std::to_string(staging_port));
  e.emplace_back("STAGING_APP_START_CMD", "env API_PORT=" + std::to_string(staging_port) + " " + appctl + " start " + staging_run);
  e.emplace_back("STAGING_APP_STOP_CMD", appctl + " stop " + staging_run);
  auto staging_app_running = [&] {
    std::string out;
    for (const char* svc : {"api", "worker"}) {
      fs::path pidfile = fs::path(staging_run) / (std::string(svc) + ".pid");
      std::error_code ec;
      if (!fs::exists(pidfile, ec)) continue;
      std::string pid = read_file(pidfile);
      while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
      std::string stat = read_proc_file(fs::path("/proc") / pid / "stat");
      auto close = stat.rfind(')');
      if (close != std::string::npos && close + 2 < stat.size() && stat[close + 2] != 'Z') out += std::string(svc) + " ";
    }
    return out;
  };
  auto stop_staging_app = [&] {
    run_command({.argv = {appctl, "stop", staging_run}});
    fs::remove_all(staging_run);
  };
  const std::vector<std::string> args = {"rehearse"};
  Points points = points_of(args, e);
  ASSERT_EQ(points, (Points{"rehearse.staging-database", "rehearse.restore-db", "restore-db.roles",
                            "restore-db.scratch-made", "restore-db.create-side", "restore-db.load", "restore-db.analyze", "restore-db.swap",
                            "swap.before-commit", "restore-db.prune-previous", "rehearse.restore-objects",
                            "restore-objects.create-buckets", "restore-objects.upload",
                            "restore-objects.half-uploaded", "restore-objects.verify", "rehearse.staging-app",
                            "rehearse.checklist", "rehearse.cleanup"}));
  stop_staging_app();  // the normal run stopped the app; its (empty) run folder stays
  for (const auto& point : points) {
    kill_at(args, point, e);
    next_command(e);
    // The app's run folder (pid files, logs) is the test's own; a process left is what counts.
    EXPECT_EQ(staging_app_running(), "") << point << ": the staging app is still running";
    stop_staging_app();
    expect_live(100, point);
    EXPECT_EQ(first(read_events(writer.log()), "stopped"), -1) << point << ": a rehearsal stopped the live services";
    EXPECT_TRUE(files_marked(dir.path(), {".rehearsal-"}).empty()) << point;
    expect_nothing_left(point);
  }
}

TEST_F(Crash, RestoreObjectsAtEveryPoint) {
  TempDir objects;
  make_dirs(objects.path() / "attachments/docs");
  for (int i = 0; i < 40; ++i) {
    write_file_atomic(objects.path() / "attachments/docs" / ("f" + std::to_string(i) + ".txt"), std::string(1000, 'a' + i % 26));
  }
  // Larger than the single-PUT size: written part by part into a temporary file.
  write_file_atomic(objects.path() / "attachments/big.bin", std::string(30 << 20, 'x'));
  EnvList e = env();
  e.emplace_back("OBJECT_STORAGE", "disk");
  e.emplace_back("OBJECT_STORAGE_DIR", objects.path().string());
  CliResult b = run_backupctl({"backup", "objects", "--json"}, e);
  ASSERT_EQ(b.exit_code, 0) << b.err;
  std::string archive = nlohmann::json::parse(b.out)["path"];
  const std::vector<std::string> args = {"restore", "objects", "--mode", "exact", "--file", archive};
  auto damage = [&] {
    for (int i = 0; i < 40; i += 3) fs::remove(objects.path() / "attachments/docs" / ("f" + std::to_string(i) + ".txt"));
    write_file_atomic(objects.path() / "attachments/docs/extra.txt", "not in the backup");
  };
  damage();
  Points points = points_of(args, e);
  ASSERT_EQ(points, (Points{"restore-objects.create-buckets", "restore-objects.upload", "restore-objects.upload-started",
                            "restore-objects.part-sent",
                            "restore-objects.half-uploaded", "restore-objects.verify", "restore-objects.delete"}));
  for (const auto& point : points) {
    damage();
    kill_at(args, point, e);
    CliResult next = next_command(e);
    EXPECT_NE(next.err.find("run it again to complete it"), std::string::npos) << point << ": " << next.err;
    expect_nothing_left(point);
    // Each object is whole; running the restore again completes it.
    ASSERT_EQ(run_backupctl(args, e).exit_code, 0) << point;
    EXPECT_EQ(read_file(objects.path() / "attachments/docs/f3.txt"), std::string(1000, 'a' + 3)) << point;
    EXPECT_EQ(fs::file_size(objects.path() / "attachments/big.bin"), 30u << 20) << point;
    EXPECT_FALSE(fs::exists(objects.path() / "attachments/docs/extra.txt")) << point;
  }
}

TEST_F(Crash, ConfigApplyAtEveryPointIsAllOrNothing) {
  TempDir app;
  make_dirs(app.path() / "infra/monitoring");
  auto write_tree = [&](const std::string& tag) {
    write_file_atomic(app.path() / "infra/env", "POSTGRES_PASSWORD=" + tag + "\nLOG_LEVEL=" + tag + "\n", 0600);
    write_file_atomic(app.path() / "infra/docker-compose.yml", "services: {} # " + tag + "\n", 0644);
    write_file_atomic(app.path() / "infra/monitoring/prometheus.yml", "scrape: " + tag + "\n", 0640);
  };
  auto tree = [&] {
    return read_file(app.path() / "infra/env") + read_file(app.path() / "infra/docker-compose.yml") +
           read_file(app.path() / "infra/monitoring/prometheus.yml");
  };
  EnvList e = env();
  e.emplace_back("APP_ROOT", app.path().string());
  write_tree("backup");
  CliResult b = run_backupctl({"backup", "config", "--json"}, e);
  ASSERT_EQ(b.exit_code, 0) << b.err;
  std::string archive = nlohmann::json::parse(b.out)["path"];
  const std::string backed_up = tree();
  const std::vector<std::string> args = {"restore", "config", "--mode", "apply", "--file", archive};
  write_tree("current");
  const std::string current = tree();
  Points points = points_of(args, e);
  ASSERT_EQ(points, (Points{"restore-config.safety-backup", "backup.publish", "restore-config.stage",
                            "restore-config.apply", "restore-config.half-applied", "restore-config.commit"}));
  for (const auto& point : points) {
    write_tree("current");
    kill_at(args, point, e);
    next_command(e);
    // All or nothing: before the commit every file is as it was.
    EXPECT_EQ(tree(), current) << point;
    expect_nothing_left(point);
    auto stray = files_marked(app.path(), {".backupctl"});
    EXPECT_TRUE(stray.empty()) << point << ": " << stray[0];
  }
  ASSERT_EQ(run_backupctl(args, e).exit_code, 0);
  EXPECT_EQ(tree(), backed_up);
}

// The lost-host case (restore config --mode apply on a fresh machine): no config there, so no
// safety backup; killed at each point, the machine is left as it was, with no config file (not
// half of one), and the next apply puts all of it.
TEST_F(Crash, ConfigApplyOnAFreshHostAtEveryPointIsAllOrNothing) {
  TempDir app;
  make_dirs(app.path() / "infra/monitoring");
  write_file_atomic(app.path() / "infra/env", "POSTGRES_PASSWORD=backup\n", 0600);
  write_file_atomic(app.path() / "infra/docker-compose.yml", "services: {}\n", 0644);
  write_file_atomic(app.path() / "infra/monitoring/prometheus.yml", "scrape: backup\n", 0640);
  EnvList e = env();
  e.emplace_back("APP_ROOT", app.path().string());
  CliResult b = run_backupctl({"backup", "config", "--json"}, e);
  ASSERT_EQ(b.exit_code, 0) << b.err;
  std::string archive = nlohmann::json::parse(b.out)["path"];
  const std::string env_file = read_file(app.path() / "infra/env");
  auto files_there = [&] {
    std::vector<std::string> out;
    for (auto it = fs::recursive_directory_iterator(app.path()); it != fs::recursive_directory_iterator(); ++it) {
      out.push_back(fs::relative(it->path(), app.path()).string() + (it->is_directory() ? "/" : ""));
    }
    return out;
  };
  auto lose_the_host = [&] { fs::remove_all(app.path() / "infra"); };
  const std::vector<std::string> args = {"restore", "config", "--mode", "apply", "--file", archive};
  lose_the_host();
  Points points = points_of(args, e);
  // No backup.publish: nothing to keep, so no safety backup is made.
  ASSERT_EQ(points, (Points{"restore-config.safety-backup", "restore-config.stage", "restore-config.apply",
                            "restore-config.half-applied", "restore-config.commit"}));
  for (const auto& point : points) {
    lose_the_host();
    kill_at(args, point, e);
    next_command(e);
    EXPECT_EQ(files_there(), std::vector<std::string>{}) << point << ": a killed apply left config behind";
    expect_nothing_left(point);
  }
  lose_the_host();
  CliResult applied = run_backupctl(args, e);
  ASSERT_EQ(applied.exit_code, 0) << applied.err;
  EXPECT_EQ(read_file(app.path() / "infra/env"), env_file);
  EXPECT_EQ(fs::status(app.path() / "infra/env").permissions() & fs::perms::all, fs::perms::owner_read | fs::perms::owner_write);
  EXPECT_TRUE(fs::exists(app.path() / "infra/monitoring/prometheus.yml"));
}

}  // namespace backupctl::test
