// The off-site copy must never be the way data is lost (issue 24): local retention keeps what
// never reached the remote, two hosts cannot overwrite each other's copies, the remote cannot be
// BACKUP_DIR itself, what a server sends is bounded by what the meta says, and a rehearsal from
// the remote reads the remote's bytes.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <signal.h>
#include <sys/mount.h>

#include <fstream>
#include <functional>

#include "fixture.hpp"
#include "s3_fixture.hpp"
#include "stack_host.hpp"
#include "storage/s3/s3_store.hpp"
#include "util/fs.hpp"
#include "util/json.hpp"
#include "util/process.hpp"

namespace backupctl::test {

namespace {

std::vector<std::string> backups_in(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& n : list_dir(dir)) {
    if (!n.ends_with(".meta") && n.find(".roles.") == std::string::npos && !n.ends_with(".partial")) out.push_back(n);
  }
  return out;
}

}  // namespace

// While the remote fails, local retention deletes nothing that never reached it (retention used
// to run before the copy and delete such backups); status and the metrics say how many wait.
// What the remote would not keep anyway (older than BACKUP_REMOTE_RETENTION_DAYS) is neither held
// here nor sent there. Once `push --all` filled the gap, retention takes them.
TEST(OffSiteRetention, ABackupThatNeverReachedTheRemoteIsNotDeletedLocally) {
  Host host(16 << 10);
  TempDir parent("backupctl-remote");
  const fs::path remote_dir = parent.path() / "not-mounted";
  EnvList env = host.env({{"BACKUP_REMOTE_URL", "file://" + remote_dir.string()}});
  env = with(env, "BACKUP_RETENTION_DAYS", "1");
  env = with(env, "BACKUP_REMOTE_RETENTION_DAYS", "4");
  env = with(env, "BACKUP_KEEP_MIN", "1");
  env = with(env, "BACKUP_METRICS_FILE", (parent.path() / "metrics.prom").string());
  // Two old backups made while the remote was not there: 5 days ago (older than the remote keeps)
  // and 3 days ago; then one now.
  for (const char* ago : {"-5d", "-3d"}) {
    CliResult old = run_backupctl({"backup", "db"}, faked_clock(env, ago));
    EXPECT_NE(old.exit_code, 0) << "the remote is missing: the copy fails";
    EXPECT_NE(old.err.find("the backup is done, but its off-site copy"), std::string::npos) << old.err;
  }
  ASSERT_EQ(backups_in(host.backups() / "db").size(), 2u);
  const std::string five_days = backups_in(host.backups() / "db")[0], three_days = backups_in(host.backups() / "db")[1];
  CliResult now = run_backupctl({"backup", "db"}, env);
  EXPECT_NE(now.exit_code, 0) << now.err;
  auto kept = backups_in(host.backups() / "db");
  EXPECT_EQ(kept.size(), 2u) << "retention deleted a backup that never reached the remote";
  EXPECT_TRUE(std::find(kept.begin(), kept.end(), three_days) != kept.end()) << "the 3-day-old backup went, never copied";
  EXPECT_TRUE(std::find(kept.begin(), kept.end(), five_days) == kept.end()) << "held though the remote would not keep it";

  CliResult status = run_backupctl({"status", "--json"}, env);
  auto st = json_of(status);
  EXPECT_EQ(st["remote"]["not_copied"].size(), 2u) << status.out;
  CliResult text = run_backupctl({"status"}, env);
  EXPECT_NE(text.out.find("2 backup(s) not on the remote yet"), std::string::npos) << text.out;
  EXPECT_NE(read_file(parent.path() / "metrics.prom").find("backupctl_backups_not_on_remote{profile=\"test\",remote=\"file://" +
                                                          remote_dir.string() + "\"} 2"),
            std::string::npos)
      << read_file(parent.path() / "metrics.prom");

  make_dirs(remote_dir, 0700);
  CliResult pushed = run_backupctl({"push", "--all", "--json"}, env);
  ASSERT_EQ(pushed.exit_code, 0) << pushed.err;
  EXPECT_TRUE(fs::exists(remote_dir / "db" / three_days)) << pushed.out;
  EXPECT_TRUE(fs::exists(remote_dir / "db" / (three_days + ".meta"))) << pushed.out;
  CliResult pruned = run_backupctl({"prune"}, env);
  ASSERT_EQ(pruned.exit_code, 0) << pruned.err;
  EXPECT_EQ(backups_in(host.backups() / "db").size(), 1u) << pruned.out << "copied, the old one goes by the rules";
  // Remote retention shorter than the local one: a push does not send what the remote would
  // delete at once (every push used to send it again and delete it).
  EnvList long_here = with(with(env, "BACKUP_RETENTION_DAYS", "30"), "BACKUP_REMOTE_RETENTION_DAYS", "2");
  CliResult older = run_backupctl({"backup", "all", "--no-remote", "--json"}, faked_clock(long_here, "-3d"));
  ASSERT_EQ(older.exit_code, 0) << older.err;
  const std::string older_name = json_of(older)["set"]["parts"]["db"]["file"];
  const std::string older_set = fs::path(json_of(older)["set_file"].get<std::string>()).filename();
  // (The set's attachments and config backups, the only ones of their sources, are kept there
  // by BACKUP_KEEP_MIN: they go the first time.)
  for (int round = 0; round < 3; ++round) {
    CliResult again = run_backupctl({"push", "--all", "--json"}, long_here);
    EXPECT_EQ(again.exit_code, 0) << again.err;
    if (round > 0) {
      EXPECT_EQ(json_of(again)["bytes"], 0) << "round " << round << ": " << again.out;
    }
    EXPECT_NE(again.out.find("db/" + older_name + ": older than BACKUP_REMOTE_RETENTION_DAYS=2"), std::string::npos) << again.out;
    // Its set is not sent either, and that is no failure (every push failed on it).
    EXPECT_NE(again.out.find("sets/" + older_set + ": not sent"), std::string::npos) << again.out;
  }
  EXPECT_FALSE(fs::exists(remote_dir / "db" / older_name));
  EXPECT_TRUE(fs::exists(host.backups() / "db" / older_name));
}

