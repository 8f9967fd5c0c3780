// base/time_text.h: instants as text and back, in UTC. Messages carry a time (their
// `timestamp`, ISO 8601 or Unix seconds), kept with each turn as Unix seconds and shown in
// recall annotations and search results. Calendar arithmetic is done here on days since the
// epoch (proleptic Gregorian), not with the C library's time zone machinery: the answer must
// not depend on the machine's TZ or locale.
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace kvault {

// A calendar day, month 1-12, day 1-31.
struct CivilDay {
  int64_t year = 1970;
  int month = 1;
  int day = 1;
};

// Days since 1970-01-01 of `day` (negative before it). REQUIRES: a valid date.
int64_t DaysFromCivil(const CivilDay& day);
CivilDay CivilFromDays(int64_t days);
// Days in the month (28-31).
int DaysInMonth(int64_t year, int month);
// 0 = Monday ... 6 = Sunday, for a number of days since the epoch.
int Weekday(int64_t days);

// Unix seconds of an ISO 8601 date or date-time: "2023-05-03", "2023-05-03T10:00:00Z",
// "2023-05-03 10:00", "2023-05-03T10:00:00.250+02:00" (fraction dropped; no offset = UTC).
// nullopt for anything else, including impossible dates ("2023-02-30").
std::optional<int64_t> ParseIso8601(std::string_view text);
// "2023-05-03T10:00:00Z".
std::string Iso8601Text(int64_t unix_seconds);
// "3 May 2023".
std::string DayText(int64_t unix_seconds);
// The wall clock's Unix seconds.
int64_t UnixNow();
// "January" ... "December" for month 1-12.
std::string_view MonthName(int month);

}  // namespace kvault
