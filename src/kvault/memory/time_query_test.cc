#include "kvault/memory/time_query.h"

#include <gtest/gtest.h>

#include "kvault/base/time_text.h"

namespace kvault::memory {
namespace {

// Wednesday, 16 August 2023, 12:00 UTC.
constexpr int64_t kNow = 1692187200;

int64_t Day(int64_t year, int month, int day) { return DaysFromCivil({year, month, day}) * 86400; }

struct Case {
  const char* question;
  int64_t begin;
  int64_t end;
};

TEST(TimeQueryTest, FindsThePeriodAQuestionNames) {
  const Case cases[] = {
      {"What did I bake for the first time in May?", Day(2023, 5, 1), Day(2023, 6, 1)},
      {"What happened in December?", Day(2022, 12, 1), Day(2023, 1, 1)},
      {"What did I do in August?", Day(2023, 8, 1), Day(2023, 9, 1)},
      {"Who did I meet last August?", Day(2022, 8, 1), Day(2022, 9, 1)},
      {"What did we talk about on 3 May 2023?", Day(2023, 5, 3), Day(2023, 5, 4)},
      {"What did I do on May 3rd?", Day(2023, 5, 3), Day(2023, 5, 4)},
      {"the 3rd of May", Day(2023, 5, 3), Day(2023, 5, 4)},
      {"What did I say on 20 September?", Day(2022, 9, 20), Day(2022, 9, 21)},
      {"Plans for March 2024?", Day(2024, 3, 1), Day(2024, 4, 1)},
      {"What did I log on 2023-05-03?", Day(2023, 5, 3), Day(2023, 5, 4)},
      {"What did I eat yesterday?", Day(2023, 8, 15), Day(2023, 8, 16)},
      {"Anything today?", Day(2023, 8, 16), Day(2023, 8, 17)},
      {"Where was I last week?", Day(2023, 8, 7), Day(2023, 8, 14)},
      {"And this week?", Day(2023, 8, 14), Day(2023, 8, 21)},
      {"What did I do last weekend?", Day(2023, 8, 12), Day(2023, 8, 14)},
      {"What did I buy two days ago?", Day(2023, 8, 14), Day(2023, 8, 15)},
      {"a week ago", Day(2023, 8, 6), Day(2023, 8, 13)},
      {"What was I reading 3 months ago?", Day(2023, 5, 1), Day(2023, 6, 1)},
      {"Which film did we see last month?", Day(2023, 7, 1), Day(2023, 8, 1)},
      {"What did I cook last Tuesday?", Day(2023, 8, 15), Day(2023, 8, 16)},
      {"Who called on Wednesday?", Day(2023, 8, 9), Day(2023, 8, 10)},
      {"Where did I travel in 2022?", Day(2022, 1, 1), Day(2023, 1, 1)},
      {"What did I do last year?", Day(2022, 1, 1), Day(2023, 1, 1)},
      {"Anything over the past week?", Day(2023, 8, 9), Day(2023, 8, 17)},
      {"in the past month", Day(2023, 7, 17), Day(2023, 8, 17)},
  };
  for (const Case& c : cases) {
    const std::optional<TimeRange> range = FindTimeRange(c.question, kNow);
    ASSERT_TRUE(range.has_value()) << c.question;
    EXPECT_EQ(range->begin, c.begin) << c.question << " -> " << range->text;
    EXPECT_EQ(range->end, c.end) << c.question << " -> " << range->text;
  }
}

TEST(TimeQueryTest, WordsThatAreNotDatesNameNoPeriod) {
  for (const char* question :
       {"May I ask what my sister is called?", "We march on regardless.",
        "What is the name of my dog?", "I have 2023 coins in a jar.", "the last time I saw Paris",
        "When did I run the half marathon?", "Is August a good name for a cat? August is.",
        "What did I do 40 days before?", "How this may change my plans", "before May",
        "since March", ""}) {
    const std::optional<TimeRange> range = FindTimeRange(question, kNow);
    EXPECT_FALSE(range.has_value()) << question << " -> " << range->text;
  }
}

}  // namespace
}  // namespace kvault::memory