// Two hosts with the same settings push to one remote, on a folder and on Ceph RGW: the first
// claims it; the second's copy is refused, naming the first, and nothing of the first's is
// touched. A host that replaces the first (--take-over) still never overwrites a copy of the same
// name with other bytes (backups of the same second on both hosts), and says whose it is. A
// copy replaced behind the first host's back fails its `verify --remote` (the remote's meta
// alone said OK), and one replaced while its push runs fails that push.
TEST(OffSiteOwner, TwoHostsPushingToOneRemoteNeverOverwriteEachOther) {
  S3Server s3;
  S3Store(s3.settings()).create_bucket("shared");
  TempDir folder("backupctl-remote");
  Host a(16 << 10), b(16 << 10);
  b.pg.psql("archive", "DELETE FROM documents WHERE id > 7");
  struct Kind {
    std::string label;
    EnvList remote;
    std::function<std::string(const std::string&)> read;  // a remote file's bytes ("" when absent)
    std::function<void(const std::string&, const std::string&)> write;
  };
  std::vector<Kind> kinds = {
      {"folder",
       {{"BACKUP_REMOTE_URL", "file://" + folder.path().string()}},
       [&](const std::string& n) { return fs::exists(folder.path() / n) ? read_file(folder.path() / n) : std::string(); },
       [&](const std::string& n, const std::string& bytes) { write_file_atomic(folder.path() / n, bytes, 0600); }},
      {"s3",
       s3_remote(s3, "s3://shared/prod"),
       [&](const std::string& n) {
         auto files = bucket_files(s3, "shared", "prod/");
         return files.count(n) ? files[n] : std::string();
       },
       [&](const std::string& n, const std::string& bytes) {
         S3Store store(s3.settings());
         MemorySource body(bytes.data(), bytes.size());
         store.put_object("shared", "prod/" + n, body, PutOptions{});
       }},
  };
  for (const Kind& k : kinds) {
    SCOPED_TRACE(k.label);
    // The same second on both hosts: the same file names (the clock set back for the backups
    // only: S3 refuses requests signed with a clock that is off). Each process's clock starts
    // there and runs at a tenth of the real pace: on a busy machine a backup took over a second
    // to name its file, and the two names differed.
    const std::string second = k.label == "s3" ? "@2026-12-01 03:16:00 x0.1" : "@2026-12-01 03:15:00 x0.1";
    CliResult made_a = run_backupctl({"backup", "db", "--no-remote", "--json"}, faked_clock(a.env(k.remote), second));
    ASSERT_EQ(made_a.exit_code, 0) << made_a.err;
    const std::string name = "db/" + fs::path(json_of(made_a)["path"].get<std::string>()).filename().string();
    CliResult pushed_a = run_backupctl({"push"}, a.env(k.remote));
    ASSERT_EQ(pushed_a.exit_code, 0) << pushed_a.err;
    const std::string a_bytes = k.read(name), a_meta = k.read(name + ".meta");
    ASSERT_FALSE(a_bytes.empty());
    CliResult made_b = run_backupctl({"backup", "db", "--no-remote"}, faked_clock(b.env(k.remote), second));
    ASSERT_EQ(made_b.exit_code, 0) << made_b.err;
    ASSERT_TRUE(fs::exists(b.backups() / name)) << "not the same second: " << made_b.err;
    CliResult pushed_b = run_backupctl({"push"}, b.env(k.remote));
    EXPECT_NE(pushed_b.exit_code, 0) << pushed_b.err;
    const CliResult& refused = pushed_b;
    EXPECT_NE(refused.err.find("is written by another BACKUP_DIR: host"), std::string::npos) << refused.err;
    EXPECT_NE(refused.err.find(a.backups().string()), std::string::npos) << refused.err;
    EXPECT_NE(refused.err.find("--take-over"), std::string::npos) << refused.err;
    EXPECT_EQ(k.read(name), a_bytes);
    EXPECT_EQ(k.read(name + ".meta"), a_meta);
    CliResult prune_b = run_backupctl({"prune"}, with(b.env(k.remote), "BACKUP_REMOTE_RETENTION_DAYS", "1"));
    EXPECT_EQ(prune_b.exit_code, 0) << prune_b.err;
    EXPECT_NE(prune_b.err.find("is written by another BACKUP_DIR"), std::string::npos) << prune_b.err;
    EXPECT_EQ(k.read(name), a_bytes) << "another host's prune ran on the remote";

    CliResult taken = run_backupctl({"push", "--take-over", "--json"}, b.env(k.remote));
    EXPECT_NE(taken.exit_code, 0) << taken.out;
    EXPECT_NE(taken.out.find(name + ": the remote holds another backup of this name (sha256 "), std::string::npos) << taken.out;
    EXPECT_EQ(k.read(name), a_bytes) << "a copy of the same name was overwritten";
    EXPECT_EQ(k.read(name + ".meta"), a_meta);
    CliResult back = run_backupctl({"push", "--take-over"}, a.env(k.remote));
    EXPECT_EQ(back.exit_code, 0) << back.err;

    // Replaced behind A's back (as a push of an older version would have): verify --remote reads
    // A's own record, not only the remote's meta.
    const std::string b_dump = (b.backups() / name).string();
    k.write(name, read_file(b_dump));
    k.write(name + ".meta", read_file(b_dump + ".meta"));
    CliResult verify = run_backupctl({"verify", "--remote"}, a.env(k.remote));
    EXPECT_NE(verify.exit_code, 0) << verify.out;
    EXPECT_NE(verify.out.find("FAIL  " + name + "  not this host's backup"), std::string::npos) << verify.out;
    k.write(name, a_bytes);
    k.write(name + ".meta", a_meta);

    // Replaced while A's push runs (stopped after its copies, before it reads them back).
    CliResult next = run_backupctl({"backup", "config", "--no-remote", "--json"}, a.env(k.remote));
    ASSERT_EQ(next.exit_code, 0) << next.err;
    const std::string conf = "config/" + fs::path(json_of(next)["path"].get<std::string>()).filename().string();
    Child push = spawn_backupctl({"push"}, with(with(a.env(k.remote), "BACKUPCTL_FAULT", "remote.pushed"), "BACKUPCTL_FAULT_SIGNAL", "STOP"));
    ASSERT_TRUE(wait_for([&] { return process_state(push.pid()) == "T"; }, 60)) << "the push never reached its read-back";
    k.write(conf, "other bytes");
    ::kill(push.pid(), SIGCONT);
    std::string out = push.drain();
    EXPECT_FALSE(push.wait().ok()) << out;
    EXPECT_NE(out.find("NOT COPIED: " + conf + ": replaced on the remote during this push"), std::string::npos) << out;
    // Not recorded as copied: local retention keeps it, status counts it as not on the remote.
    auto local_meta = nlohmann::json::parse(read_file(a.backups() / (conf + ".meta")));
    EXPECT_FALSE(local_meta.contains("remote_copies") && local_meta["remote_copies"].size() > 0 &&
                 local_meta["remote_copies"].contains(k.label == "s3" ? "s3://shared/prod" : "file://" + folder.path().string()))
        << local_meta.dump();
  }
}

