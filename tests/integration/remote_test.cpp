// Issue 15: off-site copies (BACKUP_REMOTE_URL) against Ceph RGW (it checks signatures) and a
// folder remote: every backup copied encrypted, a push cut short resumes without sending again
// what arrived, a damaged copy is found, the remote's retention, and the recovery of a lost host
// from the remote alone.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <thread>

#include "fixture.hpp"
#include "s3_fixture.hpp"
#include "stack_host.hpp"
#include "storage/remote.hpp"
#include "support/capture_server.hpp"
#include "support/tcp_forwarder.hpp"
#include "util/error.hpp"
#include "util/signals.hpp"
#include "util/time.hpp"

namespace backupctl::test {

// backup all with a remote: the set, its three backups, their metas (the copy recorded) and the
// roles file are in the bucket, byte for byte, encrypted. Then the host is lost (BACKUP_DIR, the
// database cluster, the attachments, the config): on a new cluster, with only the remote's
// settings and the age key, restore all --remote brings back the rows and the attachments, and
// restore config --remote --mode apply the config files.
TEST(OffSite, BackupAllGoesOffSiteEncryptedAndALostHostComesBackFromTheRemoteAlone) {
  S3Server s3;
  Host host;
  S3Store(s3.settings()).create_bucket("offsite");
  const EnvList remote = s3_remote(s3, "s3://offsite/archive/prod");
  CliResult all = run_backupctl({"backup", "all", "--json"}, host.env(remote));
  ASSERT_EQ(all.exit_code, 0) << all.err;
  const std::string set_id = json_of(all)["set"]["set_id"];

  auto files = bucket_files(s3, "offsite", "archive/prod/");
  int backups = 0;
  for (const auto& kind : {"db", "objects", "config"}) {
    for (const auto& name : list_dir(host.backups() / kind)) {
      const fs::path local = host.backups() / kind / name;
      const std::string rel = std::string(kind) + "/" + name;
      ASSERT_TRUE(files.count(rel)) << rel << " is not on the remote";
      if (name.ends_with(".meta")) {
        auto meta = nlohmann::json::parse(files[rel]);
        EXPECT_TRUE(meta["remote_copies"].contains("s3://offsite/archive/prod")) << files[rel];
        continue;
      }
      EXPECT_EQ(files[rel], read_file(local)) << rel << ": the copy is not the file";
      if (name.find("roles") == std::string::npos) {
        ++backups;
        EXPECT_TRUE(files[rel].starts_with("age-encryption.org/v1")) << rel << " went up unencrypted";
      }
    }
  }
  EXPECT_EQ(backups, 3);
  EXPECT_EQ(files.count("sets/" + list_dir(host.backups() / "sets").front()), 1u);

  CliResult listed = run_backupctl({"list", "--remote", "--json"}, host.env(remote));
  ASSERT_EQ(listed.exit_code, 0) << listed.err;
  auto l = json_of(listed);
  ASSERT_EQ(l["backups"].size(), 3u) << listed.out;
  for (const auto& b : l["backups"]) {
    EXPECT_EQ(b["state"], "ok") << b;
    EXPECT_EQ(b["encrypted"], true) << b;
  }
  CliResult deep = run_backupctl({"verify", "--remote", "--read-data"}, host.env(remote));
  EXPECT_EQ(deep.exit_code, 0) << deep.out << deep.err;
  // The monthly rehearsal from the off-site copy, and status says when it and the newest copy were.
  CliResult rehearsed = run_backupctl({"rehearse", "--remote", "--json"}, host.env(remote));
  EXPECT_EQ(rehearsed.exit_code, 0) << rehearsed.out << rehearsed.err;
  CliResult status = run_backupctl({"status", "--json"}, host.env(remote));
  auto st = json_of(status);
  EXPECT_EQ(st["remote"]["url"], "s3://offsite/archive/prod") << status.out;
  EXPECT_EQ(st["remote"]["stale"], false) << status.out;
  EXPECT_LT(st["remote"]["newest_copy"]["age_hours"].get<double>(), 1.0) << status.out;
  EXPECT_FALSE(st["remote"]["last_rehearsal"].is_null()) << status.out;
  EXPECT_FALSE(st["remote"]["last_verify"].is_null()) << status.out;

  // The host is lost.
  const std::string objects_before = tree_digest(host.objects());
  const std::string env_before = read_file(host.app() / "infra/env");
  fs::remove_all(host.backups());
  fs::remove_all(host.objects());
  fs::remove_all(host.app() / "infra");
  make_dirs(host.app(), 0755);
  PgCluster fresh;
  // The checklist the restore runs: the rows and the attachments they reference.
  TempDir checks("backupctl-checks");
  write_file_atomic(checks.path() / "checks.toml",
                    "[[check]]\nname = \"all documents\"\nkind = \"sql\"\nquery = \"SELECT count(*) FROM documents\"\n"
                    "expect = \"5000\"\n\n[[check]]\nname = \"referenced attachments exist\"\nkind = \"objects\"\n"
                    "query = \"SELECT bucket, object_key FROM attachments\"\nsample = 0\n");
  EnvList e = backup_env(fresh, "archive", host.backups());
  e.emplace_back("CHECKS_FILE", (checks.path() / "checks.toml").string());
  e.insert(e.end(), {{"APP_ROOT", host.app().string()},
                     {"OBJECT_STORAGE", "disk"},
                     {"OBJECT_STORAGE_DIR", host.objects().string()},
                     {"SERVICE_CONTROL", "none"},
                     {"BACKUP_AGE_IDENTITY", host.key().string()},
                     {"CONFIRM", "YES"}});
  e.insert(e.end(), remote.begin(), remote.end());
  CliResult restored = run_backupctl({"restore", "all", "--remote", "--set", "latest"}, e);
  ASSERT_EQ(restored.exit_code, 0) << restored.out << restored.err;
  EXPECT_NE(restored.err.find("post-restore checklist"), std::string::npos) << restored.err;
  EXPECT_NE(restored.err.find("PASS   all documents"), std::string::npos) << restored.err;
  EXPECT_NE(restored.err.find("PASS   referenced attachments exist"), std::string::npos) << restored.err;
  EXPECT_EQ(fresh.psql("archive", "SELECT count(*), sum(id) FROM documents"), "5000|12502500\n");
  EXPECT_EQ(tree_digest(host.objects()), objects_before);
  std::string conf;
  for (const auto& n : list_dir(host.backups() / "config")) {
    if (!n.ends_with(".meta")) conf = n;
  }
  ASSERT_FALSE(conf.empty()) << "restore all --remote did not bring the set's config backup";
  CliResult applied = run_backupctl({"restore", "config", "--remote", "--file", conf, "--mode", "apply"}, e);
  ASSERT_EQ(applied.exit_code, 0) << applied.err;
  EXPECT_EQ(read_file(host.app() / "infra/env"), env_before);
  EXPECT_TRUE(fs::exists(host.app() / "infra/monitoring/prometheus.yml"));
  // The set came back with its attachments and config backups; its database dump was read as it
  // downloaded (nothing of it stored here).
  auto sets = list_dir(host.backups() / "sets");
  ASSERT_EQ(sets.size(), 1u);
  EXPECT_EQ(nlohmann::json::parse(read_file(host.backups() / "sets" / sets.front()))["set_id"], set_id);
  CliResult relisted = run_backupctl({"list", "--json"}, e);
  auto kinds = nlohmann::json::parse(relisted.out);
  ASSERT_EQ(kinds.size(), 2u) << relisted.out;
  std::set<std::string> local_kinds = {kinds[0]["kind"], kinds[1]["kind"]};
  EXPECT_EQ(local_kinds, (std::set<std::string>{"config", "objects"})) << relisted.out;
  EXPECT_EQ(list_dir(host.backups() / "db"), std::vector<std::string>{});
}

// A push killed after two parts of the 40 MiB archive (S3) or after some chunks (folder): the
// rerun sends only what was missing (within 10%), the copy is whole, and nothing unfinished ever
// looks finished on the remote.
TEST(OffSite, APushCutShortResumesWithoutSendingAgainWhatArrived) {
  S3Server s3;
  S3Store(s3.settings()).create_bucket("resume");
  TempDir folder("backupctl-offsite");
  Host host;
  CliResult local = run_backupctl({"backup", "objects", "--no-remote", "--json"}, host.env({}));
  ASSERT_EQ(local.exit_code, 0) << local.err;
  const fs::path archive = json_of(local)["path"].get<std::string>();
  const std::uint64_t size = fs::file_size(archive);
  ASSERT_GT(size, 40u << 20);
  const std::string name = "objects/" + archive.filename().string();

  struct Case {
    std::string label;
    EnvList remote;
    std::string fault;
    std::string signal;
    std::uint64_t arrived_at_least;  // bytes surely there when the signal came
  };
  std::vector<Case> cases = {
      {"s3", s3_remote(s3, "s3://resume/x"), "remote.part-sent#2", "KILL", 2 * (8u << 20)},
      {"s3, SIGTERM", s3_remote(s3, "s3://resume/y"), "remote.part-sent#2", "TERM", 2 * (8u << 20)},
      {"folder", {{"BACKUP_REMOTE_URL", "file://" + folder.path().string()}}, "remote.chunk-written#20", "KILL", 20u << 20},
  };
  for (const Case& c : cases) {
    EnvList killed = host.env(c.remote);
    killed.emplace_back("BACKUPCTL_FAULT", c.fault);
    killed.emplace_back("BACKUPCTL_FAULT_SIGNAL", c.signal);
    CliResult cut = run_backupctl({"push", "--all", "--json"}, killed);
    ASSERT_EQ(cut.exit_code, 128 + (c.signal == "KILL" ? SIGKILL : SIGTERM)) << c.label << cut.err;
    CliResult seen = run_backupctl({"list", "--remote", "--json"}, host.env(c.remote));
    ASSERT_EQ(seen.exit_code, 0) << seen.err;
    EXPECT_TRUE(json_of(seen)["backups"].empty()) << c.label << ": a copy cut short looks finished: " << seen.out;

    CliResult again = run_backupctl({"push", "--all", "--json"}, host.env(c.remote));
    ASSERT_EQ(again.exit_code, 0) << c.label << again.err;
    auto j = json_of(again);
    const std::uint64_t remainder = size - c.arrived_at_least;
    EXPECT_GT(j["bytes"].get<std::uint64_t>(), 0u) << c.label;
    EXPECT_LE(j["bytes"].get<std::uint64_t>(), remainder + remainder / 10 + (1u << 20))
        << c.label << ": the rerun sent again what had arrived (" << j["bytes"] << " of " << size << ")";
    CliResult check = run_backupctl({"verify", "--remote", "--read-data", "--json"}, host.env(c.remote));
    EXPECT_EQ(check.exit_code, 0) << c.label << check.out << check.err;
    CliResult third = run_backupctl({"push", "--json"}, host.env(c.remote));
    EXPECT_EQ(json_of(third)["bytes"], 0) << c.label << ": a complete remote got files again";
  }
  EXPECT_EQ(bucket_files(s3, "resume", "x/")[name], read_file(archive));
  EXPECT_EQ(read_file(folder.path() / name), read_file(archive));
  EXPECT_FALSE(fs::exists(folder.path() / (name + ".partial")));
}

// Downloads killed half-way (SIGKILL after two 8 MiB ranges of the 40 MiB archive): a restore
// --remote on a fresh host leaves no .partial behind it (the next command removes it, and the
// rerun restores), a verify --read-data no scratch copy. Unfinished copies no push will resume
// are dropped from the remote (S3: open multipart uploads of a pruned name), others kept.
TEST(OffSite, KilledDownloadsLeaveNothingBehindAndAbandonedUploadsAreDropped) {
  S3Server s3;
  S3Store store(s3.settings());
  store.create_bucket("fetch");
  Host host;
  const EnvList remote = s3_remote(s3, "s3://fetch/p");
  CliResult made = run_backupctl({"backup", "objects", "--json"}, host.env(remote));
  ASSERT_EQ(made.exit_code, 0) << made.err;
  const std::string name = fs::path(json_of(made)["path"].get<std::string>()).filename().string();
  const std::string objects_before = tree_digest(host.objects());

  TempDir fresh("backupctl-fresh");
  EnvList e = host.env(remote);
  std::erase_if(e, [](const auto& kv) { return kv.first == "BACKUP_DIR"; });
  e.insert(e.end(), {{"BACKUP_DIR", fresh.path().string()}, {"CONFIRM", "YES"}});
  EnvList killed = e;
  killed.emplace_back("BACKUPCTL_FAULT", "remote.chunk-fetched#2");
  const std::vector<std::string> restore = {"restore", "objects", "--remote", "--file", name};
  // SIGTERM or SIGHUP (the SSH session dropped) half-way: the run itself removes its download.
  for (auto [sig, number] : {std::pair<const char*, int>{"TERM", SIGTERM}, {"HUP", SIGHUP}}) {
    EnvList signalled = killed;
    signalled.emplace_back("BACKUPCTL_FAULT_SIGNAL", sig);
    for (const auto& argv : {restore, std::vector<std::string>{"verify", "--remote", "--read-data"}}) {
      CliResult r = run_backupctl(argv, signalled);
      EXPECT_EQ(r.exit_code, 128 + number) << sig << " " << argv[0] << ": " << r.err;
      EXPECT_EQ(list_dir(fresh.path() / "objects"), std::vector<std::string>{}) << sig << " " << argv[0];
      for (const auto& n : list_dir(fresh.path())) EXPECT_FALSE(n.starts_with(".remote-verify.")) << sig << " " << argv[0] << ": " << n;
      EXPECT_TRUE(list_dir(fresh.path() / "journal").empty()) << sig << " " << argv[0];
    }
  }
  EXPECT_EQ(tree_digest(host.objects()), objects_before) << "an interrupted fetch touched the live objects";
  CliResult cut = run_backupctl(restore, killed);
  ASSERT_EQ(cut.exit_code, 128 + SIGKILL) << cut.err;
  EXPECT_TRUE(fs::exists(fresh.path() / "objects" / (name + ".partial"))) << "the kill came before the download";
  CliResult next = run_backupctl({"list"}, e);
  EXPECT_EQ(next.exit_code, 0) << next.err;
  EXPECT_FALSE(fs::exists(fresh.path() / "objects" / (name + ".partial"))) << "the killed fetch's .partial stayed";
  EXPECT_TRUE(list_dir(fresh.path() / "journal").empty());
  fs::remove_all(host.objects() / "attachments");
  CliResult again = run_backupctl(restore, e);
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(tree_digest(host.objects()), objects_before);

  // Killed between the downloaded file and its meta: the rerun takes the file when its bytes
  // are the remote's (and writes the meta); a file of other bytes under that name is refused.
  TempDir fresh2("backupctl-fresh");
  EnvList e2 = e;
  std::erase_if(e2, [](const auto& kv) { return kv.first == "BACKUP_DIR"; });
  e2.emplace_back("BACKUP_DIR", fresh2.path().string());
  EnvList killed2 = e2;
  killed2.emplace_back("BACKUPCTL_FAULT", "remote.fetch-committed");
  CliResult cut2 = run_backupctl(restore, killed2);
  ASSERT_EQ(cut2.exit_code, 128 + SIGKILL) << cut2.err;
  const fs::path fetched = fresh2.path() / "objects" / name;
  ASSERT_TRUE(fs::exists(fetched));
  EXPECT_FALSE(fs::exists(fetched.string() + ".meta"));
  fs::remove_all(host.objects() / "attachments");
  CliResult after_cut = run_backupctl(restore, e2);
  ASSERT_EQ(after_cut.exit_code, 0) << after_cut.err;
  EXPECT_EQ(tree_digest(host.objects()), objects_before);
  EXPECT_TRUE(fs::exists(fetched.string() + ".meta"));
  fs::remove(fetched.string() + ".meta");
  {
    std::string other = read_file(fetched);
    other[other.size() / 2] ^= 1;
    fs::remove(fetched);
    write_file_atomic(fetched, other, 0600);
  }
  CliResult refused = run_backupctl(restore, e2);
  EXPECT_EQ(refused.exit_code, 2) << refused.err;
  EXPECT_NE(refused.err.find("exists and is not the remote's"), std::string::npos) << refused.err;
  EXPECT_EQ(tree_digest(host.objects()), objects_before);

  CliResult verify_cut = run_backupctl({"verify", "--remote", "--read-data"}, killed);
  ASSERT_EQ(verify_cut.exit_code, 128 + SIGKILL) << verify_cut.err;
  auto scratch = [&] {
    std::vector<std::string> out;
    for (const auto& n : list_dir(fresh.path())) {
      if (n.starts_with(".remote-verify.")) out.push_back(n);
    }
    return out;
  };
  EXPECT_EQ(scratch().size(), 1u) << "the kill came before the download";
  // Scratch of verifies in another container (another pid namespace): a recent one may be at
  // work and stays, one two days old is left over and goes.
  const fs::path other_recent = fresh.path() / ".remote-verify.00000000.1.4242",
                 other_old = fresh.path() / ".remote-verify.00000000.2.4242";
  fs::create_directories(other_recent / "db");
  fs::create_directories(other_old / "db");
  fs::last_write_time(other_old, fs::file_time_type::clock::now() - std::chrono::hours(49));
  CliResult verified = run_backupctl({"verify", "--remote", "--read-data"}, e);
  EXPECT_EQ(verified.exit_code, 0) << verified.out << verified.err;
  EXPECT_EQ(scratch(), std::vector<std::string>{other_recent.filename().string()})
      << "the killed verify's download stays, or another container's live one went";
  fs::remove_all(other_recent);

  // Two unfinished uploads: one of a name being pruned (dropped), one a push may still resume.
  PutOptions none;
  std::string part(5u << 20, 'x');
  for (const char* key : {"p/objects/objects_disk_20200101_000000.tar.gz.age", "p/objects/objects_disk_20991231_000000.tar.gz.age"}) {
    auto upload = store.start_multipart("fetch", key, none);
    MemorySource body(part.data(), part.size());
    upload->upload_part(1, body, "");
    upload->keep_open();
  }
  Config config;
  config.backup_dir = fresh.path();
  RemoteConfig rc;
  rc.url = "s3://fetch/p";
  rc.bucket = "fetch";
  rc.prefix = "p/";
  rc.endpoint = s3.endpoint();
  rc.access_key = s3.access_key();
  rc.secret_key = s3.secret_key();
  config.remote = rc;
  auto r = make_remote(config);
  auto dropped = r->drop_unfinished([](const std::string& n, Clock::time_point started) {
    EXPECT_LT(std::chrono::abs(Clock::now() - started), std::chrono::hours(1)) << n << ": the start time was misread";
    return n == "objects/objects_disk_20200101_000000.tar.gz.age";
  });
  EXPECT_EQ(dropped, std::vector<std::string>{"objects/objects_disk_20200101_000000.tar.gz.age"});
  std::vector<std::string> open;
  for (const auto& u : store.open_uploads("fetch", "p/")) open.push_back(u.key);
  EXPECT_EQ(open, std::vector<std::string>{"p/objects/objects_disk_20991231_000000.tar.gz.age"});
}

// A download given up while it hangs on a server that stopped sending mid-range does not wait
// for that server: its ranges end within a second or two of the stop, where curl's own limit (no
// byte for 60 s, then retries) held them for minutes. This is the stop a streamed restore that
// failed gives its download (IncomingBackup::download runs under a StopScope on the spool's
// cancel flag, which its destructor sets before it waits for the thread).
TEST(OffSite, AGivenUpDownloadEndsAtOnceThoughTheServerHangs) {
  S3Server s3;
  S3Store store(s3.settings());
  store.create_bucket("hang");
  const std::string name = "db/archive_archive_20260101_000000.dump";
  {
    std::string bytes(40u << 20, 'd');  // ranged: five 8 MiB ranges, several at a time
    PutOptions none;
    MemorySource body(bytes.data(), bytes.size());
    store.put_object("hang", "p/" + name, body, none);
  }
  test::TcpForwarder network(s3.port());
  Config config;
  RemoteConfig rc;
  rc.url = "s3://hang/p";
  rc.bucket = "hang";
  rc.prefix = "p/";
  rc.endpoint = "http://127.0.0.1:" + std::to_string(network.port());
  rc.access_key = s3.access_key();
  rc.secret_key = s3.secret_key();
  config.remote = rc;
  auto remote = make_remote(config);
  network.stall_after(12u << 20);

  std::atomic<bool> stop{false};
  io::NullSink null;
  io::CountSink got(null);
  std::exception_ptr failure;
  std::thread download([&] {
    StopScope scope(&stop);
    try {
      remote->get(name, got);
    } catch (...) {
      failure = std::current_exception();
    }
  });
  if (!wait_for([&] { return network.stalled(); }, 60)) {
    stop = true;
    download.join();
    FAIL() << "the download never reached the stall";
  }
  std::this_thread::sleep_for(std::chrono::seconds(2));  // every range in flight now waits on the server
  const auto stopped = std::chrono::steady_clock::now();
  stop = true;
  download.join();
  const auto took = std::chrono::steady_clock::now() - stopped;
  EXPECT_LT(took, std::chrono::seconds(10)) << "the download waited for the hung server";
  EXPECT_LT(got.bytes(), 40u << 20) << "the whole object arrived: the server never hung";
  ASSERT_TRUE(failure) << "a stopped download must not look finished";
  try {
    std::rethrow_exception(failure);
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::interrupted) << e.what();
  }
}

