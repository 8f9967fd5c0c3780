#include "kvault/memory/time_query.h"

#include <array>
#include <cctype>
#include <vector>

#include "kvault/base/time_text.h"

namespace kvault::memory {
namespace {

constexpr int64_t kDay = 86400;

constexpr std::array<std::string_view, 12> kMonthWords = {
    "january", "february", "march",     "april",   "may",      "june",
    "july",    "august",   "september", "october", "november", "december"};
constexpr std::array<std::string_view, 7> kWeekdayWords = {
    "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"};
constexpr std::array<std::string_view, 12> kCountWords = {"one",  "two", "three",  "four",
                                                          "five", "six", "seven",  "eight",
                                                          "nine", "ten", "eleven", "twelve"};
// Words after which a month name is the month ("in May", "last March", "early June"). Not
// "since", "before", "until": those name an open period, which is not searched as one.
constexpr std::array<std::string_view, 9> kMonthLeads = {"in",   "during", "of",   "last", "early",
                                                         "late", "mid",    "this", "back"};

template <size_t N>
int IndexIn(const std::array<std::string_view, N>& words, std::string_view word) {
  for (size_t i = 0; i < N; ++i) {
    if (words[i] == word) return static_cast<int>(i);
  }
  return -1;
}

// Lowercased runs of letters and digits.
std::vector<std::string> Words(std::string_view text) {
  std::vector<std::string> words;
  std::string word;
  for (const char c : text) {
    if (std::isalnum(static_cast<unsigned char>(c)) != 0) {
      word += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    } else if (!word.empty()) {
      words.push_back(std::move(word));
      word.clear();
    }
  }
  if (!word.empty()) words.push_back(std::move(word));
  return words;
}

// 1-999 in digits, "one".."twelve", "a"/"an".
std::optional<int> Count(std::string_view word) {
  if (word == "a" || word == "an") return 1;
  const int index = IndexIn(kCountWords, word);
  if (index >= 0) return index + 1;
  if (word.empty() || word.size() > 3) return std::nullopt;
  int value = 0;
  for (const char c : word) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + (c - '0');
  }
  return value > 0 ? std::optional<int>(value) : std::nullopt;
}

// "3", "03", "3rd", "21st": 1-31.
std::optional<int> DayNumber(std::string_view word) {
  size_t digits = 0;
  while (digits < word.size() && std::isdigit(static_cast<unsigned char>(word[digits])) != 0) {
    ++digits;
  }
  if (digits == 0 || digits > 2) return std::nullopt;
  const std::string_view suffix = word.substr(digits);
  if (!suffix.empty() && suffix != "st" && suffix != "nd" && suffix != "rd" && suffix != "th") {
    return std::nullopt;
  }
  const int value = std::stoi(std::string(word.substr(0, digits)));
  return value >= 1 && value <= 31 ? std::optional<int>(value) : std::nullopt;
}

std::optional<int64_t> Year(std::string_view word) {
  if (word.size() != 4) return std::nullopt;
  for (const char c : word) {
    if (c < '0' || c > '9') return std::nullopt;
  }
  const int64_t year = std::stoi(std::string(word));
  return year >= 1970 && year <= 2199 ? std::optional<int64_t>(year) : std::nullopt;
}

// Resolves expressions against the day of `now`.
class Resolver {
 public:
  explicit Resolver(int64_t now)
      : today_(now >= 0 ? now / kDay : (now - kDay + 1) / kDay), civil_(CivilFromDays(today_)) {}

