#include "kvault/memory/fts_rank.h"

#include <cmath>

#include <gtest/gtest.h>
#include <sqlite3.h>

#include "kvault/base/sqlite.h"

namespace kvault::memory {
namespace {

class FtsRankTest : public ::testing::Test {
 protected:
  void SetUp() override {
    db_ = SqliteDatabase::Open(":memory:").value();
    ASSERT_TRUE(RegisterRankFunction(db_->raw()).ok());
    ASSERT_TRUE(db_->Execute("CREATE VIRTUAL TABLE t USING fts5(text, content='',"
                             " tokenize='porter unicode61 remove_diacritics 2')")
                    .ok());
    const char* rows[] = {"the dog and the cat",
                          "a dog a dog a dog barking",
                          "my sister has a cat called Biscuit",
                          "nothing to see here at all, really nothing",
                          "the book club meets on Tuesday, book club night",
                          "cats and dogs and sisters"};
    for (const char* row : rows) {
      auto insert = db_->Prepare("INSERT INTO t (text) VALUES (?1)").value();
      ASSERT_TRUE(insert->Bind(1, std::string_view(row)).ok());
      ASSERT_TRUE(insert->Run().ok());
    }
  }
  // rowid -> score, for `select` (one bound parameter: the match; maybe the weights).
  std::map<int64_t, double> Scores(const std::string& select, const std::string& match,
                                   const std::vector<double>* weights) {
    auto query = db_->Prepare(select).value();
    EXPECT_TRUE(query->Bind(1, std::string_view(match)).ok());
    if (weights != nullptr) EXPECT_TRUE(query->BindBlob(2, EncodeRankWeights(*weights)).ok());
    std::map<int64_t, double> scores;
    while (query->Step().value()) scores[query->ColumnInt(0)] = query->ColumnDouble(1);
    return scores;
  }
  double Idf(const std::string& phrase) {
    auto count = db_->Prepare("SELECT count(*) FROM t WHERE t MATCH ?1").value();
    EXPECT_TRUE(count->Bind(1, std::string_view(phrase)).ok());
    EXPECT_TRUE(count->Step().value());
    const double df = static_cast<double>(count->ColumnInt(0));
    return std::max(1e-6, std::log((6 - df + 0.5) / (df + 0.5)));
  }
  std::unique_ptr<SqliteDatabase> db_;
};

// With IDF weights and b = 0.75, kvault_bm25 is FTS5's own bm25() (negated), row for row.
TEST_F(FtsRankTest, EqualsFtsBm25WithIdfWeights) {
  const std::string match = "\"dog\" OR \"cat\" OR \"book club\" OR \"sister\"";
  const std::vector<double> weights = {Idf("\"dog\""), Idf("\"cat\""), Idf("\"book club\""),
                                       Idf("\"sister\"")};
  const auto ours =
      Scores("SELECT rowid, kvault_bm25(t, ?2, 0.75) FROM t WHERE t MATCH ?1", match, &weights);
  const auto theirs = Scores("SELECT rowid, -bm25(t) FROM t WHERE t MATCH ?1", match, nullptr);
  ASSERT_EQ(ours.size(), theirs.size());
  ASSERT_GE(ours.size(), 4u);
  for (const auto& [row, score] : theirs) EXPECT_NEAR(ours.at(row), score, 1e-9) << row;
}

// Phrases count from the left through parentheses and AND; weight 0 selects without scoring.
TEST_F(FtsRankTest, SelectingPhrasesWithWeightZeroDoNotScore) {
  const std::string match =
      "(\"book club\" OR (\"dog\" AND \"cat\")) AND (\"dog\" OR \"cat\" OR "
      "\"book club\")";
  const std::vector<double> weights = {
      0, 0, 0, Idf("\"dog\""), Idf("\"cat\""), Idf("\"book club\"")};
  const auto ours =
      Scores("SELECT rowid, kvault_bm25(t, ?2, 0.75) FROM t WHERE t MATCH ?1", match, &weights);
  const auto plain = Scores("SELECT rowid, -bm25(t) FROM t WHERE t MATCH ?1",
                            "\"dog\" OR \"cat\" OR \"book club\"", nullptr);
  EXPECT_EQ(ours.size(), 3u);  // rows 1, 5, 6: "book club", or a dog and a cat
  for (const auto& [row, score] : ours) EXPECT_NEAR(score, plain.at(row), 1e-9) << row;
  EXPECT_FALSE(ours.contains(2));  // a dog only
}

// The chunk index runs one prepared statement for every search: new weights must take effect.
TEST_F(FtsRankTest, AReusedStatementRanksWithItsNewWeights) {
  auto query =
      db_->Prepare("SELECT kvault_bm25(t, ?2, 0.75) FROM t WHERE t MATCH ?1 AND rowid = 1").value();
  double scores[2];
  for (int run = 0; run < 2; ++run) {
    const std::vector<double> weights = {run == 0 ? 1.0 : 3.0};
    ASSERT_TRUE(query->Bind(1, std::string_view("\"dog\"")).ok());
    ASSERT_TRUE(query->BindBlob(2, EncodeRankWeights(weights)).ok());
    ASSERT_TRUE(query->Step().value());
    scores[run] = query->ColumnDouble(0);
    ASSERT_TRUE(query->Reset().ok());
  }
  EXPECT_GT(scores[0], 0);
  EXPECT_NEAR(scores[1], 3 * scores[0], 1e-9);
}

// b = 0: the row's length does not count (a long row with one hit scores as a short one).
TEST_F(FtsRankTest, BZeroIgnoresTheRowsLength) {
  const std::vector<double> weights = {1.0};
  const auto scores =
      Scores("SELECT rowid, kvault_bm25(t, ?2, 0) FROM t WHERE t MATCH ?1", "\"cat\"", &weights);
  ASSERT_EQ(scores.size(), 3u);  // rows 1, 3 and 6 ("cats"), one hit each, lengths 5, 7, 4
  for (const auto& [row, score] : scores) EXPECT_NEAR(score, 1.0, 1e-12) << row;
}

}  // namespace
}  // namespace kvault::memory
