// pg/wal.hpp and pg/wal_archive.hpp: WAL names and positions, the check of a segment's first
// page, and the archive's round trip and refusals, on segments made here (no server).
#include "pg/wal.hpp"

#include <gtest/gtest.h>

#include <cstring>

#include "pg/wal_archive.hpp"
#include "pg/wal_receiver.hpp"
#include "util/error.hpp"
#include "util/fs.hpp"

namespace backupctl {
namespace {

constexpr std::uint64_t kSeg = 16u << 20;
constexpr std::uint64_t kSysid = 7716462788975573621ull;

// A segment as PostgreSQL 15 writes one: the long page header, then `fill` bytes of "records".
std::string make_segment(std::uint32_t tli, std::uint64_t segno, std::uint64_t sysid = kSysid, char fill = 'r') {
  std::string s(kSeg, '\0');
  auto put = [&](std::size_t off, auto v) { std::memcpy(s.data() + off, &v, sizeof v); };
  put(0, std::uint16_t{0xD110});
  put(2, std::uint16_t{0x0002});
  put(4, tli);
  put(8, std::uint64_t{segno * kSeg});
  put(24, sysid);
  put(32, std::uint32_t{kSeg});
  put(36, std::uint32_t{8192});
  std::memset(s.data() + 40, fill, 100000);
  return s;
}

TEST(Wal, LsnsParseAndPrintAsPostgresDoes) {
  EXPECT_EQ(parse_lsn("0/16B3F48"), 0x16B3F48u);
  EXPECT_EQ(parse_lsn("1/0"), 1ull << 32);
  EXPECT_EQ(parse_lsn("a/ff"), (10ull << 32) | 0xFF);
  EXPECT_EQ(format_lsn(0x16B3F48u), "0/16B3F48");
  for (const char* bad : {"", "/", "0/", "/1", "x/1", "0/123456789", "0-1", "0/1/2"}) EXPECT_FALSE(parse_lsn(bad)) << bad;
}

TEST(Wal, SegmentNamesFollowTheTimelineAndThePosition) {
  auto n = parse_wal_segment_name("000000020000000100000003", kSeg);
  ASSERT_TRUE(n);
  EXPECT_EQ(n->timeline, 2u);
  EXPECT_EQ(n->segno, 256u + 3u);
  EXPECT_EQ(n->str(kSeg), "000000020000000100000003");
  EXPECT_EQ(segment_of(*parse_lsn("1/3000028"), 2, kSeg).str(kSeg), "000000020000000100000003");
  for (const char* bad : {"00000002000000010000000", "000000020000000100000003.partial", "000000020000000100000g03",
                          "000000020000000100000100", "000000000000000100000003", "00000002000000010000000a"}) {
    EXPECT_FALSE(parse_wal_segment_name(bad, kSeg)) << bad;
  }
  EXPECT_EQ(parse_history_name("00000002.history"), 2u);
  EXPECT_FALSE(parse_history_name("00000000.history"));
  EXPECT_FALSE(parse_history_name("0000002.history"));
}

TEST(Wal, ASegmentIsCheckedAgainstItsNameAndCluster) {
  const std::string seg = make_segment(1, 3);
  EXPECT_EQ(check_wal_segment("000000010000000000000003", seg, kSysid), "");
  EXPECT_NE(check_wal_segment("000000010000000000000004", seg, kSysid).find("its name says"), std::string::npos);
  EXPECT_NE(check_wal_segment("000000010000000000000003", seg, kSysid + 1).find("belongs to the cluster"), std::string::npos);
  EXPECT_NE(check_wal_segment("000000010000000000000003", seg.substr(0, kSeg - 1), kSysid).find("bytes"), std::string::npos);
  EXPECT_EQ(check_wal_segment("000000010000000000000003", seg.substr(0, 8192), kSysid, true), "") << "an unfinished one may be short";
  EXPECT_NE(check_wal_segment("000000010000000000000003", std::string(kSeg, '\0'), kSysid), "");
  EXPECT_EQ(check_wal_segment("000000020000000000000003", seg, kSysid), "") << "a new timeline's first segment starts as the old one's copy";
  EXPECT_NE(check_wal_segment("000000010000000000000003", make_segment(2, 3), kSysid).find("timeline"), std::string::npos);
}

TEST(WalArchive, FinishedSegmentsAreArchivedCompressedAndComeBackByteForByte) {
  TempDir dir;
  WalArchive archive(dir.path(), kSysid);
  make_dirs(archive.incoming());
  const std::string seg = make_segment(1, 5);
  write_file_atomic(archive.incoming() / "000000010000000000000005", seg);
  write_file_atomic(archive.incoming() / "000000010000000000000006.partial", make_segment(1, 6));
  EXPECT_EQ(archive.segments(), std::vector<std::string>{"000000010000000000000005"}) << "finished, not archived yet";
  EXPECT_EQ(archive.archive_incoming(), std::vector<std::string>{"000000010000000000000005"});
  EXPECT_FALSE(fs::exists(archive.incoming() / "000000010000000000000005"));
  EXPECT_LT(fs::file_size(archive.dir() / "000000010000000000000005.zst"), kSeg / 10);
  EXPECT_EQ(archive.segments(), std::vector<std::string>{"000000010000000000000005"});
  EXPECT_EQ(archive.partial(), "000000010000000000000006");
  archive.restore_segment("000000010000000000000005", dir.path() / "out");
  EXPECT_EQ(read_file(dir.path() / "out"), seg);

  // Sent again by a restarted receiver: the same bytes are dropped, other bytes kept aside.
  write_file_atomic(archive.incoming() / "000000010000000000000005", seg);
  EXPECT_TRUE(archive.archive_incoming().empty());
  EXPECT_FALSE(fs::exists(archive.incoming() / "000000010000000000000005"));
  write_file_atomic(archive.incoming() / "000000010000000000000005", make_segment(1, 5, kSysid, 'x'));
  EXPECT_TRUE(archive.archive_incoming().empty());
  EXPECT_TRUE(fs::exists(archive.incoming() / "000000010000000000000005.conflict"));
  archive.restore_segment("000000010000000000000005", dir.path() / "again");
  EXPECT_EQ(read_file(dir.path() / "again"), seg) << "the archived copy is never replaced";
}

TEST(WalArchive, CraftedFilesAreRejectedNotArchived) {
  TempDir dir;
  WalArchive archive(dir.path(), kSysid);
  make_dirs(archive.incoming());
  write_file_atomic(archive.incoming() / "000000010000000000000007", make_segment(1, 8));          // wrong name
  write_file_atomic(archive.incoming() / "000000010000000000000009", make_segment(1, 9, 42));      // another cluster
  write_file_atomic(archive.incoming() / "00000001000000000000000A", make_segment(1, 10).substr(0, 4096));  // short
  write_file_atomic(archive.incoming() / "notes.txt", "hello");
  fs::resize_file(archive.incoming() / "notes.txt", 0);
  write_file_atomic(archive.incoming() / "00000001000000000000000D", "");
  fs::resize_file(archive.incoming() / "00000001000000000000000D", (1ull << 30) + 1);  // sparse: never read
  EXPECT_TRUE(archive.archive_incoming().empty());
  EXPECT_TRUE(archive.segments().empty());
  for (const char* n : {"000000010000000000000007", "000000010000000000000009", "00000001000000000000000A",
                        "00000001000000000000000D"}) {
    EXPECT_TRUE(fs::exists(archive.incoming() / (std::string(n) + ".rejected"))) << n;
  }

  // An archived file changed on disk afterwards is refused on the way out.
  write_file_atomic(archive.incoming() / "00000001000000000000000B", make_segment(1, 11));
  ASSERT_EQ(archive.archive_incoming().size(), 1u);
  fs::rename(archive.dir() / "00000001000000000000000B.zst", archive.dir() / "00000001000000000000000C.zst");
  try {
    archive.restore_segment("00000001000000000000000C", dir.path() / "out");
    ADD_FAILURE() << "a segment under another name was restored";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::verification);
  }
  EXPECT_FALSE(fs::exists(dir.path() / "out"));
}

TEST(WalArchive, WalFromTheRemoteIsTakenOnlyWhenItIsWhatItsNameSays) {
  TempDir dir;
  WalArchive archive(dir.path(), kSysid);
  const std::string seg = make_segment(1, 5);
  archive.adopt("000000010000000000000005", seg);
  EXPECT_EQ(archive.archived_files(), std::vector<std::string>{"000000010000000000000005.zst"});
  archive.restore_segment("000000010000000000000005", dir.path() / "out");
  EXPECT_EQ(read_file(dir.path() / "out"), seg);
  archive.adopt("000000010000000000000006", make_segment(1, 6).substr(0, 9000), true);  // the unfinished one
  EXPECT_EQ(archive.partial(), "000000010000000000000006");
  struct Crafted {
    std::string name, data;
  };
  for (const Crafted& c : std::vector<Crafted>{{"000000010000000000000007", make_segment(1, 8)},
                                               {"000000010000000000000009", make_segment(1, 9, 42)},
                                               {"00000001000000000000000A", make_segment(1, 10).substr(0, 100)},
                                               {"../../etc/passwd", "x"},
                                               {"000000010000000000000005x", seg}}) {
    EXPECT_THROW(archive.adopt(c.name, c.data), Error) << c.name;
  }
  EXPECT_EQ(archive.archived_files(), std::vector<std::string>{"000000010000000000000005.zst"});
}

TEST(WalArchive, RemoveBeforeKeepsTheSegmentsFromThePositionOnWhateverTheTimeline) {
  TempDir dir;
  WalArchive archive(dir.path(), kSysid);
  for (std::uint64_t n : {3, 4, 5, 6}) archive.adopt(WalSegmentName{1, n}.str(kSeg), make_segment(1, n));
  archive.adopt(WalSegmentName{2, 4}.str(kSeg), make_segment(2, 4));
  EXPECT_EQ(archive.remove_before("000000020000000000000005", true).size(), 3u) << "a dry run names them";
  EXPECT_EQ(archive.archived_files().size(), 5u) << "and deletes nothing";
  const auto removed = archive.remove_before("000000020000000000000005", false);
  EXPECT_EQ(removed, (std::vector<std::string>{"000000010000000000000003.zst", "000000010000000000000004.zst",
                                               "000000020000000000000004.zst"}));
  EXPECT_EQ(archive.archived_files(), (std::vector<std::string>{"000000010000000000000005.zst", "000000010000000000000006.zst"}));
  EXPECT_TRUE(archive.remove_before("not a segment", false).empty());
}


// Where the receiver resumes (pg/wal_receiver.hpp).
TEST(WalStreamStart, AfterTheNewestSegmentKeptOrAtTheUnfinishedOnesStart) {
  const Lsn server = 0x7000123;
  // Finished 1..5 kept: the next is 6. The unfinished 6 is received again whole.
  auto s = wal_stream_start({"000000010000000000000004", "000000010000000000000005"}, std::nullopt, 1, server, 0x2000000, kSeg);
  EXPECT_EQ(s.position, 0x6000000u);
  EXPECT_EQ(s.timeline, 1u);
  s = wal_stream_start({"000000010000000000000005"}, "000000010000000000000006", 1, server, 0x2000000, kSeg);
  EXPECT_EQ(s.position, 0x6000000u);
  // Nothing kept: the slot's position, at its segment's start; no slot: the server's.
  EXPECT_EQ(wal_stream_start({}, std::nullopt, 1, server, 0x2000010, kSeg).position, 0x2000000u);
  EXPECT_EQ(wal_stream_start({}, std::nullopt, 1, server, std::nullopt, kSeg).position, 0x7000000u);
}

TEST(WalStreamStart, NamesAheadOfTheServerOrOnAnotherTimelineArePassedOver) {
  const Lsn server = 0x7000123;
  // A crafted name in BACKUP_DIR far ahead of the server: the slot decides, never a position the
  // server cannot serve (the receiver would retry it forever).
  auto s = wal_stream_start({"0000000100000000000000FF"}, std::nullopt, 1, server, 0x3000000, kSeg);
  EXPECT_EQ(s.position, 0x3000000u);
  s = wal_stream_start({}, "0000000100000000000000FF", 1, server, 0x3000000, kSeg);
  EXPECT_EQ(s.position, 0x3000000u);
  // Segments of timeline 1 when the server is on 2: the slot's position, on timeline 2.
  s = wal_stream_start({"000000010000000000000005"}, std::nullopt, 2, server, 0x4000000, kSeg);
  EXPECT_EQ(s.position, 0x4000000u);
  EXPECT_EQ(s.timeline, 2u);
}

}  // namespace
}  // namespace backupctl
