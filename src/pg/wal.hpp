// PostgreSQL's write-ahead log as files: LSNs ("0/16B3F48"), segment file names
// ("000000010000000000000003": timeline, then the segment number in two halves) and the check of a
// segment's first page, which names the cluster (system identifier), the timeline and where in the
// log the segment starts. A segment that came from anywhere but our receiver (a file in BACKUP_DIR
// someone else wrote) is taken only when its first page says it is the segment its name says, of
// the cluster the folder is for.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace backupctl {

using Lsn = std::uint64_t;

// "X/Y" (hex) -> LSN; nullopt for anything else.
std::optional<Lsn> parse_lsn(std::string_view text);
std::string format_lsn(Lsn lsn);

struct WalSegmentName {
  std::uint32_t timeline = 0;
  std::uint64_t segno = 0;  // with `segment_size` bytes per segment

  // The 24 hex digits of PostgreSQL's XLogFileName().
  std::string str(std::uint64_t segment_size) const;
  Lsn start(std::uint64_t segment_size) const { return segno * segment_size; }
};

// "000000010000000000000003" (upper-case hex, as PostgreSQL names them) -> timeline 1, segno 3
// for `segment_size`; nullopt for other names (".partial", ".history", lower case, a high half
// out of range for the size).
std::optional<WalSegmentName> parse_wal_segment_name(std::string_view name, std::uint64_t segment_size);
// "00000002.history" -> 2.
std::optional<std::uint32_t> parse_history_name(std::string_view name);

// The segment holding `lsn` on `timeline`.
WalSegmentName segment_of(Lsn lsn, std::uint32_t timeline, std::uint64_t segment_size);

// What a segment's first (long) page header says.
struct WalSegmentHeader {
  std::uint32_t timeline = 0;
  Lsn page_address = 0;
  std::uint64_t system_identifier = 0;
  std::uint32_t segment_size = 0;
  std::uint32_t block_size = 0;
};

// Reads the long page header at the start of a segment; nullopt when `data` is too short or the
// header is not one (magic, flags, a size that is not a power of two between 1 MiB and 1 GiB).
std::optional<WalSegmentHeader> read_wal_segment_header(std::span<const char> data);

// Why the segment `name` with content `data` is not what its name says for the cluster
// `system_identifier` (0: any), or "" when it is: its length, header, timeline, start address.
// `partial`: the unfinished segment, which may be shorter (never longer).
std::string check_wal_segment(std::string_view name, std::span<const char> data, std::uint64_t system_identifier,
                              bool partial = false);
// The same from the segment's first bytes (`head`: its first page, or all of it when shorter) and
// its length: what a check of a segment streamed to a file keeps.
std::string check_wal_segment_head(std::string_view name, std::span<const char> head, std::uint64_t size,
                                   std::uint64_t system_identifier, bool partial = false);

}  // namespace backupctl