// The S3 server dies in the middle of a push (slowed by BACKUP_REMOTE_BWLIMIT): one clear error;
// once it is back, the rerun sends only the parts that had not arrived.
TEST(OffSite, TheServerDyingMidPushIsOneErrorAndTheRerunSendsTheRest) {
  S3Server s3;
  S3Store(s3.settings()).create_bucket("dies");
  Host host;
  CliResult local = run_backupctl({"backup", "objects", "--no-remote", "--json"}, host.env({}));
  ASSERT_EQ(local.exit_code, 0) << local.err;
  const fs::path archive = json_of(local)["path"].get<std::string>();
  const std::uint64_t size = fs::file_size(archive);
  EnvList e = host.env(s3_remote(s3, "s3://dies/p"));
  EnvList slow = e;
  // 4 MB/s per part, 4 parts at a time: the first four arrive after ~2 s, the fifth by ~4 s.
  slow.emplace_back("BACKUP_REMOTE_BWLIMIT", "16M");
  Child push = spawn_backupctl({"push"}, slow);
  // Killed once some parts are there and before the last is.
  const std::string key = "p/objects/" + archive.filename().string();
  S3Store watcher(s3.settings());
  ASSERT_TRUE(wait_for(
      [&] {
        auto open = watcher.open_upload("dies", key);
        return open && !watcher.list_parts("dies", key, *open).empty();
      },
      30))
      << "no part arrived";
  s3.kill_server();
  push.drain();
  ExitStatus st = push.wait();
  EXPECT_EQ(st.code, 3) << st.describe() << ": " << push.stderr_tail();
  EXPECT_NE(push.stderr_tail().find("backupctl: error: cannot upload part"), std::string::npos) << push.stderr_tail();
  EXPECT_NE(push.stderr_tail().find("the S3 server is down"), std::string::npos) << push.stderr_tail();
  s3.restart_server();
  // What arrived before the server died: the parts of the open upload.
  S3Store store(s3.settings());
  auto id = store.open_upload("dies", key);
  ASSERT_TRUE(id.has_value()) << "the interrupted upload was not left open to resume";
  std::uint64_t there = 0;
  for (const auto& part : store.list_parts("dies", key, *id)) there += part.size;
  EXPECT_GT(there, 0u);
  EXPECT_LT(there, size);
  CliResult again = run_backupctl({"push", "--json"}, e);
  ASSERT_EQ(again.exit_code, 0) << again.err;
  const std::uint64_t remainder = size - there;
  EXPECT_LE(json_of(again)["bytes"].get<std::uint64_t>(), remainder + remainder / 10 + (1u << 20)) << again.out;
  EXPECT_EQ(bucket_files(s3, "dies", "p/")["objects/" + archive.filename().string()], read_file(archive));
}

