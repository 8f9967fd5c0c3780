#include "kvault/memory/hit_merge.h"

#include <gtest/gtest.h>

namespace kvault::memory {
namespace {

ChunkHit Hit(int64_t id, double score) {
  ChunkHit hit;
  hit.chunk_id = id;
  hit.score = score;
  return hit;
}

std::vector<int64_t> Ids(const std::vector<ChunkHit>& hits) {
  std::vector<int64_t> ids;
  for (const ChunkHit& hit : hits) ids.push_back(hit.chunk_id);
  return ids;
}

TEST(HitMergeTest, AddWeightedAddsScoresOfTheSameChunk) {
  const std::vector<ChunkHit> main = {Hit(1, 10), Hit(2, 8)};
  const std::vector<ChunkHit> extra = {Hit(2, 6), Hit(3, 30)};
  const std::vector<ChunkHit> merged = AddWeighted(main, extra, 0.5);
  ASSERT_EQ(Ids(merged), (std::vector<int64_t>{3, 2, 1}));  // 15, 11, 10
  EXPECT_DOUBLE_EQ(merged[0].score, 15);
  EXPECT_DOUBLE_EQ(merged[1].score, 11);
  EXPECT_DOUBLE_EQ(merged[2].score, 10);
}

TEST(HitMergeTest, InterleaveKeepsTheBestFirstAndAlternates) {
  const std::vector<ChunkHit> first = {Hit(1, 10), Hit(2, 9), Hit(3, 8), Hit(4, 7)};
  const std::vector<ChunkHit> second = {Hit(1, 20), Hit(7, 15), Hit(8, 12)};
  const std::vector<ChunkHit> out = Interleave(first, second, 6);
  EXPECT_EQ(Ids(out), (std::vector<int64_t>{1, 7, 2, 8, 3, 4}));
  for (size_t i = 1; i < out.size(); ++i) EXPECT_LE(out[i].score, out[i - 1].score);
  EXPECT_DOUBLE_EQ(out[1].score, 10);  // capped at the hit before it
}

TEST(HitMergeTest, InterleaveStopsAtNAndWhenBothRunOut) {
  const std::vector<ChunkHit> first = {Hit(1, 10), Hit(2, 9)};
  const std::vector<ChunkHit> second = {Hit(2, 5)};
  EXPECT_EQ(Ids(Interleave(first, second, 1)), (std::vector<int64_t>{1}));
  EXPECT_EQ(Ids(Interleave(first, second, 10)), (std::vector<int64_t>{1, 2}));
  EXPECT_TRUE(Interleave({}, {}, 5).empty());
}

TEST(HitMergeTest, PreferFirstPutsThePreferredAheadAndKeepsScoresDescending) {
  const std::vector<ChunkHit> preferred = {Hit(5, 3), Hit(6, 2)};
  const std::vector<ChunkHit> rest = {Hit(1, 10), Hit(5, 9), Hit(2, 1)};
  const std::vector<ChunkHit> out = PreferFirst(preferred, rest, 10);
  EXPECT_EQ(Ids(out), (std::vector<int64_t>{5, 6, 1, 2}));
  // The preferred are lifted to the best of the rest, which keep their own scores.
  EXPECT_DOUBLE_EQ(out[0].score, 10);
  EXPECT_DOUBLE_EQ(out[1].score, 10);
  EXPECT_DOUBLE_EQ(out[2].score, 10);
  EXPECT_DOUBLE_EQ(out[3].score, 1);
  // A preferred hit above the rest keeps its score.
  const std::vector<ChunkHit> strong = {Hit(7, 20)};
  EXPECT_DOUBLE_EQ(PreferFirst(strong, rest, 2)[0].score, 20);
  EXPECT_DOUBLE_EQ(PreferFirst(strong, rest, 2)[1].score, 10);
  EXPECT_EQ(Ids(PreferFirst(preferred, rest, 3)), (std::vector<int64_t>{5, 6, 1}));
  EXPECT_EQ(Ids(PreferFirst({}, rest, 2)), (std::vector<int64_t>{1, 5}));
}

}  // namespace
}  // namespace kvault::memory