// The remote is BACKUP_DIR, a folder inside it, one that holds it, or a link or bind mount to
// it: refused before anything is written, and nothing deleted (the remote's retention used to
// delete local backups that way). A remote bucket that is an attachment bucket is warned about.
TEST(OffSiteOwner, TheRemoteCanNeverBeBackupDirItself) {
  Host host(16 << 10);
  CliResult made = run_backupctl({"backup", "db", "--no-remote", "--json"}, host.env({}));
  ASSERT_EQ(made.exit_code, 0) << made.err;
  const std::string before = tree_digest(host.backups() / "db");
  TempDir links("backupctl-links");
  fs::create_directory_symlink(host.backups(), links.path() / "link");
  TempDir bind("backupctl-bind");
  const bool mounted = run_command({.argv = {"mount", "--bind", host.backups().string(), bind.path().string()}}).status.ok();
  std::vector<std::pair<std::string, std::string>> cases = {
      {host.backups().string(), "is BACKUP_DIR itself"},
      {host.backups().string() + "/./", "is BACKUP_DIR itself"},
      {(links.path() / "link").string(), "is BACKUP_DIR itself"},
      {(host.backups() / "offsite").string(), "is inside BACKUP_DIR"},
      {(links.path() / "link" / "db").string(), "is inside BACKUP_DIR"},
      {host.dir.path().string(), "holds BACKUP_DIR"},
  };
  if (mounted) cases.emplace_back(bind.path().string(), "is BACKUP_DIR itself");
  for (const auto& [dir, says] : cases) {
    EnvList e = host.env({{"BACKUP_REMOTE_URL", "file://" + dir}, {"BACKUP_REMOTE_RETENTION_DAYS", "1"}});
    for (const auto& argv : {std::vector<std::string>{"push", "--all"}, std::vector<std::string>{"prune"}}) {
      CliResult r = run_backupctl(argv, e);
      EXPECT_EQ(r.exit_code, 2) << dir << " " << argv[0] << ": " << r.err;
      EXPECT_NE(r.err.find(says), std::string::npos) << dir << ": " << r.err;
    }
    EXPECT_EQ(tree_digest(host.backups() / "db"), before) << dir;
  }
  if (mounted) {
    EXPECT_TRUE(run_command({.argv = {"umount", bind.path().string()}}).status.ok());
  }
  EXPECT_TRUE(mounted) << "mount --bind is not possible here: the bind mount case did not run";

  // S3: the remote bucket is one of the attachment buckets (MINIO_BUCKETS empty: all of them).
  S3Server s3;
  S3Store(s3.settings()).create_bucket("attachments");
  EnvList e = host.env(s3_remote(s3, "s3://attachments/offsite"));
  e = with(with(with(with(e, "OBJECT_STORAGE", "minio"), "MINIO_ENDPOINT", s3.endpoint()), "MINIO_ACCESS_KEY", s3.access_key()),
           "MINIO_SECRET_KEY", s3.secret_key());
  CliResult pushed = run_backupctl({"push"}, e);
  EXPECT_EQ(pushed.exit_code, 0) << pushed.err;
  EXPECT_NE(pushed.err.find("the bucket attachments of BACKUP_REMOTE_URL is also an attachment bucket"), std::string::npos)
      << pushed.err;
}

