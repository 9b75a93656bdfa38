// Wall-clock formatting. Backup names use local time (what operators read on their servers);
// metas carry ISO-8601 with the UTC offset so they are unambiguous anywhere.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace backupctl {

using Clock = std::chrono::system_clock;

// "20261126_035454" in local time: the timestamp part of backup file names.
std::string name_timestamp(Clock::time_point t);

// "2026-11-26T03:54:54+09:00" (local time with offset).
std::string iso8601(Clock::time_point t);

// "2027-01-01T00:00:00Z": UTC, as S3 headers want it (Object Lock's retain-until date).
std::string iso8601_utc(Clock::time_point t);

// Parses what iso8601() writes (and "Z" for UTC). nullopt when malformed.
std::optional<Clock::time_point> parse_iso8601(std::string_view text);

// Parses "YYYYMMDD_HHMMSS" as local time. nullopt when malformed.
std::optional<Clock::time_point> parse_name_timestamp(std::string_view text);

// A backup (or set) dated more than this ahead of this host's clock was made with a wrong clock:
// clocks kept by NTP agree within a second, and a container has its host's. Such a backup is
// never "latest", never the newest for the staleness check, and `status` fails on it.
inline constexpr std::chrono::minutes kClockTolerance{10};
inline bool dated_in_future(Clock::time_point t, Clock::time_point now) { return t > now + kClockTolerance; }

// Seconds between two steady-clock points, as a double.
double seconds_since(std::chrono::steady_clock::time_point start);

}  // namespace backupctl
