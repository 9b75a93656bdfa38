// `backupctl backup objects` / `restore objects` against Ceph RGW (which checks every signature)
// and the disk store, cross-checked with Debian's awscli as the independent client.
#include <archive.h>
#include <archive_entry.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <regex>

#include "tar/tar.hpp"
#include "fixture.hpp"
#include "s3_fixture.hpp"
#include "storage/s3/s3_store.hpp"
#include "util/error.hpp"

namespace backupctl::test {

namespace {

std::string sha256_of(const std::string& data) {
  TempDir t;
  write_file_atomic(t.path() / "f", data);
  return sha256sum(t.path() / "f");
}

// An object as awscli sees it.
struct Seen {
  std::string sha256;
  std::string content_type;
  nlohmann::json metadata;
  bool operator==(const Seen&) const = default;
};

std::map<std::string, std::string> snapshot_dir(const fs::path& root);

// awscli costs ~1.5 CPU-seconds per call here, so the bytes come with one `s3 sync` per bucket
// and only the headers cost a call per object.
std::map<std::string, Seen> snapshot_s3(const S3Server& s3, const std::vector<std::string>& buckets) {
  std::map<std::string, Seen> out;
  for (const auto& b : buckets) {
    RunResult list = s3.aws({"s3api", "list-objects-v2", "--bucket", b, "--output", "json"});
    EXPECT_TRUE(list.status.ok()) << list.err;
    if (!list.status.ok()) continue;
    TempDir tmp;
    RunResult sync = s3.aws({"s3", "sync", "--only-show-errors", "s3://" + b, tmp.path().string()});
    EXPECT_TRUE(sync.status.ok()) << sync.err;
    const auto bytes = snapshot_dir(tmp.path());
    auto j = list.out.empty() ? nlohmann::json::object() : nlohmann::json::parse(list.out);
    for (const auto& c : j.value("Contents", nlohmann::json::array())) {
      std::string key = c["Key"];
      RunResult head = s3.aws({"s3api", "head-object", "--bucket", b, "--key", key, "--output", "json"});
      EXPECT_TRUE(head.status.ok()) << head.err;
      auto h = nlohmann::json::parse(head.out);
      auto got = bytes.find(key);
      EXPECT_NE(got, bytes.end()) << "listed but not downloaded: " << key;
      out[b + "/" + key] = {got == bytes.end() ? "" : got->second, h.value("ContentType", ""),
                            h.value("Metadata", nlohmann::json::object())};
    }
  }
  return out;
}

std::map<std::string, std::string> snapshot_dir(const fs::path& root) {
  std::map<std::string, std::string> out;
  for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator(); ++it) {
    if (it->is_regular_file()) out[fs::relative(it->path(), root).generic_string()] = sha256sum(it->path());
  }
  return out;
}

// Bytes only, with one awscli call per bucket (awscli costs ~0.5 s per call).
std::map<std::string, std::string> snapshot_bytes(const S3Server& s3, const std::string& bucket) {
  TempDir tmp;
  RunResult r = s3.aws({"s3", "sync", "--only-show-errors", "s3://" + bucket, tmp.path().string()});
  EXPECT_TRUE(r.status.ok()) << r.err;
  return snapshot_dir(tmp.path());
}

fs::path only_archive(const fs::path& backup_dir) {
  for (const auto& f : list_dir(backup_dir / "objects")) {
    if (std::regex_match(f, std::regex(R"(objects_(minio|disk)_\d{8}_\d{6}\.tar\.(gz|zst))"))) {
      return backup_dir / "objects" / f;
    }
  }
  ADD_FAILURE() << "no objects archive in " << backup_dir;
  return {};
}

class ObjectsTest : public ::testing::Test {
 protected:
  S3Server s3;
  TempDir backups, files;

  EnvList env() const {
    EnvList e = s3.env();
    e.emplace_back("BACKUP_DIR", backups.path().string());
    return e;
  }
  EnvList confirmed() const {
    EnvList e = env();
    e.emplace_back("CONFIRM", "YES");
    return e;
  }
  void aws_put(const std::string& bucket, const std::string& key, const std::string& data,
               std::vector<std::string> extra = {}) {
    fs::path f = files.path() / "upload";
    write_file_atomic(f, data);
    std::vector<std::string> args = {"s3", "cp", f.string(), "s3://" + bucket + "/" + key};
    args.insert(args.end(), extra.begin(), extra.end());
    RunResult r = s3.aws(args);
    ASSERT_TRUE(r.status.ok()) << key << ": " << r.err;
  }
  void TearDown() override {
    EXPECT_EQ(s3.rejections(), expected_rejections) << "requests with a bad signature";
  }
  int expected_rejections = 0;
};

}  // namespace

