#include <gtest/gtest.h>

#include <cstdlib>
#include <ctime>

#include "util/time.hpp"

namespace backupctl {

class TimeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tz = std::getenv("TZ");
    m_saved = tz ? tz : "";
    m_had = tz != nullptr;
    ::setenv("TZ", "Asia/Seoul", 1);
    ::tzset();
  }
  void TearDown() override {
    if (m_had) {
      ::setenv("TZ", m_saved.c_str(), 1);
    } else {
      ::unsetenv("TZ");
    }
    ::tzset();
  }
  std::string m_saved;
  bool m_had = false;
};

TEST_F(TimeTest, NamesUseLocalTimeAndMetasCarryTheOffset) {
  auto t = Clock::from_time_t(1772075700);  // 2026-02-26T03:15:00Z
  EXPECT_EQ(name_timestamp(t), "20260226_121500");
  EXPECT_EQ(iso8601(t), "2026-02-26T12:15:00+09:00");
}

TEST_F(TimeTest, Iso8601RoundTrips) {
  auto t = Clock::from_time_t(1772075700);
  auto parsed = parse_iso8601(iso8601(t));
  ASSERT_TRUE(parsed);
  EXPECT_EQ(*parsed, t);
  EXPECT_EQ(parse_iso8601("2026-02-26T03:15:00Z"), t);
  EXPECT_EQ(parse_iso8601("2026-02-26T03:15:00.123+00:00"), t);
  EXPECT_EQ(parse_iso8601("2026-02-25T22:15:00-05:00"), t);
  EXPECT_FALSE(parse_iso8601("yesterday"));
  EXPECT_FALSE(parse_iso8601("2026-02-26T03:15:00+0x:00"));
  // Past what the clock type holds (UBSan once caught the overflow): refused, not wrapped.
  EXPECT_FALSE(parse_iso8601("2999-01-01T00:00:00Z"));
  EXPECT_FALSE(parse_iso8601("1066-10-14T09:00:00Z"));
  EXPECT_FALSE(parse_iso8601("2026-13-06T14:01:59Z")) << "not rolled over into January";
  EXPECT_FALSE(parse_iso8601("2026-12-32T14:01:59Z"));
  EXPECT_FALSE(parse_iso8601("2026-12-06T24:01:59Z"));
}

TEST_F(TimeTest, NameTimestampsParseBack) {
  auto t = Clock::from_time_t(1772075700);
  EXPECT_EQ(parse_name_timestamp("20260226_121500"), t);
  EXPECT_FALSE(parse_name_timestamp("20261326_121500"));
  EXPECT_FALSE(parse_name_timestamp("20260226-121500"));
  EXPECT_FALSE(parse_name_timestamp("2026022_121500"));
  EXPECT_FALSE(parse_name_timestamp("29990101_000000"));
}

}  // namespace backupctl