// `rehearse --remote` on the host that made the backups proves the off-site copy: it reads the
// remote's bytes (it used to rehearse the local files and record "rehearsal from the remote:
// passed" with the remote's dump damaged).
TEST(OffSiteReads, ARehearsalFromTheRemoteReadsTheRemotesBytes) {
  Host host(16 << 10);
  TempDir remote_dir("backupctl-remote");
  const EnvList env = host.env({{"BACKUP_REMOTE_URL", "file://" + remote_dir.path().string()}});
  CliResult made = run_backupctl({"backup", "all", "--json"}, env);
  ASSERT_EQ(made.exit_code, 0) << made.err;
  const std::string dump = json_of(made)["set"]["parts"]["db"]["file"];
  CliResult good = run_backupctl({"rehearse", "--remote"}, env);
  ASSERT_EQ(good.exit_code, 0) << good.out << good.err;
  EXPECT_NE(good.err.find("db/" + dump + " matches its meta (read from the remote"), std::string::npos) << good.err;
  flip_byte(remote_dir.path() / "db" / dump, 2000);
  CliResult bad = run_backupctl({"rehearse", "--remote", "--json"}, env);
  EXPECT_EQ(bad.exit_code, 5) << bad.out << bad.err;
  EXPECT_NE(bad.err.find("db/" + dump + " on the remote does not match the sha256 of its meta"), std::string::npos) << bad.err;
  auto st = json_of(run_backupctl({"status", "--json"}, env));
  EXPECT_FALSE(st["remote"]["last_rehearsal_failure"].is_null()) << st.dump();
  EXPECT_NE(json_string(st["remote"]["last_rehearsal_failure"], "error").find("does not match the sha256 of its meta"),
            std::string::npos)
      << st.dump();
}

