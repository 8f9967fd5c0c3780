#include "kvault/base/time_text.h"

#include <ctime>

#include <gtest/gtest.h>

namespace kvault {
namespace {

TEST(TimeTextTest, DaysMatchTheCLibraryOverFourCenturies) {
  for (int64_t days = -146097; days <= 146097 * 2; days += 37) {
    const std::time_t t = days * 86400;
    std::tm tm{};
    ASSERT_NE(gmtime_r(&t, &tm), nullptr);
    const CivilDay d = CivilFromDays(days);
    ASSERT_EQ(d.year, tm.tm_year + 1900) << days;
    ASSERT_EQ(d.month, tm.tm_mon + 1) << days;
    ASSERT_EQ(d.day, tm.tm_mday) << days;
    ASSERT_EQ(Weekday(days), (tm.tm_wday + 6) % 7) << days;
    ASSERT_EQ(DaysFromCivil(d), days);
  }
}

TEST(TimeTextTest, ParsesIso8601DatesAndTimes) {
  EXPECT_EQ(ParseIso8601("2023-05-03"), 1683072000);
  EXPECT_EQ(ParseIso8601("2023-05-03T10:00:00Z"), 1683108000);
  EXPECT_EQ(ParseIso8601("2023-05-03 10:00"), 1683108000);
  EXPECT_EQ(ParseIso8601("2023-05-03T12:00:00.250+02:00"), 1683108000);
  EXPECT_EQ(ParseIso8601("2023-05-03T05:30:00-0430"), 1683108000);
  EXPECT_EQ(ParseIso8601("2024-02-29"), 1709164800);
}

TEST(TimeTextTest, RefusesWhatIsNotADate) {
  for (const char* bad : {"", "2023", "2023-5-3", "2023-02-30", "2023-13-01", "2023-05-03T25:00",
                          "2023-05-03T10:00:00+25:00", "2023-05-03T10:00:00Zjunk", "yesterday",
                          "2023-05-03T10:00:00.", "2023-05-03X10:00"}) {
    EXPECT_FALSE(ParseIso8601(bad).has_value()) << bad;
  }
}

TEST(TimeTextTest, FormatsDaysAndInstants) {
  EXPECT_EQ(DayText(1683108000), "3 May 2023");
  EXPECT_EQ(Iso8601Text(1683108000), "2023-05-03T10:00:00Z");
  EXPECT_EQ(Iso8601Text(0), "1970-01-01T00:00:00Z");
  EXPECT_EQ(MonthName(12), "December");
}

}  // namespace
}  // namespace kvault
