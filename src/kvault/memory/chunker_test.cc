#include "kvault/memory/chunker.h"

#include <deque>
#include <optional>
#include <random>

#include <gtest/gtest.h>

namespace kvault::memory {
namespace {

// Turns of the given sizes, numbered from 0, back to back from position 0; token = position.
class ChunkerTest : public ::testing::Test {
 protected:
  IndexTurn NextTurn(int32_t n_tokens) {
    IndexTurn turn;
    turn.number = number_++;
    turn.first_pos = pos_;
    storage_.emplace_back();
    for (int32_t i = 0; i < n_tokens; ++i) storage_.back().push_back(static_cast<int32_t>(pos_++));
    turn.tokens = storage_.back();
    return turn;
  }
  std::vector<Chunk> Feed(Chunker& chunker, const std::vector<int32_t>& sizes) {
    std::vector<Chunk> chunks;
    for (int32_t size : sizes) {
      for (Chunk& chunk : chunker.Add(NextTurn(size))) chunks.push_back(std::move(chunk));
    }
    return chunks;
  }

  int64_t number_ = 0;
  int64_t pos_ = 0;
  std::deque<std::vector<int32_t>> storage_;
};

TEST_F(ChunkerTest, ShortTurnsShareAChunkThatClosesAtATurnBoundary) {
  Chunker chunker(128);
  const std::vector<Chunk> chunks = Feed(chunker, {30, 30, 30, 30, 30});
  ASSERT_EQ(chunks.size(), 1u);
  EXPECT_EQ(chunks[0].first_pos, 0);
  EXPECT_EQ(chunks[0].tokens.size(), 120u);
  EXPECT_EQ(chunks[0].first_turn, 0);
  EXPECT_EQ(chunks[0].last_turn, 3);
  EXPECT_EQ(chunker.open_tokens(), 30);
  const std::optional<Chunk> open = chunker.Close();
  ASSERT_TRUE(open.has_value());
  EXPECT_EQ(open->first_turn, 4);
  EXPECT_EQ(open->first_pos, 120);
  EXPECT_FALSE(chunker.Close().has_value());
}

TEST_F(ChunkerTest, LongTurnSplitsAtChunkBoundariesAndSmallChunksAreToppedUp) {
  Chunker chunker(128);
  std::vector<Chunk> chunks = Feed(chunker, {20, 300});
  ASSERT_EQ(chunks.size(), 2u);
  EXPECT_EQ(chunks[0].tokens.size(), 128u);  // 20 + 108 of the long turn
  EXPECT_EQ(chunks[0].first_turn, 0);
  EXPECT_EQ(chunks[0].last_turn, 1);
  EXPECT_EQ(chunks[1].first_pos, 128);
  EXPECT_EQ(chunks[1].first_turn, 1);
  EXPECT_EQ(chunks[1].last_turn, 1);
  EXPECT_EQ(chunker.open_tokens(), 320 - 256);
  // The open chunk holds half the target: the next long turn starts a chunk of its own.
  chunks = Feed(chunker, {200});
  ASSERT_EQ(chunks.size(), 2u);
  EXPECT_EQ(chunks[0].tokens.size(), 64u);
  EXPECT_EQ(chunks[1].first_pos, 320);
  EXPECT_EQ(chunks[1].first_turn, 2);
}

TEST_F(ChunkerTest, TokensBeforeNextPosAreSkippedSoTurnsMayBeFedAgain) {
  Chunker first(128);
  const IndexTurn long_turn = NextTurn(300);
  ASSERT_EQ(first.Add(long_turn).size(), 2u);
  EXPECT_TRUE(first.Add(long_turn).empty());
  EXPECT_EQ(first.next_pos(), 300);
  // Restarted from the end of the last closed chunk: only the tail is chunked again.
  Chunker resumed(128, 256);
  EXPECT_TRUE(resumed.Add(long_turn).empty());
  const std::optional<Chunk> tail = resumed.Close();
  ASSERT_TRUE(tail.has_value());
  EXPECT_EQ(tail->first_pos, 256);
  EXPECT_EQ(tail->tokens.front(), 256);
  EXPECT_EQ(tail->tokens.size(), 44u);
}

TEST_F(ChunkerTest, GapClosesTheOpenChunkAndDropDiscardsIt) {
  Chunker chunker(128);
  Feed(chunker, {10});
  pos_ += 1000;  // turns the index never saw
  std::vector<Chunk> chunks = Feed(chunker, {10});
  ASSERT_EQ(chunks.size(), 1u);
  EXPECT_EQ(chunks[0].tokens.size(), 10u);
  chunker.DropBefore(1015);
  EXPECT_EQ(chunker.open_tokens(), 0);
  EXPECT_EQ(chunker.next_pos(), 1020);
}

TEST_F(ChunkerTest, RandomTurnsAreCoveredExactlyOnceInOrder) {
  std::mt19937 rng(3);
  Chunker chunker(128);
  std::vector<int32_t> sizes;
  for (int i = 0; i < 500; ++i)
    sizes.push_back(1 + static_cast<int32_t>(rng() % (i % 7 == 0 ? 600 : 90)));
  std::vector<Chunk> chunks = Feed(chunker, sizes);
  if (std::optional<Chunk> last = chunker.Close()) chunks.push_back(std::move(*last));
  int64_t expected_pos = 0;
  for (const Chunk& chunk : chunks) {
    ASSERT_EQ(chunk.first_pos, expected_pos);
    ASSERT_LE(chunk.tokens.size(), 128u);
    ASSERT_LE(chunk.first_turn, chunk.last_turn);
    for (size_t i = 0; i < chunk.tokens.size(); ++i) {
      ASSERT_EQ(chunk.tokens[i], static_cast<int32_t>(expected_pos + static_cast<int64_t>(i)));
    }
    expected_pos = chunk.end_pos();
  }
  EXPECT_EQ(expected_pos, pos_);
  // Small chunks only where a turn boundary made them: at most a few below half the target.
  size_t small = 0;
  for (const Chunk& chunk : chunks) small += chunk.tokens.size() < 64 ? 1 : 0;
  EXPECT_LT(small, chunks.size() / 4);
}

}  // namespace
}  // namespace kvault::memory
