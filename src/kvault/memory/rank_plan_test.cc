#include "kvault/memory/rank_plan.h"

#include <cmath>
#include <map>

#include <gtest/gtest.h>

namespace kvault::memory {
namespace {

// Frequencies from a table of phrases (unquoted); a pair of them is in half the rows of the
// rarer one; phrases not in the table are in no row.
PhraseFrequency From(std::map<std::string, int64_t> rows) {
  return [rows](const std::string& expression) -> Result<int64_t> {
    auto count = [&rows](std::string quoted) -> int64_t {
      auto it = rows.find(quoted.substr(1, quoted.size() - 2));
      return it == rows.end() ? 0 : it->second;
    };
    const size_t both = expression.find(" AND ");
    if (both == std::string::npos) return count(expression);
    return std::min(count(expression.substr(0, both)), count(expression.substr(both + 5))) / 2;
  };
}

double Idf(double n, double df) { return std::log((n - df + 0.5) / (df + 0.5)); }

TEST(RankPlanTest, ASmallHistoryGetsThePlainOrWithIdfWeights) {
  const RankedPhrase scored[] = {{"dog", 1}, {"sister", 1}, {"canine", 0.5}, {"absent", 1}};
  const RankPlan plan =
      PlanRanking(scored, {}, From({{"dog", 10}, {"sister", 40}, {"canine", 2}}), {.n_rows = 1000})
          .value();
  EXPECT_EQ(plan.match, "\"dog\" OR \"sister\" OR \"canine\"");  // "absent" matches nothing
  ASSERT_EQ(plan.weights.size(), 3u);
  EXPECT_DOUBLE_EQ(plan.weights[0], Idf(1000, 10));
  EXPECT_DOUBLE_EQ(plan.weights[1], Idf(1000, 40));
  EXPECT_DOUBLE_EQ(plan.weights[2], 0.5 * Idf(1000, 2));
  EXPECT_EQ(plan.n_selecting, 0u);
}

TEST(RankPlanTest, CommonWordsSelectOnlyInPairsAndTheCommonestNotAtAll) {
  // 1M chunks: selective up to 20,000 rows, common up to 250,000.
  const RankedPhrase scored[] = {{"chess", 1}, {"club", 1},       {"meet", 1},
                                 {"days", 1},  {"chess club", 1}, {"game", 0.5}};
  const RankPlan plan = PlanRanking(scored, {},
                                    From({{"chess", 45000},
                                          {"club", 37000},
                                          {"meet", 39000},
                                          {"days", 400000},
                                          {"chess club", 900},
                                          {"game", 60000}}),
                                    {.n_rows = 1000000})
                            .value();
  EXPECT_EQ(plan.match,
            "(\"chess club\" OR (\"club\" AND \"meet\") OR (\"club\" AND \"chess\") OR "
            "(\"meet\" AND \"chess\")) AND (\"chess\" OR \"club\" OR \"meet\" OR \"days\" OR "
            "\"chess club\" OR \"game\")");
  ASSERT_EQ(plan.n_selecting, 7u);
  EXPECT_EQ(plan.selected_rows, 900 + 18500 + 18500 + 19500);
  ASSERT_EQ(plan.weights.size(), 13u);
  for (size_t i = 0; i < 7; ++i) EXPECT_EQ(plan.weights[i], 0.0);
  EXPECT_DOUBLE_EQ(plan.weights[7], Idf(1e6, 45000));
  EXPECT_DOUBLE_EQ(plan.weights[10], Idf(1e6, 400000));
  EXPECT_DOUBLE_EQ(plan.weights[12], 0.5 * Idf(1e6, 60000));
}

TEST(RankPlanTest, WithNothingSelectiveTheRarestPhraseSelects) {
  const RankedPhrase scored[] = {{"days", 1}, {"time", 1}};
  const RankPlan plan =
      PlanRanking(scored, {}, From({{"days", 400000}, {"time", 300000}}), {.n_rows = 1000000})
          .value();
  EXPECT_EQ(plan.match, "(\"time\") AND (\"days\" OR \"time\")");
  EXPECT_EQ(plan.n_selecting, 1u);
  EXPECT_EQ(plan.selected_rows, 300000);
  // A single common word is its own selector: the plain OR.
  const RankedPhrase one[] = {{"days", 1}};
  EXPECT_EQ(PlanRanking(one, {}, From({{"days", 400000}}), {.n_rows = 1000000}).value().match,
            "\"days\"");
}

TEST(RankPlanTest, RequiredNamesSelectAndScore) {
  const RankedPhrase scored[] = {{"pet", 1}, {"adopt", 1}};
  const RankedPhrase names[] = {{"ottoline", 1}, {"nobody", 1}};
  const RankPlan plan =
      PlanRanking(scored, names, From({{"pet", 50}, {"adopt", 5}, {"ottoline", 3}}),
                  {.n_rows = 500})
          .value();
  EXPECT_EQ(plan.match, "(\"ottoline\") AND (\"pet\" OR \"adopt\")");
  EXPECT_EQ(plan.selected_rows, 3);
  ASSERT_EQ(plan.weights.size(), 3u);
  EXPECT_DOUBLE_EQ(plan.weights[0], Idf(500, 3));
  // No name in any row: nothing can match.
  const RankedPhrase absent[] = {{"nobody", 1}};
  EXPECT_TRUE(
      PlanRanking(scored, absent, From({{"pet", 50}}), {.n_rows = 500}).value().match.empty());
}

TEST(RankPlanTest, RepeatedTextsAddTheirWeightsAndErrorsPropagate) {
  const RankedPhrase scored[] = {{"dog", 1}, {"dog", 0.5}};
  const RankPlan plan = PlanRanking(scored, {}, From({{"dog", 10}}), {.n_rows = 100}).value();
  EXPECT_EQ(plan.match, "\"dog\"");
  EXPECT_DOUBLE_EQ(plan.weights[0], 1.5 * Idf(100, 10));
  const PhraseFrequency failing = [](const std::string&) -> Result<int64_t> {
    return InternalError("disk");
  };
  EXPECT_FALSE(PlanRanking(scored, {}, failing, {.n_rows = 100}).ok());
}

}  // namespace
}  // namespace kvault::memory
