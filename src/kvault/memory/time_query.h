// memory/time_query.h: the period a question asks about, when it names one ("in May", "on 3
// May 2023", "last week", "two days ago", "yesterday", "in 2022", "last Tuesday",
// "2023-05-03"), as an interval of Unix seconds, so that search can prefer the chunks said
// then (chunk_index.h, "Time"). Relative expressions are resolved against `now`: the time of
// the question itself, not of the server (a conversation replayed from an export asks about
// its own past). Days are UTC days.
//
// Month names count only where they are surely dates: after a preposition ("in", "during",
// "of", "since", "last", "early"...) or beside a day number or a year, so "May I ask..." and
// "we march on" name no period. A month without a year is its latest occurrence that began
// at or before `now`. Only the first expression found is used.
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kvault::memory {

struct TimeRange {
  int64_t begin = 0;  // Unix seconds, inclusive
  int64_t end = 0;    // exclusive
  std::string text;   // the words that named it ("last week"), for logs and tests
  // Those words, lowercased: search drops them from the query, the period stands for them.
  std::vector<std::string> words;
};

std::optional<TimeRange> FindTimeRange(std::string_view question, int64_t now);

}  // namespace kvault::memory
