#include "kvault/conversation/prompt_trie.h"

#include <numeric>

#include <gtest/gtest.h>

namespace kvault::conversation {
namespace {

std::vector<llama_token> Prompt(int shared, int own, int seed) {
  std::vector<llama_token> tokens(static_cast<size_t>(shared + own));
  std::iota(tokens.begin(), tokens.begin() + shared, 1000);
  std::iota(tokens.begin() + shared, tokens.end(), 5000 + 100 * seed);
  return tokens;
}

TEST(PromptTrieTest, CountsWhatEarlierPromptsSharedInWholeChunks) {
  PromptTrie trie;
  EXPECT_EQ(trie.Record("", Prompt(100, 20, 0)), 0);
  // 100 shared tokens: 6 whole chunks (96 tokens) were seen before.
  EXPECT_EQ(trie.Record("", Prompt(100, 20, 1)), 96);
  EXPECT_EQ(trie.Record("", Prompt(100, 20, 1)), 112);  // the same prompt: all 7 chunks
  EXPECT_EQ(trie.Record("", Prompt(10, 0, 0)), 0);      // shorter than a chunk
  const std::vector<HotPrefix> hot = trie.Hot("", 10);
  ASSERT_FALSE(hot.empty());
  // The repeated prompt's 7 chunks (count 2) outrank the shared 96-token start (count 3)?
  // 3 x 96 = 288 > 2 x 112 = 224: the shared start comes first.
  EXPECT_EQ(hot[0].depth, 96);
  EXPECT_EQ(hot[0].count, 3);
  EXPECT_EQ(hot[0].children, 2);
  EXPECT_EQ(hot[0].head.front(), 1000);
  EXPECT_EQ(hot[0].tail.front(), 1000 + 80);
  ASSERT_EQ(hot.size(), 2u);
  EXPECT_EQ(hot[1].depth, 112);
  EXPECT_EQ(hot[1].count, 2);
  // Another key's trie is its own.
  EXPECT_EQ(trie.Record("key-b", Prompt(100, 20, 1)), 0);
  EXPECT_EQ(trie.Hot("key-b", 10).size(), 0u);
}

TEST(PromptTrieTest, StaysBoundedAndKeepsTheHotPrefixes) {
  PromptTrie trie(/*max_nodes=*/64);
  trie.Record("", Prompt(64, 0, 0));
  trie.Record("", Prompt(64, 0, 0));  // 4 hot nodes
  for (int i = 0; i < 200; ++i) trie.Record("", Prompt(0, 32, i));
  EXPECT_LE(trie.nodes(), 64u);
  EXPECT_EQ(trie.Record("", Prompt(64, 0, 0)), 64);
}

}  // namespace
}  // namespace kvault::conversation