// Folder remote: a flipped byte is found by --read-data (the listing cannot see it) and named; the
// remote's retention deletes an expired copy but keeps the newest; plaintext and Object Lock on a
// folder are refused with the way out; pings go to URL/start and URL (URL/fail on failure).
TEST(OffSite, DamageRetentionRefusalsAndPingsOnAFolderRemote) {
  TempDir folder("backupctl-offsite");
  Host host;
  const EnvList remote = {{"BACKUP_REMOTE_URL", "file://" + folder.path().string()},
                          {"BACKUP_KEEP_MIN", "1"},
                          {"BACKUP_REMOTE_RETENTION_DAYS", "2"}};
  {
    CaptureServer hook("HTTP/1.1 200 OK", 2);
    EnvList e = host.env(remote);
    e.emplace_back("BACKUP_PING_URL", hook.url() + "/ping/abc-123");
    CliResult db = run_backupctl({"backup", "db"}, e);
    ASSERT_EQ(db.exit_code, 0) << db.err;
    const auto& reqs = hook.requests();
    ASSERT_EQ(reqs.size(), 2u);
    EXPECT_TRUE(reqs[0].starts_with("POST /ping/abc-123/start ")) << reqs[0];
    EXPECT_TRUE(reqs[1].starts_with("POST /ping/abc-123 ")) << reqs[1];
  }
  std::string dump;
  for (const auto& n : list_dir(folder.path() / "db")) {
    if (n.ends_with(".dump.age")) dump = n;
  }
  ASSERT_FALSE(dump.empty()) << "the dump is not on the remote";
  flip_byte(folder.path() / "db" / dump, 1000);
  CliResult shallow = run_backupctl({"verify", "--remote"}, host.env(remote));
  EXPECT_EQ(shallow.exit_code, 0) << "the listing cannot see a flipped byte: " << shallow.out;
  CliResult deep = run_backupctl({"verify", "--remote", "--read-data"}, host.env(remote));
  EXPECT_NE(deep.exit_code, 0) << deep.out;
  EXPECT_NE(deep.out.find("FAIL  db/" + dump), std::string::npos) << deep.out;

  // Retention: the damaged copy is dated 10 days back on the remote; the next backup's push prunes
  // it there (and keeps the new one, BACKUP_KEEP_MIN=1), locally the old one stays (30 days).
  {
    const fs::path meta = folder.path() / "db" / (dump + ".meta");
    auto m = nlohmann::json::parse(read_file(meta));
    m["created_at"] = iso8601(Clock::now() - std::chrono::hours(240));
    write_file_atomic(meta, m.dump());
  }
  {
    CaptureServer hook("HTTP/1.1 200 OK", 2);
    EnvList e = host.env(remote);
    e.emplace_back("BACKUP_PING_URL", hook.url() + "/p");
    e.emplace_back("PGDATABASE", "gone");
    EXPECT_NE(run_backupctl({"backup", "db"}, e).exit_code, 0);
    ASSERT_EQ(hook.requests().size(), 2u);
    EXPECT_TRUE(hook.requests()[1].starts_with("POST /p/fail ")) << hook.requests()[1];
    EXPECT_NE(hook.requests()[1].find("gone"), std::string::npos) << hook.requests()[1];
  }
  // Unfinished copies: of the name pruned (dropped), a week old (dropped), of a name no longer
  // here (dropped), a fresh one of a backup here (kept: a push may resume it).
  CliResult config_backup = run_backupctl({"backup", "config", "--no-remote", "--json"}, host.env(remote));
  ASSERT_EQ(config_backup.exit_code, 0) << config_backup.err;
  const std::string config_name = fs::path(json_of(config_backup)["path"].get<std::string>()).filename();
  const fs::path doomed_partial = folder.path() / "db" / (dump + ".partial");
  const fs::path old_partial = folder.path() / "objects" / "objects_disk_20261101_000000.tar.gz.age.partial";
  const fs::path gone_partial = folder.path() / "config" / "config_20261202_000000.tar.gz.age.partial";
  const fs::path fresh_partial = folder.path() / "config" / (config_name + ".partial");
  make_dirs(folder.path() / "objects");
  make_dirs(folder.path() / "config");
  for (const auto& p : {doomed_partial, old_partial, gone_partial, fresh_partial}) write_file_atomic(p, "part", 0600);
  {
    auto week_ago = std::chrono::system_clock::now() - std::chrono::hours(24 * 8);
    fs::last_write_time(old_partial, fs::file_time_type::clock::now() - (std::chrono::system_clock::now() - week_ago));
  }
  ASSERT_EQ(run_backupctl({"backup", "db"}, host.env(remote)).exit_code, 0);
  EXPECT_FALSE(fs::exists(doomed_partial)) << "the unfinished copy of a pruned name stayed";
  EXPECT_FALSE(fs::exists(old_partial)) << "a week-old unfinished copy stayed";
  EXPECT_FALSE(fs::exists(gone_partial)) << "the unfinished copy of a backup pruned here stayed";
  EXPECT_TRUE(fs::exists(fresh_partial)) << "an unfinished copy a push may resume was dropped";
  std::vector<std::string> dumps;
  for (const auto& n : list_dir(folder.path() / "db")) {
    if (n.ends_with(".dump.age")) dumps.push_back(n);
  }
  ASSERT_EQ(dumps.size(), 1u) << "the expired copy stayed on the remote";
  EXPECT_NE(dumps.front(), dump);
  EXPECT_TRUE(fs::exists(host.backups() / "db" / dump)) << "the remote's retention deleted a local backup";

  // Without encryption the copy is refused, the local backup kept; allowed, it goes.
  EnvList plain = host.env(remote);
  std::erase_if(plain, [](const auto& kv) { return kv.first == "BACKUP_AGE_RECIPIENTS"; });
  CliResult refused = run_backupctl({"backup", "config"}, plain);
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_NE(refused.err.find("refusing to copy unencrypted backups"), std::string::npos) << refused.err;
  EXPECT_NE(refused.err.find("the backup is done"), std::string::npos) << refused.err;
  EXPECT_NE(refused.err.find("BACKUP_REMOTE_ALLOW_PLAINTEXT=yes"), std::string::npos) << refused.err;
  plain.emplace_back("BACKUP_REMOTE_ALLOW_PLAINTEXT", "yes");
  EXPECT_EQ(run_backupctl({"push"}, plain).exit_code, 0);
  EnvList locked = host.env(remote);
  locked.emplace_back("BACKUP_REMOTE_OBJECT_LOCK_DAYS", "7");
  CliResult lock = run_backupctl({"list", "--remote"}, locked);
  EXPECT_EQ(lock.exit_code, 2) << lock.err;
  EXPECT_NE(lock.err.find("BACKUP_REMOTE_OBJECT_LOCK_DAYS needs an S3 remote"), std::string::npos) << lock.err;
}