// A server that sends more than a meta says (a folder and Ceph RGW, each file 40 MiB longer
// than its meta): a fetch and verify --remote --read-data stop at the meta's size and fill
// nothing; they used to write it all (4 GB in 8 s) before the checksum failed. verify
// --read-data holds the lock, and one killed mid-way leaves its scratch copy to the next
// command, whatever it is.
TEST(OffSiteReads, AServerSendingMoreThanTheMetaSaysFillsNothing) {
  S3Server s3;
  S3Store store(s3.settings());
  store.create_bucket("offsite");
  TempDir folder("backupctl-remote");
  Host host(16 << 10);
  const std::string padding(40u << 20, 'x');
  struct Kind {
    std::string label;
    EnvList remote;
    std::function<void(const std::string&)> grow;
  };
  std::vector<Kind> kinds = {
      {"folder", {{"BACKUP_REMOTE_URL", "file://" + folder.path().string()}},
       [&](const std::string& n) {
         std::ofstream f(folder.path() / n, std::ios::app | std::ios::binary);
         f << padding;
       }},
      {"s3", s3_remote(s3, "s3://offsite/p"),
       [&](const std::string& n) {
         io::StringSink have;
         store.get_object("offsite", "p/" + n, have);
         std::string bytes = have.take() + padding;
         MemorySource body(bytes.data(), bytes.size());
         store.put_object("offsite", "p/" + n, body, PutOptions{});
       }},
  };
  for (const Kind& k : kinds) {
    SCOPED_TRACE(k.label);
    const EnvList env = host.env(k.remote);
    CliResult made = run_backupctl({"backup", "objects", "--json"}, env);
    ASSERT_EQ(made.exit_code, 0) << made.err;
    const std::string file = fs::path(json_of(made)["path"].get<std::string>()).filename();
    TempDir fresh("backupctl-fresh");
    const EnvList e = with(with(env, "BACKUP_DIR", fresh.path().string()), "CONFIRM", "YES");
    // Under the lock: another run is refused while it reads; killed, its scratch copy goes with
    // the next command, whatever it is.
    Child reading = spawn_backupctl({"verify", "--remote", "--read-data"},
                                    with(with(e, "BACKUPCTL_FAULT", "remote-verify.fetched"), "BACKUPCTL_FAULT_SIGNAL", "STOP"));
    ASSERT_TRUE(wait_for([&] { return process_state(reading.pid()) == "T"; }, 60)) << "the verify never fetched";
    CliResult second = run_backupctl({"backup", "config", "--no-remote"}, e);
    EXPECT_EQ(second.exit_code, 8) << second.err;
    EXPECT_NE(second.err.find("backupctl verify --remote --read-data"), std::string::npos) << second.err;
    ::kill(reading.pid(), SIGKILL);
    reading.wait();
    bool left = false;
    for (const auto& n : list_dir(fresh.path())) left = left || n.starts_with(".remote-verify.");
    EXPECT_TRUE(left) << "the kill came before the scratch copy";
    CliResult next = run_backupctl({"list"}, e);
    EXPECT_EQ(next.exit_code, 0) << next.err;
    for (const auto& n : list_dir(fresh.path())) EXPECT_FALSE(n.starts_with(".remote-verify.")) << n << " stayed after the next command";
    EXPECT_TRUE(list_dir(fresh.path() / "journal").empty());

    k.grow("objects/" + file);
    CliResult fetched = run_backupctl({"restore", "objects", "--remote", "--file", file}, e);
    EXPECT_EQ(fetched.exit_code, 5) << fetched.err;
    EXPECT_NE(fetched.err.find("objects/" + file + " on the remote is larger than"), std::string::npos) << fetched.err;
    EXPECT_TRUE(list_dir(fresh.path() / "objects").empty()) << testing::PrintToString(list_dir(fresh.path() / "objects"));
    CliResult verified = run_backupctl({"verify", "--remote", "--read-data"}, e);
    EXPECT_NE(verified.exit_code, 0) << verified.out;
    EXPECT_NE(verified.out.find("FAIL  objects/" + file + "  size differs"), std::string::npos) << verified.out;
    EXPECT_TRUE(list_dir(fresh.path() / "journal").empty());
  }
}