  TimeRange Days(int64_t first_day, int64_t n_days, std::string text) const {
    return {first_day * kDay, (first_day + n_days) * kDay, std::move(text)};
  }
  TimeRange Month(int64_t year, int month, std::string text) const {
    return Days(DaysFromCivil({year, month, 1}), DaysInMonth(year, month), std::move(text));
  }
  TimeRange Year(int64_t year, std::string text) const {
    const int64_t first = DaysFromCivil({year, 1, 1});
    return Days(first, DaysFromCivil({year + 1, 1, 1}) - first, std::move(text));
  }
  // The latest `month` that began at or before today (strictly before this month: `last`).
  int64_t YearOfMonth(int month, bool last) const {
    return month < civil_.month || (month == civil_.month && !last) ? civil_.year : civil_.year - 1;
  }
  // The latest date with this day and month at or before today.
  int64_t YearOfDay(int month, int day) const {
    return month < civil_.month || (month == civil_.month && day <= civil_.day) ? civil_.year
                                                                                : civil_.year - 1;
  }
  std::optional<TimeRange> Day(int64_t year, int month, int day, std::string text) const {
    if (day > DaysInMonth(year, month)) return std::nullopt;
    return Days(DaysFromCivil({year, month, day}), 1, std::move(text));
  }
  // Months back from this one: 0 = this month.
  TimeRange MonthsAgo(int n, std::string text) const {
    int64_t index = civil_.year * 12 + (civil_.month - 1) - n;
    return Month(index / 12, static_cast<int>(index % 12) + 1, std::move(text));
  }
  int64_t WeekStart() const { return today_ - Weekday(today_); }
  int64_t today() const { return today_; }
  const CivilDay& civil() const { return civil_; }

