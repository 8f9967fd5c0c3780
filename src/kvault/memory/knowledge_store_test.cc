#include "kvault/memory/knowledge_store.h"

#include <filesystem>

#include <gtest/gtest.h>
#include <unistd.h>

namespace kvault::memory {
namespace {

TEST(KnowledgeStoreTest, PutSearchAndCount) {
  std::unique_ptr<KnowledgeStore> store = KnowledgeStore::Open(":memory:").value();
  ASSERT_TRUE(store->Put("travel", "passport", "expires in March 2027").ok());
  ASSERT_TRUE(store->Put("travel", "airline", "prefers window seats").ok());
  ASSERT_TRUE(store->Put("health", "allergy", "penicillin").ok());
  ASSERT_TRUE(store->Put("travel", "airline", "prefers aisle seats").ok());  // replaces

  std::vector<TopicSummary> topics = store->Topics().value();
  ASSERT_EQ(topics.size(), 2u);
  EXPECT_EQ(topics[0].name, "health");
  EXPECT_EQ(topics[1].n_facts, 2);

  std::vector<Fact> found = store->Search("when does my passport expire?", 5).value();
  ASSERT_FALSE(found.empty());
  EXPECT_EQ(found[0].key, "passport");
  EXPECT_GT(found[0].score, 0);
  std::vector<Fact> seats = store->Search("seats", 5).value();
  ASSERT_EQ(seats.size(), 1u);
  EXPECT_EQ(seats[0].value, "prefers aisle seats");  // the update reached the index
  EXPECT_TRUE(store->Search("window", 5).value().empty());

  KnowledgeStats stats = store->Stats().value();
  EXPECT_EQ(stats.topics, 2);
  EXPECT_EQ(stats.facts, 3);
}

TEST(KnowledgeStoreTest, FtsSyntaxInQueriesIsInert) {
  std::unique_ptr<KnowledgeStore> store = KnowledgeStore::Open(":memory:").value();
  ASSERT_TRUE(store->Put("t", "k", "NEAR AND OR").ok());
  for (const char* hostile : {"\"", "AND", "a OR", "NEAR(", "*", "k:v", "(((", "-x"}) {
    EXPECT_TRUE(store->Search(hostile, 5).ok()) << hostile;
  }
  EXPECT_TRUE(store->Search("   ", 5).value().empty());
  EXPECT_EQ(FtsQuery("hello, world"), "\"hello\" OR \"world\"");
}

TEST(KnowledgeStoreTest, FactsSurviveReopening) {
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("kvault_knowledge_" + std::to_string(::getpid()) + ".db"))
                               .string();
  {
    std::unique_ptr<KnowledgeStore> store = KnowledgeStore::Open(path).value();
    ASSERT_TRUE(store->Put("a", "b", "c").ok());
  }
  std::unique_ptr<KnowledgeStore> reopened = KnowledgeStore::Open(path).value();
  EXPECT_EQ(reopened->TopicFacts("a").value().size(), 1u);
  EXPECT_FALSE(reopened->Put("", "b", "c").ok());
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path + suffix);
}

}  // namespace
}  // namespace kvault::memory