TEST_F(ObjectsTest, AwsCliObjectsComeBackIdenticalAfterBackupWipeRestore) {
  ASSERT_TRUE(s3.aws({"s3", "mb", "s3://attachments"}).status.ok());
  ASSERT_TRUE(s3.aws({"s3", "mb", "s3://thumbnails"}).status.ok());
  aws_put("attachments", "2026/02/계약서 스캔.pdf", random_bytes(50000, 1),
          {"--content-type", "application/pdf", "--metadata", "uploaded-by=kim,doc-id=42"});
  aws_put("attachments", "with space/and%percent+plus&amp.txt", "text text text",
          {"--content-type", "text/plain; charset=utf-8"});
  aws_put("attachments", "deep/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q/r/s/t/u/v/w/x/y/z/file.json",
          "{\"a\": 1}", {"--content-type", "application/json"});
  aws_put("attachments", std::string(150, 'l') + "/" + std::string(150, 'm') + ".bin", random_bytes(300, 2));
  aws_put("attachments", "empty.txt", "");
  // Multipart both ways: awscli's upload, and our restore's (over 24 MiB: parts side by side).
  aws_put("thumbnails", "video/large.mp4", random_bytes(30 << 20, 3),
          {"--content-type", "video/mp4", "--metadata", "codec=h264"});
  auto before = snapshot_s3(s3, {"attachments", "thumbnails"});
  ASSERT_EQ(before.size(), 6u);

  CliResult b = run_backupctl({"backup", "objects", "--json"}, env());
  ASSERT_EQ(b.exit_code, 0) << b.err;
  auto meta = nlohmann::json::parse(b.out)["meta"];
  EXPECT_EQ(meta["kind"], "objects");
  EXPECT_EQ(meta["source"]["objects"], 6);
  EXPECT_EQ(meta["source"]["buckets"], (nlohmann::json{"attachments", "thumbnails"}));
  fs::path archive = only_archive(backups.path());
  EXPECT_TRUE(archive.filename().string().starts_with("objects_minio_"));
  EXPECT_EQ(meta["sha256"], sha256sum(archive));
  // Stock tar reads it; objects sit under <bucket>/<key>.
  RunResult tar = run_command({.argv = {"tar", "tzf", archive.string()}});
  ASSERT_TRUE(tar.status.ok()) << tar.err;
  EXPECT_NE(tar.out.find("attachments/2026/02/계약서 스캔.pdf"), std::string::npos) << tar.out;
  EXPECT_NE(tar.out.find(".backupctl/manifest.json"), std::string::npos);
  CliResult v = run_backupctl({"verify", archive.string()}, env());
  EXPECT_EQ(v.exit_code, 0) << v.out << v.err;

  // Wipe both buckets entirely, then restore.
  ASSERT_TRUE(s3.aws({"s3", "rb", "s3://attachments", "--force"}).status.ok());
  ASSERT_TRUE(s3.aws({"s3", "rb", "s3://thumbnails", "--force"}).status.ok());
  CliResult plan = run_backupctl({"restore", "objects", "--file", archive.string()}, env());
  EXPECT_EQ(plan.exit_code, 9);
  EXPECT_NE(plan.out.find("create:     bucket(s) attachments, thumbnails"), std::string::npos) << plan.out;
  EXPECT_NE(s3.aws({"s3api", "head-bucket", "--bucket", "attachments"}).status.code, 0) << "the plan created a bucket";

  CliResult r = run_backupctl({"restore", "objects", "--json", "--file", archive.string()}, confirmed());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto report = nlohmann::json::parse(r.out);
  EXPECT_EQ(report["uploaded"], 6);
  EXPECT_EQ(report["verified"], 6);
  EXPECT_EQ(snapshot_s3(s3, {"attachments", "thumbnails"}), before);
}

