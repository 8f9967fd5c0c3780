#include "kvault/kv/radix_tree.h"

#include <map>
#include <random>
#include <set>

#include <gtest/gtest.h>

#include "kvault/kv/eviction_policy.h"

namespace kvault::kv {
namespace {

constexpr uint32_t kB = 4;

class RadixTreeTest : public ::testing::Test {
 protected:
  RadixTreeTest() : tree_(Space()) {}
  static BlockNamespace Space() {
    BlockNamespace space;
    space.block_size = kB;
    space.model_fingerprint = Hash128{1, 2};
    return space;
  }
  // Inserts every full block of `tokens`; returns their names.
  std::vector<BlockName> InsertAll(const std::vector<llama_token>& tokens, uint8_t tiers) {
    std::vector<BlockName> names = ComputeBlockNames(tree_.space(), tokens);
    BlockName parent{};
    for (size_t i = 0; i < names.size(); ++i) {
      const std::span<const llama_token> block(tokens.data() + i * kB, kB);
      EXPECT_TRUE(tree_.Insert(names[i], parent, block, tiers, 100).ok());
      parent = names[i];
    }
    return names;
  }
  size_t Matched(const std::vector<llama_token>& tokens) const {
    return tree_.Match(tokens).n_tokens;
  }

  RadixTree tree_;
};

TEST_F(RadixTreeTest, MatchFindsTheLongestCachedPrefixToTheToken) {
  InsertAll({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, kTierRam);
  EXPECT_EQ(Matched({1, 2, 3, 4, 5, 6, 7, 8, 99, 99, 99, 99}), 8u);
  EXPECT_EQ(Matched({1, 2, 3, 4, 5, 6, 7}), 7u);      // ends inside the second block
  EXPECT_EQ(Matched({1, 2, 3, 4, 5, 6, 99, 8}), 6u);  // diverges inside it
  EXPECT_EQ(Matched({9, 2, 3, 4}), 0u);
  EXPECT_EQ(Matched({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13}), 12u);
  const PrefixMatch match = tree_.Match(std::vector<llama_token>{1, 2, 3, 4, 5, 6, 99});
  ASSERT_EQ(match.blocks.size(), 2u);
  EXPECT_EQ(match.blocks[0].n_tokens, kB);
  EXPECT_EQ(match.blocks[1].n_tokens, 2u);
}

TEST_F(RadixTreeTest, PartitionsNeverMatchEachOthersBlocks) {
  const BlockName k1 = PartitionRoot("key-1");
  const BlockName k2 = PartitionRoot("key-2");
  ASSERT_TRUE(IsPartitionRoot(k1));
  ASSERT_FALSE(k1 == k2);
  ASSERT_TRUE(PartitionRoot("") == BlockName{});
  const std::vector<llama_token> tokens = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  const std::vector<BlockName> names = ComputeBlockNames(tree_.space(), tokens, k1);
  ASSERT_EQ(names.size(), 2u);
  EXPECT_FALSE(names[0] == ComputeBlockNames(tree_.space(), tokens)[0]);
  ASSERT_TRUE(tree_.Insert(names[0], k1, std::span(tokens).first(kB), kTierRam, 10).ok());
  ASSERT_TRUE(
      tree_.Insert(names[1], names[0], std::span(tokens).subspan(kB, kB), kTierRam, 10).ok());
  // A partial first block of k1, which a token-level match of another partition must not see.
  const BlockName tail = ComputeBlockName(k1, tree_.space(), std::span(tokens).first(2));
  ASSERT_TRUE(tree_.Insert(tail, k1, std::span(tokens).first(2), kTierRam, 10).ok());
  EXPECT_EQ(tree_.Match(tokens, k1).n_tokens, 8u);
  EXPECT_EQ(tree_.Match(tokens, k2).n_tokens, 0u);
  EXPECT_EQ(tree_.Match(tokens).n_tokens, 0u);
  EXPECT_TRUE(tree_.PartitionOf(names[1]) == k1);
  EXPECT_EQ(tree_.PrefixTokens(names[1]).size(), 8u);
  tree_.Remove(names[0]);
  EXPECT_EQ(tree_.Match(tokens, k1).n_tokens, 2u);  // the partial root remains
}

TEST_F(RadixTreeTest, PartialTailsAreLeavesMatchedByTokens) {
  const std::vector<BlockName> full = InsertAll({1, 2, 3, 4}, kTierRam);
  const std::vector<llama_token> tail = {5, 6};
  const BlockName tail_name = ComputeBlockName(full[0], tree_.space(), tail);
  ASSERT_TRUE(tree_.Insert(tail_name, full[0], tail, kTierRam, 10).ok());
  EXPECT_EQ(Matched({1, 2, 3, 4, 5, 6, 7}), 6u);
  EXPECT_EQ(Matched({1, 2, 3, 4, 5, 9}), 5u);
  // A partial block ends a path: nothing hangs below it.
  const std::vector<llama_token> next = {7, 8, 9, 10};
  EXPECT_FALSE(
      tree_.Insert(ComputeBlockName(tail_name, tree_.space(), next), tail_name, next, kTierRam, 1)
          .ok());
  // A partial first block works too.
  const std::vector<llama_token> short_prompt = {42, 43};
  ASSERT_TRUE(
      tree_.Insert(ComputeBlockName({}, tree_.space(), short_prompt), {}, short_prompt, kTierRam, 1)
          .ok());
  EXPECT_EQ(Matched({42, 43, 44}), 2u);
}

TEST_F(RadixTreeTest, SharedPrefixesShareNodes) {
  InsertAll({1, 2, 3, 4, 5, 6, 7, 8}, kTierRam);
  InsertAll({1, 2, 3, 4, 9, 9, 9, 9}, kTierRam);
  EXPECT_EQ(tree_.size(), 3u);
  const BlockName first = ComputeBlockNames(tree_.space(), std::vector<llama_token>{1, 2, 3, 4})[0];
  EXPECT_EQ(tree_.Find(first)->children.size(), 2u);
  EXPECT_EQ(tree_.Find(first)->depth, 1u);
}

TEST_F(RadixTreeTest, InsertRejectsOrphansAndMismatchedNames) {
  const std::vector<llama_token> tokens = {1, 2, 3, 4};
  const BlockName orphan_parent{77, 77};
  const BlockName name = ComputeBlockName(orphan_parent, tree_.space(), tokens);
  EXPECT_FALSE(tree_.Insert(name, orphan_parent, tokens, kTierRam, 1).ok());
  EXPECT_FALSE(tree_.Insert(BlockName{5, 5}, {}, tokens, kTierRam, 1).ok());
  EXPECT_FALSE(tree_.Insert(name, {}, std::vector<llama_token>{1, 2}, kTierRam, 1).ok());
  EXPECT_FALSE(tree_.Insert(name, {}, std::vector<llama_token>{1, 2, 3, 4, 5}, kTierRam, 1).ok());
}

TEST_F(RadixTreeTest, RemovingAMiddleBlockRemovesItsSubtree) {
  std::vector<BlockName> names = InsertAll({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, kTierRam);
  std::vector<BlockName> removed = tree_.Remove(names[1]);
  EXPECT_EQ(removed.size(), 2u);
  EXPECT_EQ(tree_.size(), 1u);
  EXPECT_EQ(Matched({1, 2, 3, 4, 5, 6, 7, 8}), 4u);
}

TEST_F(RadixTreeTest, TiersComeAndGo) {
  std::vector<BlockName> names = InsertAll({1, 2, 3, 4}, kTierRam | kTierDisk);
  EXPECT_TRUE(tree_.RemoveTiers(names[0], kTierRam).empty());
  EXPECT_EQ(tree_.Find(names[0])->tiers, kTierDisk);
  EXPECT_EQ(tree_.RemoveTiers(names[0], kTierDisk).size(), 1u);
  EXPECT_EQ(tree_.Find(names[0]), nullptr);
}

TEST_F(RadixTreeTest, EvictableBlocksHaveNoChildInTheTierOrFaster) {
  std::vector<BlockName> a = InsertAll({1, 2, 3, 4, 5, 6, 7, 8}, kTierRam | kTierDisk);
  std::set<BlockName, decltype([](const BlockName& x, const BlockName& y) {
             return x.low < y.low || (x.low == y.low && x.high < y.high);
           })>
      ram;
  for (const RadixNode* node : tree_.EvictableIn(kTierRam, 0)) ram.insert(node->name);
  EXPECT_EQ(ram.size(), 1u);
  EXPECT_TRUE(ram.count(a[1]));  // only the leaf
  // On disk the parent is not evictable while its child is in RAM (a faster tier).
  tree_.RemoveTiers(a[1], kTierDisk);
  std::vector<const RadixNode*> disk = tree_.EvictableIn(kTierDisk, kTierRam);
  EXPECT_TRUE(disk.empty());
  tree_.Pin(a[1], 1);
  EXPECT_TRUE(tree_.EvictableIn(kTierRam, 0).empty());  // pinned leaf
}

TEST_F(RadixTreeTest, TouchCountsHitsAndDecaysFrequency) {
  std::vector<BlockName> a = InsertAll({1, 2, 3, 4}, kTierRam);
  RadixTree slow(Space(), /*half_life_s=*/10);
  ASSERT_TRUE(slow.Insert(a[0], {}, std::vector<llama_token>{1, 2, 3, 4}, kTierRam, 1).ok());
  slow.Touch(a[0], 0);
  slow.Touch(a[0], 0);
  EXPECT_DOUBLE_EQ(slow.Find(a[0])->frequency, 2.0);
  slow.Touch(a[0], 10);  // one half-life later: 2 -> 1, plus this hit
  EXPECT_NEAR(slow.Find(a[0])->frequency, 2.0, 1e-9);
  EXPECT_EQ(slow.Find(a[0])->hits, 3u);
}

// Random inserts (full blocks and partial tails), removals and lookups against a reference:
// the longest common prefix of the prompt with any sequence still cached.
TEST_F(RadixTreeTest, RandomizedAgainstAReferenceModel) {
  std::mt19937 rng(42);
  std::set<std::vector<llama_token>> reference;  // cached prefixes, each ending at a node
  auto random_tokens = [&](size_t n) {
    std::vector<llama_token> tokens(n);
    for (llama_token& t : tokens) t = static_cast<llama_token>(rng() % 3);  // much sharing
    return tokens;
  };
  auto common = [](const std::vector<llama_token>& a, const std::vector<llama_token>& b) {
    size_t n = 0;
    while (n < a.size() && n < b.size() && a[n] == b[n]) ++n;
    return n;
  };
  auto reference_match = [&](const std::vector<llama_token>& tokens) {
    size_t best = 0;
    for (const std::vector<llama_token>& cached : reference) {
      best = std::max(best, common(cached, tokens));
    }
    return best;
  };
  for (int step = 0; step < 3000; ++step) {
    const int op = static_cast<int>(rng() % 10);
    std::vector<llama_token> tokens = random_tokens(1 + rng() % (4 * kB));
    if (op < 5) {
      std::vector<BlockName> names = InsertAll(tokens, kTierRam);
      for (size_t n = kB; n <= tokens.size(); n += kB) {
        reference.insert(std::vector<llama_token>(tokens.begin(), tokens.begin() + n));
      }
      const size_t tail = tokens.size() % kB;
      if (tail > 0) {
        const BlockName parent = names.empty() ? BlockName{} : names.back();
        const std::span<const llama_token> rest(tokens.data() + tokens.size() - tail, tail);
        ASSERT_TRUE(
            tree_.Insert(ComputeBlockName(parent, tree_.space(), rest), parent, rest, kTierRam, 1)
                .ok());
        reference.insert(tokens);
      }
    } else if (op < 7) {
      const PrefixMatch match = tree_.Match(tokens);
      if (match.blocks.empty()) continue;
      const size_t victim = rng() % match.blocks.size();
      const RadixNode* node = tree_.Find(match.blocks[victim].name);
      ASSERT_NE(node, nullptr);
      const std::vector<llama_token> prefix = tree_.PrefixTokens(node->name);
      tree_.Remove(node->name);
      for (auto it = reference.begin(); it != reference.end();) {
        // A full block takes its subtree along; a partial one is a leaf.
        const bool below = prefix.size() % kB == 0
                               ? it->size() >= prefix.size() &&
                                     std::equal(prefix.begin(), prefix.end(), it->begin())
                               : *it == prefix;
        it = below ? reference.erase(it) : std::next(it);
      }
    } else {
      ASSERT_EQ(Matched(tokens), reference_match(tokens)) << "step " << step;
    }
    ASSERT_EQ(tree_.size(), reference.size()) << "step " << step;
  }
}

TEST(EvictionPolicyTest, EachPolicyRanksByItsOwnMeasure) {
  NodeStats old_popular{.depth = 1,
                        .hits = 50,
                        .last_use_s = 10,
                        .frequency = 50,
                        .now_s = 100,
                        .recompute_s = 1.0,
                        .restore_s = 0.01};
  NodeStats recent_rare{.depth = 1,
                        .hits = 1,
                        .last_use_s = 90,
                        .frequency = 1,
                        .now_s = 100,
                        .recompute_s = 1.0,
                        .restore_s = 0.01};
  std::unique_ptr<EvictionPolicy> lru = NewLruPolicy();
  std::unique_ptr<EvictionPolicy> lfu = NewLfuPolicy();
  EXPECT_LT(lru->Score(old_popular), lru->Score(recent_rare));
  EXPECT_GT(lfu->Score(old_popular), lfu->Score(recent_rare));

  // Cost-aware: a deep block (expensive to recompute) outlives a shallow one of equal use.
  std::unique_ptr<EvictionPolicy> cost = NewCostPolicy();
  NodeStats shallow{.depth = 1,
                    .hits = 3,
                    .last_use_s = 50,
                    .frequency = 3,
                    .now_s = 100,
                    .recompute_s = 0.5,
                    .restore_s = 0.05};
  NodeStats deep = shallow;
  deep.depth = 20;
  deep.recompute_s = 10;
  EXPECT_LT(cost->Score(shallow), cost->Score(deep));
  // A block that restores as slowly as it recomputes is worth nothing to keep.
  NodeStats pointless = shallow;
  pointless.restore_s = 1.0;
  EXPECT_EQ(cost->Score(pointless), 0);
  EXPECT_FALSE(NewEvictionPolicy("fifo").ok());
  EXPECT_EQ(NewEvictionPolicy("cost").value()->name(), "cost");
}

}  // namespace
}  // namespace kvault::kv