// Errors of the remote name the remote's settings and the real cause: a wrong secret, an
// unknown access key and this host's clock an hour ahead each get their own hint (all said
// "check MINIO_ACCESS_KEY/MINIO_SECRET_KEY"); a missing bucket names itself and
// BACKUP_REMOTE_URL (was a bare HTTP 404); a bucket without Object Lock says so (was a bare
// InvalidRequest).
TEST(OffSiteErrors, NameTheRemotesSettingsAndTheCause) {
  S3Server s3;
  S3Store(s3.settings()).create_bucket("offsite");
  Host host(16 << 10);
  const EnvList env = host.env(s3_remote(s3, "s3://offsite/p"));
  CliResult made = run_backupctl({"backup", "config", "--no-remote"}, env);
  ASSERT_EQ(made.exit_code, 0) << made.err;
  struct Case {
    std::string what;
    EnvList env;
    std::string says;
  };
  const std::vector<Case> cases = {
      {"wrong secret", with(env, "BACKUP_REMOTE_SECRET_KEY", "wrong-secret"), "its secret does not match: check BACKUP_REMOTE_SECRET_KEY"},
      {"unknown key", with(env, "BACKUP_REMOTE_ACCESS_KEY", "NOSUCHKEY"), "the server knows no such access key: check BACKUP_REMOTE_ACCESS_KEY"},
      {"clock an hour ahead", faked_clock(env, "+1h"), "this host's clock is 60 min ahead of the server's"},
      {"missing bucket", with(env, "BACKUP_REMOTE_URL", "s3://nobucket/p"),
       "the bucket nobucket does not exist on " + s3.endpoint() + ": create it, or fix BACKUP_REMOTE_URL"},
      {"no object lock", with(env, "BACKUP_REMOTE_OBJECT_LOCK_DAYS", "7"), "the bucket offsite has no Object Lock"},
  };
  for (const Case& c : cases) {
    CliResult r = run_backupctl({"push"}, c.env);
    EXPECT_NE(r.exit_code, 0) << c.what;
    EXPECT_NE(r.err.find(c.says), std::string::npos) << c.what << ": " << r.err;
    EXPECT_EQ(r.err.find("MINIO_"), std::string::npos) << c.what << ": " << r.err;
  }
  // A host with no copy of its own says so, and where to look (it said "no copy yet").
  CliResult status = run_backupctl({"status"}, with(env, "BACKUP_DIR", (host.dir.path() / "elsewhere").string()));
  EXPECT_NE(status.out.find("no copy made from this BACKUP_DIR yet"), std::string::npos) << status.out;
  EXPECT_NE(status.out.find("backupctl list --remote"), std::string::npos) << status.out;
  // A fetch of a backup in a missing bucket: named too.
  CliResult fetch = run_backupctl({"restore", "config", "--remote", "--file", "config_20261201_000000.tar.gz.age"},
                                  with(env, "BACKUP_REMOTE_URL", "s3://nobucket/p"));
  EXPECT_EQ(fetch.exit_code, 4) << fetch.err;
  EXPECT_NE(fetch.err.find("nobucket"), std::string::npos) << fetch.err;
  EXPECT_NE(fetch.err.find("hint: "), std::string::npos) << fetch.err;
}