 private:
  int64_t today_;
  CivilDay civil_;
};

std::string Join(const std::vector<std::string>& words, size_t from, size_t to) {
  std::string text;
  for (size_t i = from; i < to && i < words.size(); ++i) {
    if (!text.empty()) text += ' ';
    text += words[i];
  }
  return text;
}

// "2023-05-03" anywhere in the text.
std::optional<TimeRange> FindIsoDate(std::string_view text) {
  for (size_t i = 0; i + 10 <= text.size(); ++i) {
    if (i > 0 && std::isdigit(static_cast<unsigned char>(text[i - 1])) != 0) continue;
    if (i + 10 < text.size() && std::isdigit(static_cast<unsigned char>(text[i + 10])) != 0) {
      continue;
    }
    const std::optional<int64_t> day = ParseIso8601(text.substr(i, 10));
    if (day) return TimeRange{*day, *day + kDay, std::string(text.substr(i, 10))};
  }
  return std::nullopt;
}

// A month name at words[i] that is a date, with the day and year around it.
std::optional<TimeRange> MonthAt(const std::vector<std::string>& w, size_t i, int month,
                                 const Resolver& r) {
  auto at = [&w](size_t j) -> std::string_view {
    return j < w.size() ? std::string_view(w[j]) : std::string_view();
  };
  const std::string_view before = i > 0 ? at(i - 1) : "";
  // "3 May [2023]", "3rd of May [2023]"
  std::optional<int> day = DayNumber(before);
  size_t from = i - (day ? 1 : 0);
  if (!day && before == "of" && i >= 2) {
    day = DayNumber(at(i - 2));
    if (day) from = i - 2;
  }
  size_t to = i + 1;
  if (!day) {  // "May 3[rd] [2023]"
    day = DayNumber(at(i + 1));
    if (day) to = i + 2;
  }
  const std::optional<int64_t> year = Year(at(to));
  if (year) ++to;
  if (day) {
    return r.Day(year ? *year : r.YearOfDay(month, *day), month, *day, Join(w, from, to));
  }
  if (year) return r.Month(*year, month, Join(w, i, to));
  if (IndexIn(kMonthLeads, before) < 0) return std::nullopt;  // "May I ask", "we march on"
  // "how this may change", "back may be sore": the verb, not the month.
  if (month == 5 && (before == "this" || before == "back")) return std::nullopt;
  const bool last = before == "last";
  return r.Month(before == "this" ? r.civil().year : r.YearOfMonth(month, last), month,
                 Join(w, i - 1, i + 1));
}

// "last week", "this month", "last weekend", "past year".
std::optional<TimeRange> PeriodAt(const std::vector<std::string>& w, size_t i, const Resolver& r) {
  const std::string& lead = w[i];
  const bool last = lead == "last" || lead == "previous";
  if (i + 1 >= w.size()) return std::nullopt;
  const std::string& unit = w[i + 1];
  const std::string text = Join(w, i, i + 2);
  if (lead == "past") {  // a rolling period up to today: "the past week"
    if (unit == "week") return r.Days(r.today() - 7, 8, text);
    if (unit == "month") return r.Days(r.today() - 30, 31, text);
    if (unit == "year") return r.Days(r.today() - 365, 366, text);
    return std::nullopt;
  }
  if (!last && lead != "this") return std::nullopt;
  if (unit == "week") return r.Days(r.WeekStart() - (last ? 7 : 0), 7, text);
  if (unit == "weekend") return r.Days(r.WeekStart() - (last ? 2 : -5), 2, text);
  if (unit == "month") return r.MonthsAgo(last ? 1 : 0, text);
  if (unit == "year") return r.Year(r.civil().year - (last ? 1 : 0), text);
  const int weekday = IndexIn(kWeekdayWords, unit);
  if (weekday >= 0 && last) {
    const int64_t back = (Weekday(r.today()) - weekday + 6) % 7 + 1;  // 1-7 days back
    return r.Days(r.today() - back, 1, text);
  }
  return std::nullopt;
}

// "two days ago", "a week ago", "3 months ago".
std::optional<TimeRange> AgoAt(const std::vector<std::string>& w, size_t i, const Resolver& r) {
  if (i + 2 >= w.size() || w[i + 2] != "ago") return std::nullopt;
  const std::optional<int> n = Count(w[i]);
  if (!n) return std::nullopt;
  std::string unit = w[i + 1];
  if (unit.size() > 1 && unit.back() == 's') unit.pop_back();
  const std::string text = Join(w, i, i + 3);
  if (unit == "day") return r.Days(r.today() - *n, 1, text);
  if (unit == "week") return r.Days(r.today() - 7 * *n - 3, 7, text);
  if (unit == "month") return r.MonthsAgo(*n, text);
  if (unit == "year") return r.Year(r.civil().year - *n, text);
  return std::nullopt;
}

std::optional<TimeRange> FindAt(const std::vector<std::string>& w, size_t i, const Resolver& r) {
  const std::string& word = w[i];
  const std::string_view before = i > 0 ? std::string_view(w[i - 1]) : "";
  const int month = IndexIn(kMonthWords, word);
  if (month >= 0) return MonthAt(w, i, month + 1, r);
  if (word == "yesterday") return r.Days(r.today() - 1, 1, word);
  if (word == "today" || word == "tonight") return r.Days(r.today(), 1, word);
  if (before == "this" && (word == "morning" || word == "afternoon" || word == "evening")) {
    return r.Days(r.today(), 1, Join(w, i - 1, i + 1));
  }
  if (std::optional<TimeRange> period = PeriodAt(w, i, r)) return period;
  if (std::optional<TimeRange> ago = AgoAt(w, i, r)) return ago;
  const int weekday = IndexIn(kWeekdayWords, word);
  if (weekday >= 0 && before == "on") {  // the latest such day before today
    const int64_t back = (Weekday(r.today()) - weekday + 6) % 7 + 1;
    return r.Days(r.today() - back, 1, Join(w, i - 1, i + 1));
  }
  const std::optional<int64_t> year = Year(word);
  if (year && (before == "in" || before == "during" || before == "of")) {
    return r.Year(*year, Join(w, i - 1, i + 1));
  }
  return std::nullopt;
}

}  // namespace

std::optional<TimeRange> FindTimeRange(std::string_view question, int64_t now) {
  std::optional<TimeRange> range = FindIsoDate(question);
  const std::vector<std::string> words = Words(question);
  const Resolver resolver(now);
  for (size_t i = 0; i < words.size() && !range; ++i) range = FindAt(words, i, resolver);
  if (range) range->words = Words(range->text);
  return range;
}

}  // namespace kvault::memory