// A restore cut off in the middle of a multipart upload leaves the upload open on the server
// (its parts cost space and never show in a listing): killed, the next command aborts it from the
// journal; interrupted, the restore aborts it itself. Either way a rerun completes.
TEST_F(ObjectsTest, AMultipartUploadCutOffMidwayIsAbortedAndARerunCompletes) {
  ASSERT_TRUE(s3.aws({"s3", "mb", "s3://media"}).status.ok());
  aws_put("media", "scan.tiff", random_bytes(40 << 20, 7));
  aws_put("media", "small.txt", "small");
  auto before = snapshot_bytes(s3, "media");
  ASSERT_EQ(run_backupctl({"backup", "objects"}, env()).exit_code, 0);
  fs::path archive = only_archive(backups.path());
  const std::vector<std::string> args = {"restore", "objects", "--file", archive.string()};
  auto open_uploads = [&] {
    RunResult r = s3.aws({"s3api", "list-multipart-uploads", "--bucket", "media", "--output", "json"});
    EXPECT_TRUE(r.status.ok()) << r.err;
    auto j = r.out.empty() ? nlohmann::json::object() : nlohmann::json::parse(r.out);
    return j.value("Uploads", nlohmann::json::array()).size();
  };
  // Killed after its second part, interrupted there, or killed the moment the upload started
  // (before its id was known: the journal names the key, and the repair aborts the uploads of
  // that key begun since).
  for (const auto& [signal, fault] : {std::pair<std::string, std::string>{"KILL", "restore-objects.part-sent#2"},
                                      {"TERM", "restore-objects.part-sent#2"},
                                      {"KILL", "restore-objects.upload-started"}}) {
    ASSERT_TRUE(s3.aws({"s3", "rm", "--recursive", "--only-show-errors", "s3://media"}).status.ok());
    EnvList e = confirmed();
    e.emplace_back("BACKUPCTL_FAULT", fault);
    e.emplace_back("BACKUPCTL_FAULT_SIGNAL", signal);
    CliResult cut = run_backupctl(args, e);
    if (signal == "KILL") {
      ASSERT_EQ(cut.exit_code, 128 + SIGKILL) << cut.err;
      EXPECT_EQ(open_uploads(), 1u) << "the kill left no open upload: the check below proves nothing";
      CliResult next = run_backupctl({"list"}, env());
      EXPECT_EQ(next.exit_code, 0) << next.err;
    } else {
      EXPECT_EQ(cut.exit_code, 128 + SIGTERM) << cut.err;
      EXPECT_NE(cut.err.find("interrupted"), std::string::npos) << cut.err;
    }
    EXPECT_EQ(open_uploads(), 0u) << signal << ": an open multipart upload is left";
    EXPECT_TRUE(list_dir(backups.path() / "journal").empty()) << signal;
    CliResult again = run_backupctl(args, confirmed());
    ASSERT_EQ(again.exit_code, 0) << signal << ": " << again.err;
    EXPECT_EQ(snapshot_bytes(s3, "media"), before) << signal;
  }
}

TEST_F(ObjectsTest, ExactModeDeletesWhatTheBackupDoesNotHaveAfterListingIt) {
  ASSERT_TRUE(s3.aws({"s3", "mb", "s3://docs"}).status.ok());
  aws_put("docs", "keep.txt", "keep");
  ASSERT_EQ(run_backupctl({"backup", "objects"}, env()).exit_code, 0);
  fs::path archive = only_archive(backups.path());
  aws_put("docs", "added-later.txt", "new");
  aws_put("docs", "keep.txt", "changed");

  CliResult merge = run_backupctl({"restore", "objects", "--file", archive.string()}, confirmed());
  ASSERT_EQ(merge.exit_code, 0) << merge.err;
  auto after_merge = snapshot_s3(s3, {"docs"});
  EXPECT_EQ(after_merge.size(), 2u);  // merge leaves added-later.txt
  EXPECT_EQ(after_merge["docs/keep.txt"].sha256, sha256_of("keep"));

  CliResult plan = run_backupctl({"restore", "objects", "--mode", "exact", "--file", archive.string()}, env());
  EXPECT_EQ(plan.exit_code, 9);
  EXPECT_NE(plan.out.find("delete:     1 object(s) not in the backup"), std::string::npos) << plan.out;
  EXPECT_NE(plan.out.find("docs/added-later.txt"), std::string::npos) << plan.out;
  CliResult exact = run_backupctl({"restore", "objects", "--mode", "exact", "--file", archive.string()}, confirmed());
  ASSERT_EQ(exact.exit_code, 0) << exact.err;
  EXPECT_EQ(snapshot_s3(s3, {"docs"}).size(), 1u);

  CliResult bad = run_backupctl({"restore", "objects", "--mode", "mirror", "--file", archive.string()}, confirmed());
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("unknown --mode 'mirror'"), std::string::npos);
}

