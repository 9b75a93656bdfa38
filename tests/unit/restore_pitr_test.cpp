// command/restore_pitr.hpp and backup_base.hpp without a server: the moments an operator types, as
// PostgreSQL is given them, and the base backups' precise end times.
#include "command/restore_pitr.hpp"

#include <gtest/gtest.h>

#include "command/backup_base.hpp"
#include "util/error.hpp"

namespace backupctl {
namespace {

TEST(RecoveryTargetParse, IsoMomentsBecomePostgresTimesWithTheirOffset) {
  EXPECT_EQ(parse_recovery_target("2026-12-06T14:01:59Z", "").value, "2026-12-06 14:01:59+00:00");
  EXPECT_EQ(parse_recovery_target("2026-12-06T23:01:59.250+09:00", "").value, "2026-12-06 23:01:59.250+09:00");
  EXPECT_EQ(parse_recovery_target("2026-12-06T14:01:59.123456-0530", "").value, "2026-12-06 14:01:59.123456-05:30");
  EXPECT_EQ(parse_recovery_target("latest", "").kind, RecoveryTarget::Kind::latest);
  RecoveryTarget lsn = parse_recovery_target("", "0/16b3f48");
  EXPECT_EQ(lsn.kind, RecoveryTarget::Kind::lsn);
  EXPECT_EQ(lsn.value, "0/16B3F48");
}

TEST(RecoveryTargetParse, WhatPostgresWouldMisreadIsRefused) {
  // No offset: PostgreSQL would take the server's time zone, which the operator may not know.
  for (const char* bad : {"2026-12-06T14:01:59", "2026-12-06", "yesterday", "2026-12-06T14:01:59.1234567Z",
                          "2026-12-06T14:01:59Z; DROP", "2026-13-06T14:01:59Z", "2999-01-01T00:00:00Z", ""}) {
    try {
      (void)parse_recovery_target(bad, "");
      ADD_FAILURE() << "accepted " << bad;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::usage) << bad;
    }
  }
  EXPECT_THROW((void)parse_recovery_target("2100-01-01T00:00:00Z", ""), Error) << "in the future";
  EXPECT_THROW((void)parse_recovery_target("latest", "0/1"), Error) << "two targets";
  EXPECT_THROW((void)parse_recovery_target("", "0/xyz"), Error);
}

TEST(BaseBackupTimes, KeepTheFractionOfASecond) {
  auto whole = parse_precise_time("2026-12-06T14:01:59Z");
  auto part = parse_precise_time("2026-12-06T14:01:59.250001Z");
  ASSERT_TRUE(whole && part);
  EXPECT_EQ(*part - *whole, std::chrono::microseconds(250001));
  EXPECT_FALSE(parse_precise_time("2026-12-06T14:01:59.Z"));
}

// What a journal entry may name in the compose service's container for its repair to stop and
// remove (a journal in BACKUP_DIR is a file someone else could write): only the folders a run
// makes and the server programs find_service_server answers.
// The folder goes into postgresql.conf's quotes and into the shell's double quotes of the
// restore_command: a path that would end them, or that the shell would expand, is refused before
// anything is made.
TEST(RecoveryClusterFolder, APathTheShellOrTheConfigurationWouldReadOtherwiseIsRefused) {
  for (const char* bad : {"/tmp/a$(id)b/pitr-1", "/tmp/a`id`b/pitr-1", "/tmp/a\"b/pitr-1", "/tmp/a'b/pitr-1",
                          "/tmp/a\\b/pitr-1", "/tmp/a%fb/pitr-1", "/tmp/a\nb/pitr-1"}) {
    try {
      RecoveryCluster cluster(bad, RecoveryServer{});
      ADD_FAILURE() << "accepted " << bad;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::usage) << bad;
      EXPECT_NE(e.hint().find("PITR_WORK_DIR"), std::string::npos) << bad;
    }
    EXPECT_FALSE(std::filesystem::exists(std::filesystem::path(bad).parent_path())) << bad;
  }
}

TEST(ServiceRecovery, AJournalNamesOnlyOurFolderAndTheKnownServerFolders) {
  EXPECT_TRUE(is_service_recovery_root(service_recovery_root()));
  EXPECT_TRUE(is_service_recovery_root("/tmp/backupctl-pitr.1a2b3c4d.4026531836.77"));
  for (const char* bad : {"/tmp", "/tmp/", "/", "/var/lib/postgresql/data", "/tmp/backupctl-pitr.",
                          "/tmp/backupctl-pitr./..", "/tmp/backupctl-pitr.1/../../var/lib/postgresql/data",
                          "/tmp/backupctl-pitr.1 /", "/tmp/backupctl.1a2b3c4d.1.2.Abc123", "tmp/backupctl-pitr.1"}) {
    EXPECT_FALSE(is_service_recovery_root(bad)) << bad;
  }
  for (const char* ok : {"/usr/lib/postgresql/15/bin", "/usr/local/bin", "/usr/local/pgsql/bin"}) {
    EXPECT_TRUE(service_server_bindir(ok)) << ok;
  }
  for (const char* bad : {"/tmp", "/usr/lib/postgresql/15/bin/../../../../tmp", "/usr/lib/postgresql/x/bin", "", "/bin"}) {
    EXPECT_FALSE(service_server_bindir(bad)) << bad;
  }
}

}  // namespace
}  // namespace backupctl
