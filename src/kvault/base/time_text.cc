#include "kvault/base/time_text.h"

#include <array>
#include <chrono>
#include <cstdio>

namespace kvault {
namespace {

constexpr std::array<std::string_view, 12> kMonths = {
    "January", "February", "March",     "April",   "May",      "June",
    "July",    "August",   "September", "October", "November", "December"};

int64_t FloorDiv(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

bool IsLeap(int64_t year) { return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0; }

// Reads exactly `n` digits at text[*pos].
std::optional<int> Digits(std::string_view text, size_t* pos, size_t n) {
  if (*pos + n > text.size()) return std::nullopt;
  int value = 0;
  for (size_t i = 0; i < n; ++i) {
    const char c = text[*pos + i];
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + (c - '0');
  }
  *pos += n;
  return value;
}

bool Expect(std::string_view text, size_t* pos, char c) {
  if (*pos >= text.size() || text[*pos] != c) return false;
  ++*pos;
  return true;
}

// "Z", "+02:00", "-0530" or nothing (UTC); the offset in seconds east of UTC.
std::optional<int64_t> ParseOffset(std::string_view text, size_t* pos) {
  if (*pos == text.size()) return 0;
  const char sign = text[*pos];
  if (sign == 'Z' || sign == 'z') {
    ++*pos;
    return 0;
  }
  if (sign != '+' && sign != '-') return std::nullopt;
  ++*pos;
  const std::optional<int> hours = Digits(text, pos, 2);
  Expect(text, pos, ':');
  const std::optional<int> minutes = Digits(text, pos, 2);
  if (!hours || !minutes || *hours > 23 || *minutes > 59) return std::nullopt;
  const int64_t offset = (*hours * 60 + *minutes) * 60;
  return sign == '+' ? offset : -offset;
}

}  // namespace

// Howard Hinnant's days_from_civil / civil_from_days (public domain), exact for every date.
int64_t DaysFromCivil(const CivilDay& d) {
  const int64_t y = d.year - (d.month <= 2 ? 1 : 0);
  const int64_t era = FloorDiv(y, 400);
  const int64_t yoe = y - era * 400;
  const int64_t mp = (d.month + 9) % 12;
  const int64_t doy = (153 * mp + 2) / 5 + d.day - 1;
  const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

CivilDay CivilFromDays(int64_t z) {
  z += 719468;
  const int64_t era = FloorDiv(z, 146097);
  const int64_t doe = z - era * 146097;
  const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const int64_t mp = (5 * doy + 2) / 153;
  CivilDay day;
  day.day = static_cast<int>(doy - (153 * mp + 2) / 5 + 1);
  day.month = static_cast<int>(mp < 10 ? mp + 3 : mp - 9);
  day.year = yoe + era * 400 + (day.month <= 2 ? 1 : 0);
  return day;
}

int DaysInMonth(int64_t year, int month) {
  static constexpr std::array<int, 12> kDays = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (month == 2 && IsLeap(year)) return 29;
  return kDays[static_cast<size_t>(month - 1)];
}

// 1970-01-01 was a Thursday.
int Weekday(int64_t days) {
  const int64_t w = (days + 3) % 7;
  return static_cast<int>(w < 0 ? w + 7 : w);
}

std::optional<int64_t> ParseIso8601(std::string_view text) {
  size_t pos = 0;
  const std::optional<int> year = Digits(text, &pos, 4);
  if (!year || !Expect(text, &pos, '-')) return std::nullopt;
  const std::optional<int> month = Digits(text, &pos, 2);
  if (!month || !Expect(text, &pos, '-')) return std::nullopt;
  const std::optional<int> day = Digits(text, &pos, 2);
  if (!day || *month < 1 || *month > 12 || *day < 1 || *day > DaysInMonth(*year, *month)) {
    return std::nullopt;
  }
  int64_t seconds = DaysFromCivil({*year, *month, *day}) * 86400;
  if (pos == text.size()) return seconds;
  if (text[pos] != 'T' && text[pos] != 't' && text[pos] != ' ') return std::nullopt;
  ++pos;
  const std::optional<int> hour = Digits(text, &pos, 2);
  if (!hour || !Expect(text, &pos, ':')) return std::nullopt;
  const std::optional<int> minute = Digits(text, &pos, 2);
  int second = 0;
  if (!minute) return std::nullopt;
  if (Expect(text, &pos, ':')) {
    const std::optional<int> s = Digits(text, &pos, 2);
    if (!s) return std::nullopt;
    second = *s;
    if (Expect(text, &pos, '.') || Expect(text, &pos, ',')) {
      const size_t start = pos;
      while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') ++pos;
      if (pos == start) return std::nullopt;
    }
  }
  if (*hour > 23 || *minute > 59 || second > 60) return std::nullopt;  // 60: a leap second
  const std::optional<int64_t> offset = ParseOffset(text, &pos);
  if (!offset || pos != text.size()) return std::nullopt;
  seconds += *hour * 3600 + *minute * 60 + second;
  return seconds - *offset;
}

std::string Iso8601Text(int64_t unix_seconds) {
  const int64_t days = FloorDiv(unix_seconds, 86400);
  const int64_t in_day = unix_seconds - days * 86400;
  const CivilDay d = CivilFromDays(days);
  char buffer[64];
  std::snprintf(buffer, sizeof(buffer), "%04lld-%02d-%02dT%02lld:%02lld:%02lldZ",
                static_cast<long long>(d.year), d.month, d.day,
                static_cast<long long>(in_day / 3600), static_cast<long long>(in_day / 60 % 60),
                static_cast<long long>(in_day % 60));
  return buffer;
}

std::string DayText(int64_t unix_seconds) {
  const CivilDay d = CivilFromDays(FloorDiv(unix_seconds, 86400));
  return std::to_string(d.day) + " " + std::string(MonthName(d.month)) + " " +
         std::to_string(d.year);
}

int64_t UnixNow() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string_view MonthName(int month) {
  if (month < 1 || month > 12) return "?";
  return kMonths[static_cast<size_t>(month - 1)];
}

}  // namespace kvault
