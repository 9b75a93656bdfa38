// The off-site copy must never be the way data is lost (issue 24): local retention keeps what
// never reached the remote, two hosts cannot overwrite each other's copies, the remote cannot be
// BACKUP_DIR itself, what a server sends is bounded by what the meta says, and a rehearsal from
// the remote reads the remote's bytes.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "fixture.hpp"
#include "stack_host.hpp"
#include "util/fs.hpp"

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
  CliResult older = run_backupctl({"backup", "db", "--no-remote", "--json"}, faked_clock(long_here, "-3d"));
  ASSERT_EQ(older.exit_code, 0) << older.err;
  const std::string older_name = fs::path(json_of(older)["path"].get<std::string>()).filename();
  for (int round = 0; round < 2; ++round) {
    CliResult again = run_backupctl({"push", "--all", "--json"}, long_here);
    EXPECT_EQ(again.exit_code, 0) << again.err;
    EXPECT_EQ(json_of(again)["bytes"], 0) << "round " << round << ": " << again.out;
    EXPECT_NE(again.out.find("db/" + older_name + ": older than BACKUP_REMOTE_RETENTION_DAYS=2"), std::string::npos) << again.out;
  }
  EXPECT_FALSE(fs::exists(remote_dir / "db" / older_name));
  EXPECT_TRUE(fs::exists(host.backups() / "db" / older_name));
}

}  // namespace backupctl::test
