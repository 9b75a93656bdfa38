#include "util/time.hpp"

#include <cstdio>
#include <ctime>

namespace backupctl {

std::string name_timestamp(Clock::time_point t) {
  std::time_t tt = Clock::to_time_t(t);
  std::tm tm{};
  ::localtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%d_%H%M%S", &tm);
  return buf;
}

std::string iso8601_utc(Clock::time_point t) {
  std::time_t tt = Clock::to_time_t(t);
  std::tm tm{};
  ::gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string iso8601(Clock::time_point t) {
  std::time_t tt = Clock::to_time_t(t);
  std::tm tm{};
  ::localtime_r(&tt, &tm);
  char buf[40];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  long off = tm.tm_gmtoff;
  char sign = off < 0 ? '-' : '+';
  if (off < 0) off = -off;
  char zone[48];
  std::snprintf(zone, sizeof zone, "%c%02ld:%02ld", sign, off / 3600, (off % 3600) / 60);
  return std::string(buf) + zone;
}

namespace {
constexpr int kFirstYear = 1970, kLastYear = 2200;  // system_clock's range is 1677-2262
}  // namespace

std::optional<Clock::time_point> parse_iso8601(std::string_view text) {
  int y, mo, d, h, mi, s;
  char rest[16] = {0};
  std::string str(text);
  if (std::sscanf(str.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%15s", &y, &mo, &d, &h, &mi, &s, rest) < 6) {
    return std::nullopt;
  }
  // Years a std::chrono::system_clock (nanoseconds since 1970) holds: a crafted "2999-01-01" in a
  // meta must be refused, not overflow.
  if (y < kFirstYear || y > kLastYear) return std::nullopt;
  // timegm() would roll a 13th month or a 32nd day over into the next one.
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 60 || h < 0 || mi < 0 || s < 0) return std::nullopt;
  long offset = 0;
  std::string zone(rest);
  // Fractional seconds are accepted and ignored.
  if (!zone.empty() && zone[0] == '.') {
    auto pos = zone.find_first_not_of("0123456789", 1);
    zone = pos == std::string::npos ? "" : zone.substr(pos);
  }
  if (zone == "Z" || zone.empty()) {
    offset = 0;
  } else {
    int oh = 0, om = 0;
    char sign = zone[0];
    if ((sign != '+' && sign != '-') ||
        (std::sscanf(zone.c_str() + 1, "%2d:%2d", &oh, &om) != 2 &&
         std::sscanf(zone.c_str() + 1, "%2d%2d", &oh, &om) != 2)) {
      return std::nullopt;
    }
    offset = (oh * 3600L + om * 60L) * (sign == '-' ? -1 : 1);
  }
  std::tm tm{};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = s;
  std::time_t utc = ::timegm(&tm);
  if (utc == static_cast<std::time_t>(-1)) return std::nullopt;
  return Clock::from_time_t(utc - offset);
}

std::optional<Clock::time_point> parse_name_timestamp(std::string_view text) {
  if (text.size() != 15 || text[8] != '_') return std::nullopt;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (i != 8 && (text[i] < '0' || text[i] > '9')) return std::nullopt;
  }
  std::string s(text);
  if (const int year = std::stoi(s.substr(0, 4)); year < kFirstYear || year > kLastYear) return std::nullopt;
  std::tm tm{};
  tm.tm_year = std::stoi(s.substr(0, 4)) - 1900;
  tm.tm_mon = std::stoi(s.substr(4, 2)) - 1;
  tm.tm_mday = std::stoi(s.substr(6, 2));
  tm.tm_hour = std::stoi(s.substr(9, 2));
  tm.tm_min = std::stoi(s.substr(11, 2));
  tm.tm_sec = std::stoi(s.substr(13, 2));
  if (tm.tm_mon > 11 || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 || tm.tm_min > 59 ||
      tm.tm_sec > 60) {
    return std::nullopt;
  }
  tm.tm_isdst = -1;
  std::time_t t = std::mktime(&tm);
  if (t == static_cast<std::time_t>(-1)) return std::nullopt;
  return Clock::from_time_t(t);
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace backupctl
