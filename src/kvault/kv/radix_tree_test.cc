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
  RadixTree tree_;
};

TEST_F(RadixTreeTest, MatchFindsTheLongestCachedBlockPrefix) {
  InsertAll({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, kTierRam);
  EXPECT_EQ(tree_.Match(std::vector<llama_token>{1, 2, 3, 4, 5, 6, 7, 8, 99, 99, 99, 99}).size(),
            2u);
  EXPECT_EQ(tree_.Match(std::vector<llama_token>{1, 2, 3, 4, 5, 6, 7}).size(),
            1u);  // partial block
  EXPECT_EQ(tree_.Match(std::vector<llama_token>{9, 2, 3, 4}).size(), 0u);
  EXPECT_EQ(tree_.Match(std::vector<llama_token>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13}).size(),
            3u);
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
}

TEST_F(RadixTreeTest, RemovingAMiddleBlockRemovesItsSubtree) {
  std::vector<BlockName> names = InsertAll({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, kTierRam);
  std::vector<BlockName> removed = tree_.Remove(names[1]);
  EXPECT_EQ(removed.size(), 2u);
  EXPECT_EQ(tree_.size(), 1u);
  EXPECT_EQ(tree_.Match(std::vector<llama_token>{1, 2, 3, 4, 5, 6, 7, 8}).size(), 1u);
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

// Random inserts, removals and lookups against a plain map of cached prefixes.
TEST_F(RadixTreeTest, RandomizedAgainstAReferenceModel) {
  std::mt19937 rng(42);
  std::map<std::vector<llama_token>, bool> reference;  // cached block-aligned prefixes
  auto random_tokens = [&](size_t n_blocks) {
    std::vector<llama_token> tokens(n_blocks * kB);
    for (llama_token& t : tokens) t = static_cast<llama_token>(rng() % 3);  // much sharing
    return tokens;
  };
  auto reference_match = [&](const std::vector<llama_token>& tokens) {
    size_t n = 0;
    while ((n + 1) * kB <= tokens.size() && reference.count(std::vector<llama_token>(
                                                tokens.begin(), tokens.begin() + (n + 1) * kB))) {
      ++n;
    }
    return n;
  };
  for (int step = 0; step < 3000; ++step) {
    const int op = static_cast<int>(rng() % 10);
    std::vector<llama_token> tokens = random_tokens(1 + rng() % 4);
    if (op < 5) {
      InsertAll(tokens, kTierRam);
      for (size_t n = kB; n <= tokens.size(); n += kB) {
        reference[std::vector<llama_token>(tokens.begin(), tokens.begin() + n)] = true;
      }
    } else if (op < 7) {
      const std::vector<BlockName> names = tree_.Match(tokens);
      if (names.empty()) continue;
      const size_t victim = rng() % names.size();
      tree_.Remove(names[victim]);
      const std::vector<llama_token> prefix(tokens.begin(), tokens.begin() + (victim + 1) * kB);
      for (auto it = reference.begin(); it != reference.end();) {
        const bool below = it->first.size() >= prefix.size() &&
                           std::equal(prefix.begin(), prefix.end(), it->first.begin());
        it = below ? reference.erase(it) : std::next(it);
      }
    } else {
      ASSERT_EQ(tree_.Match(tokens).size(), reference_match(tokens)) << "step " << step;
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
