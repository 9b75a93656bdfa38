// Point-in-time recovery's off-site side and its upkeep, against a real PostgreSQL: the receiver
// copying the WAL to a remote (a folder), encrypted; a host lost with its data directory and
// BACKUP_DIR, rebuilt from the remote alone to its last commit; retention of base backups and of
// the WAL before the oldest kept, here and on the remote; `verify --wal` naming a gap and a new
// base backup closing it; a slot that lost WAL.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cstdio>
#include <thread>

#include "pitr_fixture.hpp"
#include "util/time.hpp"

namespace backupctl::test {

namespace {

// The files under `root` (recursively), relative, sorted. The receiver may be writing there: a
// file gone between listing and looking is not counted.
std::vector<std::string> files_under(const fs::path& root) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::recursive_directory_iterator(root, ec)) {
    std::error_code gone;
    if (e.is_regular_file(gone)) out.push_back(e.path().lexically_relative(root).string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::size_t count_matching(const std::vector<std::string>& files, const std::string& prefix, const std::string& suffix) {
  return static_cast<std::size_t>(std::count_if(files.begin(), files.end(), [&](const std::string& f) {
    return f.starts_with(prefix) && f.ends_with(suffix);
  }));
}

// The position part of the name of the segment holding `lsn` ("0/5000028" -> "0000000000000005"),
// with the default 16 MiB segments.
std::string position_of(const std::string& lsn) {
  const auto slash = lsn.find('/');
  const std::uint64_t v = (std::stoull(lsn.substr(0, slash), nullptr, 16) << 32) | std::stoull(lsn.substr(slash + 1), nullptr, 16);
  const std::uint64_t seg = v / (16u << 20);
  char buf[17];
  std::snprintf(buf, sizeof buf, "%08X%08X", static_cast<unsigned>(seg / 256), static_cast<unsigned>(seg % 256));
  return buf;
}

class PitrOffSiteTest : public PitrTest {
 protected:
  TempDir remote_dir;
  TempDir keys;

  PitrOffSiteTest() {
    EXPECT_TRUE(run_command({.argv = {"age-keygen", "-o", key().string()}}).status.ok());
    const std::string recipient = first_line(run_command({.argv = {"age-keygen", "-y", key().string()}}).out);
    extra = {{"BACKUP_REMOTE_URL", "file://" + remote_dir.path().string()},
             {"BACKUP_AGE_RECIPIENTS", recipient},
             {"BACKUP_AGE_IDENTITY", key().string()},
             {"WAL_PUSH_INTERVAL", "1"}};
  }
  fs::path key() const { return keys.path() / "key.txt"; }

  std::string sysid() const {
    std::string s = pg.psql("postgres", "SELECT system_identifier FROM pg_control_system()");
    return s.substr(0, s.size() - 1);
  }

  // Waits until the remote holds everything the receiver had received by now.
  void wait_offsite() {
    const auto since = std::chrono::system_clock::now();
    const fs::path record = dir.path() / "wal" / sysid() / ".remote.json";
    ASSERT_TRUE(wait_for(
        [&] {
          std::error_code ec;
          if (!fs::exists(record, ec)) return false;
          auto j = nlohmann::json::parse(read_file(record), nullptr, false);
          return !j.is_discarded() && j.value("received_by_unix", 0.0) >
                                          std::chrono::duration<double>(since.time_since_epoch()).count();
        },
        20))
        << "the receiver did not copy the WAL to the remote";
  }

  // Archived segments in BACKUP_DIR (finished by the receiver and compressed).
  std::size_t archived() const { return count_matching(files_under(dir.path() / "wal"), "", ".zst") ; }
};

TEST_F(PitrOffSiteTest, TheLostHostIsRestoredToItsLastCommitFromTheRemoteAlone) {
  // The base backup of SetUp went off-site encrypted, with its meta.
  const std::vector<std::string> there = files_under(remote_dir.path());
  EXPECT_EQ(count_matching(there, "base/base_" + sysid(), ".tar.zst.age"), 1u) << ::testing::PrintToString(there);
  EXPECT_EQ(count_matching(there, "base/base_" + sysid(), ".tar.zst.age.meta"), 1u);

  pg.psql("archive", "INSERT INTO t SELECT g, 'one' FROM generate_series(501, 900) g; SELECT pg_switch_wal()");
  pg.psql("archive", "INSERT INTO t SELECT g, 'last' FROM generate_series(901, 1000) g");
  wait_received();
  // Three seconds after the last commit the server and this host are gone: the server killed,
  // its data directory and BACKUP_DIR deleted. The receiver pushes the unfinished segment every
  // WAL_PUSH_INTERVAL (1 s here).
  std::this_thread::sleep_for(std::chrono::seconds(3));
  wait_offsite();
  const std::vector<std::string> wal = files_under(remote_dir.path() / "wal");
  EXPECT_GE(count_matching(wal, sysid() + "/", ".partial.zst.age"), 1u) << ::testing::PrintToString(wal);
  for (const auto& f : wal) EXPECT_TRUE(f.ends_with(".age")) << f << " went off-site unencrypted";
  pg.crash_and_lose();
  stop_receiver();
  fs::remove_all(dir.path());

  // A new server on a new host: the remote's address and the key are all it has.
  PgCluster fresh;
  TempDir bare;
  EnvList e = backup_env(fresh, "archive", bare.path() / "backup");
  e.insert(e.end(), {{"PITR_WORK_DIR", work.path().string()}, {"SERVICE_CONTROL", "none"}, {"CONFIRM", "YES"}});
  e.insert(e.end(), extra.begin(), extra.end());
  CliResult r = run_backupctl({"restore", "db", "--to-time", "latest", "--remote"}, e);
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  EXPECT_EQ(fresh.psql("archive", "SELECT v || ':' || count(*) FROM t GROUP BY v ORDER BY v"), "base:500\nlast:100\none:400\n")
      << "every committed row";
  EXPECT_TRUE(list_dir(work.path()).empty());
}

// A remote another BACKUP_DIR took over (`push --take-over` on the host that replaced this one):
// the receiver sends it nothing more and says whose it is, and keeps receiving here.
TEST_F(PitrOffSiteTest, TheReceiverNeverWritesToARemoteAnotherBackupDirTookOver) {
  wait_offsite();
  stop_receiver();
  TempDir other;
  EnvList o = env();
  for (auto& [k, v] : o) {
    if (k == "BACKUP_DIR") v = other.path().string();
  }
  CliResult took = run_backupctl({"push", "--take-over"}, o);
  ASSERT_EQ(took.exit_code, 0) << took.err;
  // (Its push also applied the remote's retention: the WAL before the base backup there is gone.)
  const std::vector<std::string> before = files_under(remote_dir.path() / "wal");

  const std::size_t archived_before = archived();
  start_receiver();
  pg.psql("archive", "INSERT INTO t VALUES (3000, 'x'); SELECT pg_switch_wal()");
  wait_received();
  ASSERT_TRUE(wait_for([&] { return archived() > archived_before; }, 20)) << "the receiver stopped archiving here";
  std::this_thread::sleep_for(std::chrono::seconds(3));  // push rounds (WAL_PUSH_INTERVAL=1)
  EXPECT_EQ(files_under(remote_dir.path() / "wal"), before) << "the receiver wrote to a remote another BACKUP_DIR owns";
  receiver->kill(SIGTERM);  // its stderr is read as it ends
  EXPECT_TRUE(receiver->wait().ok());
  const std::string said = receiver->stderr_tail();
  receiver.reset();
  EXPECT_NE(said.find("is written by another BACKUP_DIR"), std::string::npos) << said;
  EXPECT_NE(said.find("push --take-over"), std::string::npos) << "the fix is not named: " << said;
}

TEST_F(PitrOffSiteTest, RetentionDropsOldBaseBackupsAndTheWalBeforeTheOldestKeptHereAndThere) {
  for (int i = 0; i < 3; ++i) pg.psql("archive", "INSERT INTO t VALUES (" + std::to_string(2000 + i) + ", 'x'); SELECT pg_switch_wal()");
  wait_received();
  ASSERT_TRUE(wait_for([&] { return archived() >= 3; }, 20)) << ::testing::PrintToString(files_under(dir.path() / "wal"));
  const std::string between = now();
  CliResult second = run_backupctl({"backup", "base", "--json"}, env());
  ASSERT_EQ(second.exit_code, 0) << second.err;
  const nlohmann::json meta = nlohmann::json::parse(second.out)["meta"];
  const std::string first_kept = meta["source"]["start_lsn"].get<std::string>();
  wait_offsite();

  // The first base backup is 40 days old (here and on the remote: its meta says when it was made).
  fs::path old_meta;
  for (const auto& f : files_under(dir.path() / "base")) {
    if (f.ends_with(".meta") && f.find(meta["file"].get<std::string>()) == std::string::npos) old_meta = dir.path() / "base" / f;
  }
  ASSERT_FALSE(old_meta.empty());
  const std::string old_name = old_meta.filename().string();
  for (const fs::path& m : {old_meta, remote_dir.path() / "base" / old_name}) {
    nlohmann::json j = nlohmann::json::parse(read_file(m));
    j["created_at"] = iso8601(Clock::now() - std::chrono::hours(24 * 40));
    write_file_atomic(m, j.dump(2));
  }
  auto segments_before = [&](const fs::path& root) {
    // Segment names sort by position after their timeline (the first 8 digits).
    std::size_t n = 0;
    for (const auto& f : files_under(root)) {
      const std::string name = fs::path(f).filename().string();
      if (name.size() >= 28 && name.find(".history") == std::string::npos && name.substr(0, 24).find_first_not_of("0123456789ABCDEF") == std::string::npos &&
          name.substr(8, 16) < position_of(first_kept)) {
        ++n;
      }
    }
    return n;
  };
  ASSERT_GE(segments_before(dir.path() / "wal"), 1u);
  ASSERT_GE(segments_before(remote_dir.path() / "wal"), 1u);

  EnvList e = env();
  e.insert(e.end(), {{"BACKUP_KEEP_MIN", "1"}, {"BACKUP_RETENTION_DAYS", "30"}, {"BACKUP_REMOTE_RETENTION_DAYS", "30"}});
  CliResult pruned = run_backupctl({"prune"}, e);
  ASSERT_EQ(pruned.exit_code, 0) << pruned.err << pruned.out;
  EXPECT_FALSE(fs::exists(old_meta)) << pruned.out;
  EXPECT_FALSE(fs::exists(remote_dir.path() / "base" / old_name)) << pruned.out;
  EXPECT_NE(pruned.out.find("WAL from before the oldest base backup kept"), std::string::npos) << pruned.out;
  EXPECT_EQ(segments_before(dir.path() / "wal"), 0u) << ::testing::PrintToString(files_under(dir.path() / "wal"));
  EXPECT_EQ(segments_before(remote_dir.path() / "wal"), 0u) << ::testing::PrintToString(files_under(remote_dir.path() / "wal"));

  // The window shrank and did not break: from the kept base backup on, every segment is there;
  // a moment before it is refused.
  CliResult verify = run_backupctl({"verify", "--wal"}, env());
  EXPECT_EQ(verify.exit_code, 0) << verify.out << verify.err;
  CliResult before = run_backupctl({"restore", "db", "--to-time", between}, confirmed());
  EXPECT_EQ(before.exit_code, 4) << before.err;
  CliResult all = run_backupctl({"verify", "--all"}, env());
  EXPECT_EQ(all.exit_code, 0) << all.out << all.err;
  EXPECT_NE(all.out.find("zstd frames ok"), std::string::npos) << all.out;
}

}  // namespace
}  // namespace backupctl::test
