// command/prune: the retention rules for the backups of one source (kept_of_source), without a
// BACKUP_DIR or a server: which backups stay, and the reason each gives.
#include "command/prune.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <ctime>
#include <deque>
#include <string>

namespace backupctl {

namespace {

using std::chrono::days;
using std::chrono::hours;

// Noon UTC on 2026-12-06: the day boundaries of the daily rule are far from every test time.
const Clock::time_point kNow = Clock::from_time_t(1796558400);

struct Backups {
  std::deque<CatalogEntry> entries;  // stable addresses
  std::vector<const CatalogEntry*> newest_first;

  // One db backup made `age` before kNow; `verified` as the meta records, `damaged` when the file
  // on disk is shorter than its meta says.
  const CatalogEntry* add(Clock::duration age, bool verified = false, bool damaged = false) {
    Meta meta;
    meta.size = 1000;
    meta.sha256 = std::string(64, 'a');
    if (verified) meta.verification = Verification{.at = "2026-12-06T12:00:00Z", .ok = true, .detail = "sha256 ok"};
    CatalogEntry e{.kind = Kind::db,
                   .path = "db/archive_archive_" + std::to_string(entries.size()) + ".dump",
                   .meta = meta,
                   .time = kNow - age,
                   .size = damaged ? 999u : 1000u};
    entries.push_back(e);
    newest_first.push_back(&entries.back());
    return &entries.back();
  }
};

Config rules(int keep_min, int daily = 0, int weekly = 0, int monthly = 0) {
  Config c;
  c.keep_min = keep_min;
  c.keep_daily = daily;
  c.keep_weekly = weekly;
  c.keep_monthly = monthly;
  return c;
}

}  // namespace

TEST(Retention, TheNewestAreKeptAndTheRestAreNot) {
  Backups b;
  for (int i = 0; i < 5; ++i) b.add(days(i));
  auto kept = kept_of_source(rules(3), b.newest_first, kNow);
  ASSERT_EQ(kept.size(), 3u);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(kept.at(b.newest_first[i]), "one of the 3 newest (BACKUP_KEEP_MIN)");
  EXPECT_FALSE(kept.count(b.newest_first[3]));
  EXPECT_FALSE(kept.count(b.newest_first[4]));
}

TEST(Retention, TheNewestThatVerifiedAreKeptBeyondTheNewestButNotWhenDamagedSince) {
  Backups b;
  b.add(days(0));
  b.add(days(1));
  const CatalogEntry* damaged = b.add(days(2), true, true);
  const CatalogEntry* good = b.add(days(3), true);
  const CatalogEntry* good2 = b.add(days(4), true);
  const CatalogEntry* third = b.add(days(5), true);
  auto kept = kept_of_source(rules(2), b.newest_first, kNow);
  EXPECT_FALSE(kept.count(damaged)) << "a backup cut short since it verified counted as verified";
  EXPECT_EQ(kept.at(good), "the newest that verified");
  EXPECT_EQ(kept.at(good2), "one of the newest that verified");
  EXPECT_FALSE(kept.count(third)) << "only BACKUP_KEEP_MIN verified ones are kept";
}

TEST(Retention, ABackupDatedAheadIsKeptAndTakesNoPlaceOfANewestOne) {
  Backups b;
  const CatalogEntry* ahead = b.add(-days(30));
  b.add(days(0));
  b.add(days(1));
  const CatalogEntry* third = b.add(days(2));
  auto kept = kept_of_source(rules(2), b.newest_first, kNow);
  EXPECT_NE(kept.at(ahead).find("wrong clock"), std::string::npos) << kept.at(ahead);
  EXPECT_TRUE(kept.count(b.newest_first[1]));
  EXPECT_TRUE(kept.count(b.newest_first[2]));
  EXPECT_FALSE(kept.count(third)) << "the backup of the wrong clock took a place among the newest";
  EXPECT_FALSE(all_dated_ahead(b.newest_first, kNow));
  EXPECT_TRUE(all_dated_ahead({ahead}, kNow));
  EXPECT_FALSE(all_dated_ahead({}, kNow));
}

TEST(Retention, ABackupWithinTheClockToleranceIsNoWrongClock) {
  Backups b;
  const CatalogEntry* slightly = b.add(-std::chrono::minutes(5));
  auto kept = kept_of_source(rules(1), b.newest_first, kNow);
  EXPECT_EQ(kept.at(slightly), "one of the 1 newest (BACKUP_KEEP_MIN)");
}

TEST(Retention, TheNewestOfEachDayWeekAndMonth) {
  ::setenv("TZ", "UTC", 1);  // days, weeks and months are the host's local ones
  ::tzset();
  Backups b;
  // Two a day for ten days (at noon and at 2:00), newest first.
  for (int d = 0; d < 10; ++d) {
    b.add(days(d));
    b.add(days(d) + hours(10));
  }
  auto daily = kept_of_source(rules(1, 3), b.newest_first, kNow);
  ASSERT_EQ(daily.size(), 3u);
  EXPECT_EQ(daily.at(b.newest_first[0]), "one of the 1 newest (BACKUP_KEEP_MIN)");
  EXPECT_EQ(daily.at(b.newest_first[2]), "the newest of its day (BACKUP_KEEP_DAILY)");
  EXPECT_EQ(daily.at(b.newest_first[4]), "the newest of its day (BACKUP_KEEP_DAILY)");
  EXPECT_FALSE(daily.count(b.newest_first[1])) << "the second of a day is not the newest of it";

  auto weekly = kept_of_source(rules(1, 0, 2), b.newest_first, kNow);
  // 2026-12-06 is a Sunday: days 0..6 are its ISO week, day 7 the Sunday before.
  EXPECT_EQ(weekly.size(), 2u);
  EXPECT_EQ(weekly.at(b.newest_first[14]), "the newest of its week (BACKUP_KEEP_WEEKLY)");

  auto monthly = kept_of_source(rules(1, 0, 0, 2), b.newest_first, kNow);
  // days 0..5 are December, day 6 (2026-11-30) the newest of November.
  EXPECT_EQ(monthly.size(), 2u);
  EXPECT_EQ(monthly.at(b.newest_first[12]), "the newest of its month (BACKUP_KEEP_MONTHLY)");
}

}  // namespace backupctl