TEST_F(ObjectsTest, DiskBackupRestoresIntoS3AndBackIntoAFolder) {
  TempDir disk;
  make_dirs(disk.path() / "attachments/2026/02");
  write_file_atomic(disk.path() / "attachments/2026/02/scan 1.pdf", random_bytes(70000, 4), 0644);
  write_file_atomic(disk.path() / "attachments/readme.txt", "hello", 0644);
  make_dirs(disk.path() / "exports");
  write_file_atomic(disk.path() / "exports/big.bin", random_bytes(26 << 20, 5), 0644);
  auto original = snapshot_dir(disk.path());

  EnvList disk_env = {{"OBJECT_STORAGE", "disk"},
                      {"OBJECT_STORAGE_DIR", disk.path().string()},
                      {"BACKUP_DIR", backups.path().string()}};
  CliResult b = run_backupctl({"backup", "objects"}, disk_env);
  ASSERT_EQ(b.exit_code, 0) << b.err;
  fs::path archive = only_archive(backups.path());
  EXPECT_TRUE(archive.filename().string().starts_with("objects_disk_"));

  CliResult into_s3 = run_backupctl({"restore", "objects", "--file", archive.string()}, confirmed());
  ASSERT_EQ(into_s3.exit_code, 0) << into_s3.err;
  auto in_s3 = snapshot_s3(s3, {"attachments", "exports"});
  ASSERT_EQ(in_s3.size(), 3u);
  for (const auto& [path, sha] : original) EXPECT_EQ(in_s3[path].sha256, sha) << path;

  // Back out of S3 into another folder (a rehearsal target).
  TempDir backups2;
  EnvList s3_env = s3.env();
  s3_env.emplace_back("BACKUP_DIR", backups2.path().string());
  ASSERT_EQ(run_backupctl({"backup", "objects"}, s3_env).exit_code, 0);
  TempDir copy;
  EnvList back = disk_env;
  back.emplace_back("CONFIRM", "YES");
  CliResult to_disk = run_backupctl(
      {"restore", "objects", "--target", (copy.path() / "staging").string(), "--file", only_archive(backups2.path()).string()},
      back);
  ASSERT_EQ(to_disk.exit_code, 0) << to_disk.err;
  EXPECT_EQ(snapshot_dir(copy.path() / "staging"), original);
  EXPECT_EQ(snapshot_dir(disk.path()), original) << "the source folder was touched";
}

TEST_F(ObjectsTest, TargetBucketAndPrefixForRehearsals) {
  ASSERT_TRUE(s3.aws({"s3", "mb", "s3://docs"}).status.ok());
  aws_put("docs", "a/b.txt", "b");
  ASSERT_EQ(run_backupctl({"backup", "objects"}, env()).exit_code, 0);
  CliResult r = run_backupctl({"restore", "objects", "--target", "staging/rehearsal-1", "--file",
                               only_archive(backups.path()).string()},
                              confirmed());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto staged = snapshot_s3(s3, {"staging"});
  ASSERT_EQ(staged.size(), 1u);
  EXPECT_EQ(staged.begin()->first, "staging/rehearsal-1/docs/a/b.txt");
  EXPECT_EQ(snapshot_s3(s3, {"docs"}).size(), 1u);
}

TEST_F(ObjectsTest, FlippedByteIsRefusedBeforeAnyUpload) {
  ASSERT_TRUE(s3.aws({"s3", "mb", "s3://docs"}).status.ok());
  aws_put("docs", "a.bin", random_bytes(200000, 6));
  ASSERT_EQ(run_backupctl({"backup", "objects"}, env()).exit_code, 0);
  fs::path archive = only_archive(backups.path());
  {
    std::fstream f(archive, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(fs::file_size(archive) / 2));
    f.put('\x42');
  }
  ASSERT_TRUE(s3.aws({"s3", "rb", "s3://docs", "--force"}).status.ok());
  CliResult r = run_backupctl({"restore", "objects", "--file", archive.string()}, confirmed());
  EXPECT_EQ(r.exit_code, 5) << r.err;
  EXPECT_NE(s3.aws({"s3api", "head-bucket", "--bucket", "docs"}).status.code, 0) << "something was created";
  CliResult v = run_backupctl({"verify", archive.string()}, env());
  EXPECT_EQ(v.exit_code, 5);
}