// S3 Object Lock: with BACKUP_REMOTE_OBJECT_LOCK_DAYS the copies carry COMPLIANCE retention, so
// the backup host's key cannot delete them; a bucket without Object Lock says so clearly.
TEST(OffSite, ObjectLockKeepsCopiesFromBeingDeleted) {
  S3Server s3;
  Host host;
  RunResult made = s3.aws({"s3api", "create-bucket", "--bucket", "locked", "--object-lock-enabled-for-bucket"});
  ASSERT_TRUE(made.status.ok()) << made.err;
  EnvList e = host.env(s3_remote(s3, "s3://locked/p"));
  e.emplace_back("BACKUP_REMOTE_OBJECT_LOCK_DAYS", "1");
  CliResult r = run_backupctl({"backup", "config"}, e);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::string key;
  S3Store(s3.settings()).list_objects("locked", "p/config/", [&](const ObjectEntry& o) {
    if (!o.key.ends_with(".meta")) key = o.key;
  });
  ASSERT_FALSE(key.empty());
  RunResult versions = s3.aws({"s3api", "list-object-versions", "--bucket", "locked", "--prefix", key});
  auto v = nlohmann::json::parse(versions.out, nullptr, false);
  ASSERT_FALSE(v.is_discarded()) << versions.out << versions.err;
  std::string version = v["Versions"][0]["VersionId"];
  // `--version-id=ID` in one word: RGW's ids may begin with '-', which awscli would take for an option.
  RunResult del = s3.aws({"s3api", "delete-object", "--bucket", "locked", "--key", key, "--version-id=" + version});
  EXPECT_FALSE(del.status.ok()) << "a locked copy was deleted";
  EXPECT_NE(del.err.find("AccessDenied"), std::string::npos) << del.err;
  RunResult still = s3.aws({"s3api", "head-object", "--bucket", "locked", "--key", key, "--version-id=" + version});
  EXPECT_TRUE(still.status.ok()) << still.err;
}

}  // namespace backupctl::test