// BACKUP_REMOTE_BWLIMIT takes the units people write (20MB was refused, 1 taken as 1 B/s); a
// restore from the remote onto a volume too small for its spool (or its fetch) says so before it
// starts, instead of failing later at the lock file or the journal.
TEST(OffSiteSettings, RatesAndRoomAreCheckedClearly) {
  TempDir dir;
  const EnvList base = {{"BACKUP_DIR", (dir.path() / "b").string()}, {"BACKUP_REMOTE_URL", "file://" + dir.path().string() + "/r"}};
  for (const char* ok : {"20MB", "20M", "512KiB/s", "8K", "0", "1048576"}) {
    CliResult r = run_backupctl({"status"}, with(base, "BACKUP_REMOTE_BWLIMIT", ok));
    EXPECT_NE(r.exit_code, 2) << ok << ": " << r.err;
  }
  for (auto [bad, says] : {std::pair<const char*, const char*>{"1", "is 1 bytes/s: a push would take days"},
                          {"20", "is 20 bytes/s"},
                          {"fast", "invalid BACKUP_REMOTE_BWLIMIT='fast': not a rate"},
                          {"20XB", "not a rate"},
                          {"999999999999G", "more than 1 TiB/s"}}) {
    CliResult r = run_backupctl({"status"}, with(base, "BACKUP_REMOTE_BWLIMIT", bad));
    EXPECT_EQ(r.exit_code, 2) << bad << ": " << r.err;
    EXPECT_NE(r.err.find(says), std::string::npos) << bad << ": " << r.err;
    EXPECT_NE(r.err.find("hint: "), std::string::npos) << r.err;
  }

  Host host(16 << 10);
  host.pg.psql("archive", "CREATE TABLE filler AS SELECT i, md5(random()::text) || md5(random()::text) || "
                          "md5(random()::text) || md5(random()::text) AS t FROM generate_series(1, 40000) i");
  TempDir remote_dir("backupctl-remote");
  const EnvList remote = {{"BACKUP_REMOTE_URL", "file://" + remote_dir.path().string()}};
  CliResult made = run_backupctl({"backup", "all", "--json"}, host.env(remote));
  ASSERT_EQ(made.exit_code, 0) << made.err;
  const std::string dump = json_of(made)["set"]["parts"]["db"]["file"];
  ASSERT_GT(fs::file_size(host.backups() / "db" / dump), 3u << 20);
  TempDir small("backupctl-small");
  ASSERT_EQ(::mount("tmpfs", small.path().c_str(), "tmpfs", 0, "size=2m"), 0) << "cannot mount a tmpfs here";
  PgCluster fresh;
  TempDir fresh_dir("backupctl-fresh");
  EnvList e = with(fresh_host_env(fresh, fresh_dir, host, remote), "BACKUP_DIR", small.path().string());
  CliResult streamed = run_backupctl({"restore", "db", "--remote", "--file", dump}, e);
  CliResult in_place = run_backupctl({"restore", "db", "--remote", "--in-place", "--file", dump}, e);
  auto left = list_dir(small.path() / "db");
  ::umount2(small.path().c_str(), MNT_DETACH);
  EXPECT_EQ(streamed.exit_code, 6) << streamed.err;
  EXPECT_NE(streamed.err.find("the download spool of db/" + dump + " needs "), std::string::npos) << streamed.err;
  EXPECT_NE(streamed.err.find(" in " + (small.path() / "db").string() + ": only "), std::string::npos) << streamed.err;
  EXPECT_EQ(in_place.exit_code, 6) << in_place.err;
  EXPECT_NE(in_place.err.find("fetching db/" + dump + " needs "), std::string::npos) << in_place.err;
  EXPECT_TRUE(left.empty()) << testing::PrintToString(left);
}

}  // namespace backupctl::test