TEST_F(ObjectsTest, CraftedArchivesWithEscapingEntriesAreRefusedAndWriteNothing) {
  TempDir target;
  auto craft = [&](const std::string& name, const std::function<void(struct archive*)>& fill) {
    fs::path p = files.path() / name;
    struct archive* a = archive_write_new();
    archive_write_add_filter_gzip(a);
    archive_write_set_format_pax_restricted(a);
    archive_write_open_filename(a, p.c_str());
    fill(a);
    archive_write_close(a);
    archive_write_free(a);
    return p;
  };
  auto add_file = [](struct archive* a, const std::string& path, const std::string& data) {
    archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, path.c_str());
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_size(e, static_cast<la_int64_t>(data.size()));
    archive_write_header(a, e);
    archive_write_data(a, data.data(), data.size());
    archive_entry_free(e);
  };
  auto manifest_for = [](const std::string& bucket, const std::string& key, const std::string& path,
                         const std::string& data) {
    Manifest m;
    m.buckets = {bucket};
    m.objects.push_back({bucket, key, path, data.size(), "", sha256_of(data), "", {}, ""});
    return m.to_json().dump();
  };
  std::vector<fs::path> crafted = {
      craft("dotdot.tar.gz", [&](struct archive* a) {
        add_file(a, "docs/../../escaped.txt", "x");
        add_file(a, kManifestPath, manifest_for("docs", "../../escaped.txt", "docs/../../escaped.txt", "x"));
      }),
      craft("absolute.tar.gz", [&](struct archive* a) {
        add_file(a, "/tmp/absolute-escape.txt", "x");
        add_file(a, kManifestPath, manifest_for("docs", "/tmp/absolute-escape.txt", "/tmp/absolute-escape.txt", "x"));
      }),
      craft("symlink.tar.gz", [&](struct archive* a) {
        archive_entry* e = archive_entry_new();
        archive_entry_set_pathname(e, "docs/link");
        archive_entry_set_filetype(e, AE_IFLNK);
        archive_entry_set_symlink(e, "/etc/passwd");
        archive_write_header(a, e);
        archive_entry_free(e);
        add_file(a, kManifestPath, manifest_for("docs", "link", "docs/link", ""));
      }),
      craft("unnamed.tar.gz", [&](struct archive* a) {
        add_file(a, "docs/ok.txt", "ok");
        add_file(a, "docs/smuggled.txt", "not in the manifest");
        add_file(a, kManifestPath, manifest_for("docs", "ok.txt", "docs/ok.txt", "ok"));
      }),
  };
  EnvList disk_env = {{"OBJECT_STORAGE", "disk"},
                      {"OBJECT_STORAGE_DIR", target.path().string()},
                      {"BACKUP_DIR", backups.path().string()},
                      {"CONFIRM", "YES"}};
  for (const auto& f : crafted) {
    CliResult r = run_backupctl({"restore", "objects", "--allow-no-meta", "--file", f.string()}, disk_env);
    EXPECT_EQ(r.exit_code, 5) << f.filename() << ": " << r.err;
    EXPECT_NE(r.err.find("backupctl: error: "), std::string::npos);
    EXPECT_TRUE(fs::is_empty(target.path())) << f.filename() << " wrote into the target";
  }
  EXPECT_FALSE(fs::exists(files.path().parent_path() / "escaped.txt"));
  EXPECT_FALSE(fs::exists("/tmp/absolute-escape.txt"));
}