namespace backupctl::test {

// A remote is written by whoever holds its key: crafted metas, sets and names there are reported,
// never followed. Nothing is written outside BACKUP_DIR, nothing there is overwritten, and each
// command ends with one clear error.
TEST(OffSite, CraftedMetasSetsAndNamesOnTheRemoteAreNotFollowed) {
  TempDir folder("backupctl-offsite");
  TempDir outside("backupctl-outside");
  Host host;
  const EnvList remote = {{"BACKUP_REMOTE_URL", "file://" + folder.path().string()}};
  ASSERT_EQ(run_backupctl({"backup", "all"}, host.env(remote)).exit_code, 0);
  std::string dump;
  for (const auto& n : list_dir(folder.path() / "db")) {
    if (n.ends_with(".dump.age")) dump = n;
  }
  ASSERT_FALSE(dump.empty());
  auto meta = nlohmann::json::parse(read_file(folder.path() / "db" / (dump + ".meta")));
  const std::string stamp = "20260101_000000";
  // 1. A meta whose roles file climbs out; 2. a meta describing another file; 3. not JSON;
  // 4. a set naming a part outside; 5. a symlink in the remote pointing outside.
  auto climbing = meta;
  climbing["file"] = "archive_archive_" + stamp + ".dump.age";
  climbing["parts"]["roles"]["file"] = "../../" + outside.path().filename().string() + "/owned";
  write_file_atomic(folder.path() / "db" / ("archive_archive_" + stamp + ".dump.age"), read_file(folder.path() / "db" / dump));
  write_file_atomic(folder.path() / "db" / ("archive_archive_" + stamp + ".dump.age.meta"), climbing.dump());
  auto other = meta;
  other["file"] = "archive_other_" + stamp + ".dump.age";
  write_file_atomic(folder.path() / "db" / ("archive_archive_20260102_000000.dump.age.meta"), other.dump());
  write_file_atomic(folder.path() / "db" / "archive_archive_20260103_000000.dump.age.meta", "{not json");
  write_file_atomic(folder.path() / "sets" / "set_20260104_000000.json",
                    nlohmann::json({{"set_id", "20260104_000000-evil"}, {"complete", true},
                                    {"parts", {{"db", {{"file", "../../../" + outside.path().filename().string() + "/x.dump"}}}}}})
                        .dump());
  fs::create_symlink(outside.path() / "secret", folder.path() / "config" / "config_20260105_000000.tar.gz.age");
  write_file_atomic(outside.path() / "secret", "outside");

  CliResult listed = run_backupctl({"list", "--remote", "--json"}, host.env(remote));
  ASSERT_EQ(listed.exit_code, 0) << listed.err;
  int bad = 0;
  const auto listing = json_of(listed);
  for (const auto& b : listing["backups"]) bad += b["state"] == "bad meta";
  EXPECT_EQ(bad, 2) << listed.out;  // the one for another file, the one that is not JSON

  CliResult verified = run_backupctl({"verify", "--remote", "--read-data"}, host.env(remote));
  EXPECT_NE(verified.exit_code, 0) << verified.out;
  EXPECT_NE(verified.out.find("roles file: not followed"), std::string::npos) << verified.out;

  EnvList e = host.env(remote);
  e.emplace_back("CONFIRM", "YES");
  CliResult climbed = run_backupctl({"restore", "db", "--remote", "--file", "archive_archive_" + stamp + ".dump.age"}, e);
  EXPECT_EQ(climbed.exit_code, 5) << climbed.err;
  EXPECT_NE(climbed.err.find("not followed"), std::string::npos) << climbed.err;
  CliResult evil = run_backupctl({"restore", "all", "--remote", "--set", "20260104_000000-evil"}, e);
  EXPECT_NE(evil.exit_code, 0);
  CliResult named = run_backupctl({"restore", "db", "--remote", "--file", "../../etc/passwd"}, e);
  EXPECT_EQ(named.exit_code, 2) << named.err;
  EXPECT_EQ(list_dir(outside.path()), std::vector<std::string>{"secret"});
  EXPECT_EQ(read_file(outside.path() / "secret"), "outside");
  for (const auto& kind : {"db", "objects", "config", "sets"}) {
    for (const auto& n : list_dir(host.backups() / kind)) EXPECT_EQ(n.find("2026010"), std::string::npos) << kind << "/" << n;
  }
}

// restore db --remote reads the dump as it downloads (the load runs while the rest arrives) and
// stores nothing in BACKUP_DIR; nothing is swapped in before the whole file matched the remote
// meta. Without CONFIRM=YES the plan comes from the first bytes. A signal or a kill mid-download,
// a copy damaged on the remote (encrypted: age refuses the chunk; plaintext: the sha256 at the
// end of the download, which the swap waits for), a copy cut short or grown: the live
// database stays as it was, no side database, nothing left in BACKUP_DIR.
TEST(OffSite, ARestoreFromTheRemoteLoadsAsItDownloadsAndSwapsInOnlyWhatMatchedTheMeta) {
  S3Server s3;
  S3Store store(s3.settings());
  store.create_bucket("stream");
  Host host;
  // Over 16 MiB uncompressed: the copy comes in parallel ranges (S3Remote::get).
  host.pg.psql("archive", "CREATE TABLE pages AS SELECT i AS id, repeat(md5(i::text), 4) AS body FROM generate_series(1, 200000) i");
  EnvList remote = s3_remote(s3, "s3://stream/p");
  remote.emplace_back("BACKUP_DB_COMPRESSION", "none");
  CliResult made = run_backupctl({"backup", "db", "--json"}, host.env(remote));
  ASSERT_EQ(made.exit_code, 0) << made.err;
  const fs::path local = json_of(made)["path"].get<std::string>();
  const std::string name = local.filename().string();
  ASSERT_TRUE(name.ends_with(".dump.age")) << name;
  ASSERT_GT(fs::file_size(local), 16u << 20) << "too small to come in ranges";

  TempDir fresh("backupctl-fresh");
  EnvList e = host.env(remote);
  std::erase_if(e, [](const auto& kv) { return kv.first == "BACKUP_DIR"; });
  e.emplace_back("BACKUP_DIR", fresh.path().string());
  // A 1 MiB spool window (64 MiB by default): the download is held back while the plan reads the
  // table of contents and kept 1 MiB ahead of the load, whose read bytes are dropped.
  e.emplace_back("BACKUPCTL_SPOOL_WINDOW", std::to_string(1u << 20));
  EnvList confirmed = e;
  confirmed.emplace_back("CONFIRM", "YES");
  auto live = [&] { return host.pg.psql("archive", "SELECT (SELECT count(*) FROM documents) || ' ' || (SELECT count(*) FROM pages)"); };
  auto nothing_left = [&](const std::string& at) {
    std::error_code ec;
    EXPECT_EQ(fs::exists(fresh.path() / "db", ec) ? list_dir(fresh.path() / "db") : std::vector<std::string>{}, std::vector<std::string>{})
        << at << ": a restore from the remote stored something";
    EXPECT_TRUE(list_dir(fresh.path() / "journal").empty()) << at;
    EXPECT_EQ(host.pg.psql("postgres", "SELECT count(*) FROM pg_database WHERE datname LIKE '%\\_\\_restore\\_%'"), "0\n")
        << at << ": a side database is left";
  };
  const std::vector<std::string> restore = {"restore", "db", "--remote", "--file", name};
  host.pg.psql("archive", "DELETE FROM documents WHERE id > 100; DELETE FROM pages WHERE id > 10");

  CliResult plan = run_backupctl(restore, e);
  EXPECT_EQ(plan.exit_code, 9) << plan.err;
  EXPECT_NE(plan.out.find("s3://stream/p/db/" + name + " (read as it downloads"), std::string::npos) << plan.out;
  EXPECT_NE(plan.err.find("backupctl restore db --remote --file " + name), std::string::npos) << plan.err;
  EXPECT_EQ(live(), "100 10\n");
  nothing_left("without CONFIRM=YES");

  for (auto [sig, number] : {std::pair<const char*, int>{"TERM", SIGTERM}, {"HUP", SIGHUP}}) {
    EnvList signalled = confirmed;
    signalled.insert(signalled.end(), {{"BACKUPCTL_FAULT", "remote.chunk-fetched#2"}, {"BACKUPCTL_FAULT_SIGNAL", sig}});
    CliResult r = run_backupctl(restore, signalled);
    EXPECT_EQ(r.exit_code, 128 + number) << sig << ": " << r.err;
    EXPECT_EQ(live(), "100 10\n") << sig;
    nothing_left(sig);
  }
  EnvList killed = confirmed;
  killed.emplace_back("BACKUPCTL_FAULT", "remote.chunk-fetched#2");
  CliResult cut = run_backupctl(restore, killed);
  EXPECT_EQ(cut.exit_code, 128 + SIGKILL) << cut.err;
  CliResult next = run_backupctl({"list"}, e);
  EXPECT_EQ(next.exit_code, 0) << next.err;
  EXPECT_EQ(live(), "100 10\n");
  nothing_left("SIGKILL mid-download");

  std::vector<std::string> as_json = restore;
  as_json.push_back("--json");
  CliResult done = run_backupctl(as_json, confirmed);
  ASSERT_EQ(done.exit_code, 0) << done.err;
  EXPECT_EQ(live(), "5000 200000\n");
  EXPECT_EQ(host.pg.psql("archive", "SELECT sum(length(body)) FROM pages"), std::to_string(200000 * 128) + "\n");
  EXPECT_EQ(json_of(done)["file"], "s3://stream/p/db/" + name) << done.out;
  EXPECT_TRUE(json_of(done)["phases"].contains("download check")) << done.out;
  nothing_left("the restore");

  // A flipped byte in the middle of the encrypted copy: age refuses the chunk.
  host.pg.psql("archive", "DELETE FROM documents WHERE id > 100; DELETE FROM pages WHERE id > 10");
  {
    std::string bytes = read_file(local);
    bytes[bytes.size() / 2] ^= 0x20;
    PutOptions none;
    MemorySource body(bytes.data(), bytes.size());
    store.put_object("stream", "p/db/" + name, body, none);
  }
  CliResult damaged = run_backupctl(restore, confirmed);
  EXPECT_EQ(damaged.exit_code, 5) << damaged.err;
  EXPECT_EQ(live(), "100 10\n");
  nothing_left("a damaged encrypted copy");

  // Plaintext on a folder remote: a flipped byte in the table data would load; the sha256 at the
  // end of the download refuses it (a folder's copy arrives at once, so here before the load
  // begins: every reader of a failed download gets its error). A copy cut short or grown too.
  TempDir folder("backupctl-offsite");
  EnvList plain = host.env({{"BACKUP_REMOTE_URL", "file://" + folder.path().string()},
                            {"BACKUP_REMOTE_ALLOW_PLAINTEXT", "yes"},
                            {"BACKUP_DB_COMPRESSION", "none"}});
  std::erase_if(plain, [](const auto& kv) { return kv.first == "BACKUP_AGE_RECIPIENTS" || kv.first == "BACKUP_DIR"; });
  EnvList plain_local = plain;
  plain_local.emplace_back("BACKUP_DIR", host.backups().string());
  CliResult made_plain = run_backupctl({"backup", "db", "--json"}, plain_local);
  ASSERT_EQ(made_plain.exit_code, 0) << made_plain.err;
  const fs::path plain_dump = json_of(made_plain)["path"].get<std::string>();
  host.pg.psql("archive", "DELETE FROM documents WHERE id > 50; DELETE FROM pages WHERE id > 5");  // the backup has 100 10
  const fs::path copy = folder.path() / "db" / plain_dump.filename();
  ASSERT_TRUE(fs::exists(copy));
  plain.insert(plain.end(), {{"BACKUP_DIR", fresh.path().string()}, {"CONFIRM", "YES"}});
  const std::vector<std::string> restore_plain = {"restore", "db", "--remote", "--file", plain_dump.filename().string()};
  const std::string good = read_file(copy);
  auto replace_copy = [&](const std::string& bytes) {
    fs::remove(copy);
    write_file_atomic(copy, bytes, 0600);
  };
  std::string flipped = good;
  flipped[flipped.size() / 2] ^= 0x20;  // a character of a `pages` row: the load takes it
  replace_copy(flipped);
  CliResult mismatch = run_backupctl(restore_plain, plain);
  EXPECT_EQ(mismatch.exit_code, 5) << mismatch.err;
  EXPECT_NE(mismatch.err.find("does not match the sha256 of its meta"), std::string::npos) << mismatch.err;
  EXPECT_EQ(live(), "50 5\n");
  nothing_left("a plaintext copy with another byte");
  for (const auto& [bytes, why] : {std::pair<std::string, std::string>{good.substr(0, good.size() - 1000), "shorter than its meta"},
                                   {good + "more", "longer than its meta"}}) {
    replace_copy(bytes);
    CliResult r = run_backupctl(restore_plain, plain);
    EXPECT_EQ(r.exit_code, 5) << why << ": " << r.err;
    EXPECT_NE(r.err.find(why), std::string::npos) << r.err;
    EXPECT_EQ(live(), "50 5\n") << why;
    nothing_left(why);
  }
  replace_copy(good);
  CliResult plain_done = run_backupctl(restore_plain, plain);
  ASSERT_EQ(plain_done.exit_code, 0) << plain_done.err;
  EXPECT_EQ(live(), "100 10\n");
  nothing_left("the plaintext restore");
}

}  // namespace backupctl::test
