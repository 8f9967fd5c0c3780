#include "kvault/memory/token_store.h"

#include <deque>
#include <random>

#include <gtest/gtest.h>

#include "kvault/base/hash.h"

namespace kvault::memory {
namespace {

std::vector<int32_t> Range(int32_t first, int32_t n) {
  std::vector<int32_t> tokens(static_cast<size_t>(n));
  for (int32_t i = 0; i < n; ++i) tokens[static_cast<size_t>(i)] = first + i;
  return tokens;
}

std::vector<uint8_t> Encode(const TokenStore& store) {
  std::vector<uint8_t> bytes;
  VectorSink sink(&bytes);
  store.Serialize(&sink);
  return bytes;
}

Result<TokenStore> Decode(std::span<const uint8_t> bytes) {
  SpanSource source(bytes);
  return TokenStore::Parse(&source);
}

// What the store must equal: every turn ever appended, with a plain vector of tokens each.
struct Reference {
  struct Entry {
    Role role;
    std::vector<int32_t> tokens;
  };
  std::deque<Entry> retained;
  int64_t dropped_turns = 0;
  int64_t dropped_tokens = 0;
  int64_t capacity;

  void Append(Role role, std::vector<int32_t> tokens) {
    int64_t total = static_cast<int64_t>(tokens.size());
    for (const Entry& e : retained) total += static_cast<int64_t>(e.tokens.size());
    while (total > capacity) {
      total -= static_cast<int64_t>(retained.front().tokens.size());
      dropped_tokens += static_cast<int64_t>(retained.front().tokens.size());
      ++dropped_turns;
      retained.pop_front();
    }
    retained.push_back({role, std::move(tokens)});
  }
};

void ExpectEqual(const TokenStore& store, const Reference& ref) {
  ASSERT_EQ(store.turns().size(), ref.retained.size());
  EXPECT_EQ(store.n_dropped_turns(), ref.dropped_turns);
  EXPECT_EQ(store.n_dropped_tokens(), ref.dropped_tokens);
  int64_t pos = ref.dropped_tokens;
  std::vector<int32_t> all;
  for (size_t i = 0; i < ref.retained.size(); ++i) {
    const Turn& turn = store.turns()[i];
    EXPECT_EQ(turn.number, ref.dropped_turns + static_cast<int64_t>(i));
    EXPECT_EQ(turn.first_pos, pos);
    EXPECT_EQ(turn.role, ref.retained[i].role);
    ASSERT_EQ(store.TurnTokens(turn), ref.retained[i].tokens) << "turn " << turn.number;
    pos += turn.n_tokens;
    all.insert(all.end(), ref.retained[i].tokens.begin(), ref.retained[i].tokens.end());
  }
  EXPECT_EQ(store.end_pos(), pos);
  EXPECT_EQ(store.Tokens(store.begin_pos(), store.n_tokens()).value(), all);
}

TEST(TokenStoreTest, RoleNamesRoundTrip) {
  for (Role role : {Role::kSystem, Role::kUser, Role::kAssistant, Role::kTool}) {
    EXPECT_EQ(RoleFromName(RoleName(role)).value(), role);
  }
  EXPECT_EQ(RoleFromName("developer").status().code(), StatusCode::kInvalidArgument);
}

TEST(TokenStoreTest, AppendAssignsPositionsAndTurnNumbers) {
  TokenStore store(1000);
  const Turn first = store.Append(Role::kSystem, Range(1, 5), 42).value();
  const Turn second = store.Append(Role::kUser, Range(100, 3)).value();
  EXPECT_EQ(first.number, 0);
  EXPECT_EQ(first.first_pos, 0);
  EXPECT_EQ(first.text_hash, 42u);
  EXPECT_EQ(second.number, 1);
  EXPECT_EQ(second.first_pos, 5);
  EXPECT_EQ(store.n_tokens(), 8);
  EXPECT_EQ(store.Tokens(3, 4).value(), (std::vector<int32_t>{4, 5, 100, 101}));
  EXPECT_EQ(store.TurnIndexAt(4), 0u);
  EXPECT_EQ(store.TurnIndexAt(5), 1u);
  EXPECT_EQ(store.FindTurn(1)->first_pos, 5);
  EXPECT_EQ(store.FindTurn(2), nullptr);
  EXPECT_FALSE(store.Tokens(6, 3).ok());
}

TEST(TokenStoreTest, RejectsBadTurnsWithoutChangingAnything) {
  TokenStore store(10);
  ASSERT_TRUE(store.Append(Role::kUser, Range(1, 4)).ok());
  EXPECT_EQ(store.Append(Role::kUser, {}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(store.Append(Role::kUser, Range(1, 11)).status().code(), StatusCode::kInvalidArgument);
  const std::vector<int32_t> too_large = {1, TokenStore::kMaxTokenId + 1};
  EXPECT_EQ(store.Append(Role::kUser, too_large).status().code(), StatusCode::kInvalidArgument);
  const std::vector<int32_t> negative = {-1};
  EXPECT_EQ(store.Append(Role::kUser, negative).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(store.n_tokens(), 4);
  EXPECT_EQ(store.turns().size(), 1u);
  const std::vector<int32_t> largest = {TokenStore::kMaxTokenId};
  ASSERT_TRUE(store.Append(Role::kUser, largest).ok());
  EXPECT_EQ(store.Tokens(4, 1).value(), largest);
}

TEST(TokenStoreTest, TruncatedTurnsGoAndTheNextAppendTakesTheirPlace) {
  TokenStore store(1 << 20);
  std::vector<int32_t> all;
  for (int t = 0; t < 6; ++t) {  // turns long enough to span token blocks
    std::vector<int32_t> tokens(TokenStore::kBlockTokens / 2 + t, 100 + t);
    all.insert(all.end(), tokens.begin(), tokens.end());
    ASSERT_TRUE(store.Append(Role::kUser, tokens, 7 + t).ok());
  }
  const Turn third = store.turns()[3];
  ASSERT_TRUE(store.TruncateTurns(3).ok());
  EXPECT_EQ(store.turns().size(), 3u);
  EXPECT_EQ(store.end_pos(), third.first_pos);
  EXPECT_EQ(store.Tokens(0, third.first_pos).value(),
            std::vector<int32_t>(all.begin(), all.begin() + third.first_pos));
  const std::vector<int32_t> again = {5, 6, 7};
  Result<Turn> appended = store.Append(Role::kAssistant, again, 99);
  ASSERT_TRUE(appended.ok());
  EXPECT_EQ(appended->number, 3);
  EXPECT_EQ(appended->first_pos, third.first_pos);
  EXPECT_EQ(store.TurnTokens(store.turns()[3]), again);
  EXPECT_TRUE(store.TruncateTurns(10).ok());  // nothing that far: unchanged
  EXPECT_EQ(store.turns().size(), 4u);
  ASSERT_TRUE(store.TruncateTurns(0).ok());
  EXPECT_EQ(store.n_tokens(), 0);
  EXPECT_TRUE(store.Append(Role::kUser, again).ok());
  EXPECT_EQ(store.TurnTokens(store.turns()[0]), again);
}

TEST(TokenStoreTest, DroppedTurnsCannotBeKeptByATruncation) {
  TokenStore store(10);
  const std::vector<int32_t> four = {1, 2, 3, 4};
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(store.Append(Role::kUser, four).ok());
  ASSERT_EQ(store.n_dropped_turns(), 2);
  EXPECT_EQ(store.TruncateTurns(1).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(store.turns().size(), 2u);
  EXPECT_TRUE(store.TruncateTurns(2).ok());
  EXPECT_EQ(store.n_tokens(), 0);
}

TEST(TokenStoreTest, OldestWholeTurnsDropAtCapacityAndNumbersAreNotReused) {
  TokenStore store(10);
  ASSERT_TRUE(store.Append(Role::kSystem, Range(1, 4)).ok());
  ASSERT_TRUE(store.Append(Role::kUser, Range(10, 4)).ok());
  EXPECT_EQ(store.BeginPosAfterAppend(2), 0);
  EXPECT_EQ(store.BeginPosAfterAppend(3), 4);
  EXPECT_EQ(store.BeginPosAfterAppend(7), 8);
  const Turn third = store.Append(Role::kAssistant, Range(20, 3)).value();
  EXPECT_EQ(third.number, 2);
  EXPECT_EQ(store.n_dropped_turns(), 1);
  EXPECT_EQ(store.n_dropped_tokens(), 4);
  EXPECT_EQ(store.begin_pos(), 4);
  EXPECT_EQ(store.turns().front().number, 1);
  EXPECT_EQ(store.FindTurn(0), nullptr);
  EXPECT_EQ(store.Tokens(4, 7).value(), (std::vector<int32_t>{10, 11, 12, 13, 20, 21, 22}));
  // A turn as large as the capacity drops everything else.
  const Turn big = store.Append(Role::kUser, Range(50, 10)).value();
  EXPECT_EQ(big.number, 3);
  EXPECT_EQ(big.first_pos, 11);
  EXPECT_EQ(store.turns().size(), 1u);
  EXPECT_EQ(store.n_dropped_turns(), 3);
}

TEST(TokenStoreTest, RandomAppendsMatchAPlainVectorAcrossBlocksAndReload) {
  std::mt19937 rng(7);
  const int64_t capacity = 3 * TokenStore::kBlockTokens + 123;
  TokenStore store(capacity);
  Reference ref{.capacity = capacity};
  for (int step = 0; step < 400; ++step) {
    const bool long_turn = rng() % 10 == 0;
    const int32_t n = 1 + static_cast<int32_t>(rng() % (long_turn ? 20000 : 300));
    std::vector<int32_t> tokens(static_cast<size_t>(n));
    for (int32_t& t : tokens) t = static_cast<int32_t>(rng() % (TokenStore::kMaxTokenId + 1));
    const auto role = static_cast<Role>(rng() % 4);
    ASSERT_TRUE(store.Append(role, tokens).ok());
    ref.Append(role, std::move(tokens));
    if (step % 50 == 0) ExpectEqual(store, ref);
    if (step % 97 == 0) store = Decode(Encode(store)).value();
  }
  ExpectEqual(store, ref);
  ExpectEqual(Decode(Encode(store)).value(), ref);
  EXPECT_GT(ref.dropped_turns, 10);
}

TEST(TokenStoreTest, LongHistoryCostsUnderFourBytesPerToken) {
  TokenStore store(int64_t{1} << 30);
  const std::vector<int32_t> turn = Range(150000, 100);
  for (int i = 0; i < 20000; ++i) ASSERT_TRUE(store.Append(Role::kUser, turn).ok());
  const double bytes_per_token =
      static_cast<double>(store.MemoryBytes()) / static_cast<double>(store.n_tokens());
  EXPECT_LE(bytes_per_token, 4.0);
  EXPECT_GE(bytes_per_token, 3.0);
}

TEST(TokenStoreTest, SerializationRoundTripKeepsEverything) {
  TokenStore store(20);
  ASSERT_TRUE(store.Append(Role::kSystem, Range(1, 8), 7).ok());
  ASSERT_TRUE(store.Append(Role::kUser, Range(70000, 8), 8).ok());
  ASSERT_TRUE(store.Append(Role::kTool, Range(TokenStore::kMaxTokenId - 5, 6), 9).ok());
  const TokenStore copy = Decode(Encode(store)).value();
  EXPECT_EQ(copy.capacity(), 20);
  EXPECT_EQ(copy.n_dropped_turns(), 1);
  EXPECT_EQ(copy.begin_pos(), 8);
  ASSERT_EQ(copy.turns().size(), 2u);
  EXPECT_EQ(copy.turns()[1].number, 2);
  EXPECT_EQ(copy.turns()[1].role, Role::kTool);
  EXPECT_EQ(copy.turns()[1].text_hash, 9u);
  // A digest keeps its low 56 bits, and is compared through them.
  TokenStore digests(100);
  const uint64_t digest = 0xF123456789ABCDEFull;
  ASSERT_TRUE(digests.Append(Role::kUser, Range(1, 4), digest).ok());
  EXPECT_EQ(digests.turns()[0].text_hash, digest & TokenStore::kDigestMask);
  const TurnDigest resent[] = {{Role::kUser, digest}};
  EXPECT_EQ(digests.CountMatchingDigests(resent), 1u);
  EXPECT_EQ(Decode(Encode(digests)).value().CountMatchingDigests(resent), 1u);
  EXPECT_EQ(copy.Tokens(8, 14).value(), store.Tokens(8, 14).value());
  EXPECT_EQ(Encode(copy), Encode(store));
}

TEST(TokenStoreTest, TimesRoundTripAndFindTheTurnsSaidInAPeriod) {
  TokenStore store(1000);
  ASSERT_TRUE(store.Append(Role::kUser, Range(1, 10), 1, 1000).ok());
  ASSERT_TRUE(store.Append(Role::kAssistant, Range(1, 10), 2, 2000).ok());
  ASSERT_TRUE(store.Append(Role::kUser, Range(1, 10), 3, 3000).ok());
  ASSERT_TRUE(store.Append(Role::kUser, Range(1, 10), 4, -5).ok());  // clamped: unknown
  EXPECT_EQ(store.turns()[3].time, 0u);
  const TokenStore copy = Decode(Encode(store)).value();
  ASSERT_EQ(copy.turns().size(), 4u);
  EXPECT_EQ(copy.turns()[1].time, 2000u);
  EXPECT_EQ(copy.PositionsSaidIn(1500, 3001), (std::pair<int64_t, int64_t>{10, 30}));
  EXPECT_EQ(copy.PositionsSaidIn(0, 1001), (std::pair<int64_t, int64_t>{0, 10}));
  EXPECT_EQ(copy.PositionsSaidIn(3001, 9999), (std::pair<int64_t, int64_t>{0, 0}));
  // Times out of order: the range spans from the first to the last turn said in it.
  TokenStore unordered(1000);
  for (const int64_t time : {5000, 1000, 5000, 2000}) {
    ASSERT_TRUE(unordered.Append(Role::kUser, Range(1, 10), 0, time).ok());
  }
  EXPECT_EQ(unordered.PositionsSaidIn(4000, 6000), (std::pair<int64_t, int64_t>{0, 30}));
  EXPECT_EQ(unordered.PositionsSaidIn(1500, 2500), (std::pair<int64_t, int64_t>{30, 40}));
}

TEST(TokenStoreTest, VersionOneEncodingsReadWithUnknownTimes) {
  TokenStore store(20);
  ASSERT_TRUE(store.Append(Role::kSystem, Range(1, 8), 7).ok());
  ASSERT_TRUE(store.Append(Role::kUser, Range(70000, 8), 8).ok());
  // Version 2 of this store: 12 header bytes, then per turn role, size, hash and a time of
  // 0 (one byte each). Version 1 is the same without the times.
  std::vector<uint8_t> bytes = Encode(store);
  std::vector<uint8_t> v1(bytes.begin(), bytes.begin() + 12);
  v1[4] = 1;
  for (size_t turn = 0; turn < 2; ++turn) {
    const auto at = bytes.begin() + 12 + static_cast<std::ptrdiff_t>(turn * 11);
    ASSERT_EQ(at[10], 0);  // the time
    v1.insert(v1.end(), at, at + 10);
  }
  v1.insert(v1.end(), bytes.begin() + 34, bytes.end() - 8);
  Hasher hasher;
  hasher.Update(v1);
  const uint64_t digest = hasher.Digest64();
  for (int i = 0; i < 8; ++i) v1.push_back(static_cast<uint8_t>(digest >> (8 * i)));
  const TokenStore copy = Decode(v1).value();
  EXPECT_EQ(Encode(copy), bytes);
}

TEST(TokenStoreTest, EveryTruncationAndEveryFlippedByteIsCorruption) {
  TokenStore store(100);
  ASSERT_TRUE(store.Append(Role::kSystem, Range(1, 5), 1).ok());
  ASSERT_TRUE(store.Append(Role::kUser, Range(300, 20), 2).ok());
  const std::vector<uint8_t> bytes = Encode(store);
  for (size_t n = 0; n < bytes.size(); ++n) {
    EXPECT_EQ(Decode(std::span(bytes).first(n)).status().code(), StatusCode::kCorruption) << n;
  }
  for (size_t i = 0; i < bytes.size(); ++i) {
    for (uint8_t flip : {0x01, 0x80, 0xff}) {
      std::vector<uint8_t> bad = bytes;
      bad[i] ^= flip;
      EXPECT_EQ(Decode(bad).status().code(), StatusCode::kCorruption) << i;
    }
  }
  // A huge announced turn count or size is refused before anything is allocated.
  std::vector<uint8_t> huge = {0x4b, 0x56, 0x54, 0x53, 1, 0, 0, 0, 100, 0, 0};
  for (int i = 0; i < 9; ++i) huge.push_back(0xff);
  huge.push_back(0x7f);
  EXPECT_EQ(Decode(huge).status().code(), StatusCode::kCorruption);
}

TEST(TokenStoreTest, ResentHistoryMatchesUpToTheFirstChangedTurn) {
  TokenStore store(12);
  const std::vector<int32_t> a = Range(1, 5), b = Range(10, 5), c = Range(20, 5);
  ASSERT_TRUE(store.Append(Role::kSystem, a, 11).ok());
  ASSERT_TRUE(store.Append(Role::kUser, b, 22).ok());
  std::vector<TurnContent> history = {{Role::kSystem, a}, {Role::kUser, b}, {Role::kUser, c}};
  EXPECT_EQ(store.CountMatchingTurns(history), 2u);
  history[1].role = Role::kAssistant;
  EXPECT_EQ(store.CountMatchingTurns(history), 1u);
  history[1] = {Role::kUser, Range(10, 4)};
  EXPECT_EQ(store.CountMatchingTurns(history), 1u);
  EXPECT_EQ(
      store.CountMatchingDigests(std::vector<TurnDigest>{{Role::kSystem, 11}, {Role::kUser, 22}}),
      2u);
  EXPECT_EQ(store.CountMatchingDigests(std::vector<TurnDigest>{{Role::kSystem, 12}}), 0u);

  // Turn 0 drops: its entry is no longer compared, the retained ones still are.
  ASSERT_TRUE(store.Append(Role::kAssistant, c, 33).ok());
  ASSERT_EQ(store.n_dropped_turns(), 1);
  history = {{Role::kSystem, c}, {Role::kUser, b}, {Role::kAssistant, c}};
  EXPECT_EQ(store.CountMatchingTurns(history), 3u);
  history[2] = {Role::kAssistant, b};
  EXPECT_EQ(store.CountMatchingTurns(history), 2u);
}

}  // namespace
}  // namespace kvault::memory