TEST_F(ObjectsTest, BadCredentialsEndpointDownAndMissingBucket) {
  EnvList wrong = env();
  wrong.emplace_back("MINIO_SECRET_KEY", "wrong-secret");
  CliResult r = run_backupctl({"backup", "objects"}, wrong);
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_NE(r.err.find("access denied"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("MINIO_SECRET_KEY"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("wrong-secret"), std::string::npos) << "the secret was printed";
  EXPECT_EQ(s3.rejections(), 1) << "a 403 must not be retried";
  expected_rejections = 1;

  EnvList down = env();
  down.emplace_back("MINIO_ENDPOINT", "http://127.0.0.1:1");
  r = run_backupctl({"backup", "objects"}, down);
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_NE(r.err.find("attempts"), std::string::npos) << r.err;

  EnvList missing = env();
  missing.emplace_back("MINIO_BUCKETS", "no-such-bucket");
  r = run_backupctl({"backup", "objects"}, missing);
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_NE(r.err.find("bucket no-such-bucket does not exist"), std::string::npos) << r.err;
  EXPECT_TRUE(list_dir(backups.path() / "objects").empty());
}

TEST_F(ObjectsTest, ServerDyingMidBackupLeavesNothingFinishedLooking) {
  ASSERT_TRUE(s3.aws({"s3", "mb", "s3://docs"}).status.ok());
  for (int i = 0; i < 3; ++i) aws_put("docs", "big" + std::to_string(i) + ".bin", random_bytes(12 << 20, 10 + i));
  Child c = spawn_backupctl({"backup", "objects"}, env());
  ASSERT_TRUE(wait_for([&] {
    for (const auto& f : list_dir(backups.path() / "objects")) {
      std::error_code ec;
      if (f.ends_with(".partial") && fs::file_size(backups.path() / "objects" / f, ec) > 0) return true;
    }
    return false;
  }, 30));
  ::kill(c.pid(), SIGSTOP);
  s3.kill_server();
  ::kill(c.pid(), SIGCONT);
  c.drain();
  ExitStatus s = c.wait();
  EXPECT_NE(s.code, 0);
  EXPECT_NE(c.stderr_tail().find("backupctl: error: "), std::string::npos) << c.stderr_tail();
  EXPECT_TRUE(list_dir(backups.path() / "objects").empty()) << "a partial or finished-looking file was left";
  s3.restart_server();
}

TEST_F(ObjectsTest, ServerDyingMidRestoreIsReportedAndARerunCompletes) {
  ASSERT_TRUE(s3.aws({"s3", "mb", "s3://docs"}).status.ok());
  TempDir src;
  for (int i = 0; i < 40; ++i) write_file_atomic(src.path() / ("f" + std::to_string(100 + i)), random_bytes(200000, 20 + i));
  ASSERT_TRUE(s3.aws({"s3", "sync", "--only-show-errors", src.path().string(), "s3://docs"}).status.ok());
  auto before = snapshot_bytes(s3, "docs");
  ASSERT_EQ(before.size(), 40u);
  ASSERT_EQ(run_backupctl({"backup", "objects"}, env()).exit_code, 0);
  fs::path archive = only_archive(backups.path());
  ASSERT_TRUE(s3.aws({"s3", "rb", "s3://docs", "--force"}).status.ok());

  EnvList e = confirmed();
  e.emplace_back("OBJECT_PARALLEL", "1");
  Child c = spawn_backupctl({"restore", "objects", "--file", archive.string()}, e);
  // Kill the server once a few objects have landed (a listing, cheap enough to poll).
  S3Settings settings = s3.settings();
  settings.max_attempts = 1;
  S3Store store(settings);
  auto stored = [&] {
    int n = 0;
    try {
      store.list_objects("docs", "", [&](const ObjectEntry&) { ++n; });
    } catch (const Error&) {
    }
    return n;
  };
  ASSERT_TRUE(wait_for([&] { return stored() >= 3; }, 60)) << "uploads never started";
  s3.kill_server();
  c.drain();
  ExitStatus s = c.wait();
  std::string err = c.stderr_tail();
  EXPECT_EQ(s.code, 3) << err;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(err, m, std::regex(R"((\d+) of 40 objects uploaded, (\d+) not)"))) << err;
  EXPECT_EQ(std::stoi(m[1]) + std::stoi(m[2]), 40);
  std::smatch rf;
  ASSERT_TRUE(std::regex_search(err, rf, std::regex(R"(listed in (\S+\.json))"))) << err;
  auto listing = nlohmann::json::parse(read_file(rf[1].str()));
  EXPECT_EQ(listing["not_uploaded"].size(), static_cast<std::size_t>(std::stoi(m[2])));

  s3.restart_server();
  CliResult again = run_backupctl({"restore", "objects", "--file", archive.string()}, confirmed());
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(snapshot_bytes(s3, "docs"), before);
}

}  // namespace backupctl::test
