#include "kvault/memory/knowledge_store.h"

#include <filesystem>

#include <gtest/gtest.h>
#include <unistd.h>

namespace kvault::memory {
namespace {

class KnowledgeStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { store_ = KnowledgeStore::Open(":memory:").value(); }

  // Stores one fact in `scope`.
  void Put(const std::string& scope, const std::string& topic, const std::string& key,
           const std::string& value) {
    ASSERT_TRUE(store_->Put(scope, {{topic, key, value}}).ok()) << topic << "/" << key;
  }
  std::vector<std::string> SearchKeys(const std::string& scope, const std::string& query) {
    std::vector<std::string> keys;
    const std::vector<Fact> facts = store_->Search(scope, query, 10).value();
    for (const Fact& fact : facts) keys.push_back(fact.key);
    return keys;
  }
  static std::string TempPath(const std::string& name) {
    return (std::filesystem::temp_directory_path() /
            ("kvault_knowledge_" + name + "_" + std::to_string(::getpid()) + ".db"))
        .string();
  }
  static void RemoveDb(const std::string& path) {
    for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path + suffix);
  }

  std::unique_ptr<KnowledgeStore> store_;
};

TEST_F(KnowledgeStoreTest, PutSearchAndCount) {
  Put("", "travel", "passport", "expires in March 2027");
  Put("", "travel", "airline", "prefers window seats");
  Put("", "health", "allergy", "penicillin");
  Put("", "travel", "airline", "prefers aisle seats");  // replaces

  std::vector<TopicSummary> topics = store_->Topics("").value();
  ASSERT_EQ(topics.size(), 2u);
  EXPECT_EQ(topics[0].name, "health");
  EXPECT_EQ(topics[1].n_facts, 2);

  std::vector<Fact> found = store_->Search("", "when does my passport expire?", 5).value();
  ASSERT_FALSE(found.empty());
  EXPECT_EQ(found[0].key, "passport");
  EXPECT_GT(found[0].score, 0);
  std::vector<Fact> seats = store_->Search("", "seats", 5).value();
  ASSERT_EQ(seats.size(), 1u);
  EXPECT_EQ(seats[0].value, "prefers aisle seats");  // the update reached the index
  EXPECT_TRUE(store_->Search("", "window", 5).value().empty());

  KnowledgeStats stats = store_->Stats("").value();
  EXPECT_EQ(stats.topics, 2);
  EXPECT_EQ(stats.facts, 3);
}

TEST_F(KnowledgeStoreTest, PutManyIsAllOrNothing) {
  ASSERT_TRUE(store_->Put("", {{"t", "a", "1"}, {"t", "b", "2"}, {"t", "a", "3"}}).ok());
  std::vector<Fact> facts = store_->TopicFacts("", "t").value();
  ASSERT_EQ(facts.size(), 2u);
  EXPECT_EQ(facts[0].value, "3");  // the later value of a repeated key wins
  EXPECT_FALSE(store_->Put("", {{"t", "c", "4"}, {"t", "", "5"}}).ok());
  EXPECT_FALSE(store_->Put("", {{"", "k", "v"}}).ok());
  EXPECT_FALSE(store_->Put("", {{"t", "k", ""}}).ok());
  EXPECT_EQ(store_->Stats("").value().facts, 2);  // "c" was not stored
  EXPECT_TRUE(store_->Put("", {}).ok());
}

TEST_F(KnowledgeStoreTest, ScopesNeverSeeEachOthersFacts) {
  Put("alice", "travel", "city", "Lisbon");
  Put("bob", "travel", "city", "Oslo");
  Put("bob", "pets", "dog", "Rex from Lisbon");
  Put("", "travel", "city", "Porto");

  EXPECT_EQ(store_->TopicFacts("alice", "travel").value()[0].value, "Lisbon");
  EXPECT_EQ(store_->TopicFacts("bob", "travel").value()[0].value, "Oslo");
  EXPECT_EQ(store_->TopicFacts("", "travel").value()[0].value, "Porto");
  EXPECT_TRUE(store_->TopicFacts("alice", "pets").value().empty());
  EXPECT_EQ(store_->Topics("alice").value().size(), 1u);
  EXPECT_EQ(store_->Topics("bob").value().size(), 2u);
  EXPECT_TRUE(store_->Topics("carol").value().empty());

  EXPECT_EQ(SearchKeys("alice", "Lisbon"), std::vector<std::string>{"city"});
  EXPECT_EQ(SearchKeys("bob", "Lisbon"), std::vector<std::string>{"dog"});
  EXPECT_TRUE(SearchKeys("", "Lisbon").empty());
  EXPECT_TRUE(SearchKeys("alice", "Oslo Rex Porto").empty());

  EXPECT_EQ(store_->Stats("bob").value().topics, 2);
  EXPECT_EQ(store_->Stats("bob").value().facts, 2);
  EXPECT_EQ(store_->Stats("carol").value().facts, 0);
  const KnowledgeStats total = store_->TotalStats().value();
  EXPECT_EQ(total.topics, 4);  // "travel" in three scopes counts three times
  EXPECT_EQ(total.facts, 4);
}

TEST_F(KnowledgeStoreTest, TopicNamesArePrintableWithoutSlashes) {
  const std::vector<std::string> good = {
      "travel", "a b", "Überseereisen", "旅行", std::string(128, 't'), std::string(127, 't') + "ü"};
  for (const std::string& name : good) EXPECT_TRUE(CheckTopicName(name).ok()) << name;
  const std::vector<std::string> bad = {
      "",    std::string(129, 't'), "a/b", "tab\there", {"nul\0x", 5}, "\x7f", "\xc2\x85", "\xff",
      "\xc3"};
  for (const std::string& name : bad) EXPECT_FALSE(CheckTopicName(name).ok()) << name;
  EXPECT_FALSE(store_->Put("", {{"a/b", "k", "v"}}).ok());
}

TEST_F(KnowledgeStoreTest, FtsSyntaxInQueriesIsInert) {
  Put("", "t", "k", "NEAR AND OR");
  for (const char* hostile : {"\"", "AND", "a OR", "NEAR(", "*", "k:v", "(((", "-x"}) {
    EXPECT_TRUE(store_->Search("", hostile, 5).ok()) << hostile;
  }
  EXPECT_TRUE(store_->Search("", "   ", 5).value().empty());
  EXPECT_TRUE(store_->Search("", "NEAR", 0).value().empty());
  EXPECT_EQ(FtsQuery("hello, world"), "\"hello\" OR \"world\"");
}

TEST_F(KnowledgeStoreTest, FactsSurviveReopening) {
  const std::string path = TempPath("reopen");
  RemoveDb(path);
  {
    std::unique_ptr<KnowledgeStore> store = KnowledgeStore::Open(path).value();
    ASSERT_TRUE(store->Put("s", {{"a", "b", "c"}}).ok());
  }
  std::unique_ptr<KnowledgeStore> reopened = KnowledgeStore::Open(path).value();
  EXPECT_EQ(reopened->TopicFacts("s", "a").value().size(), 1u);
  EXPECT_EQ(reopened->Search("s", "c", 5).value().size(), 1u);
  RemoveDb(path);
}

TEST_F(KnowledgeStoreTest, UnscopedFileMigratesToTheEmptyScope) {
  const std::string path = TempPath("migrate");
  RemoveDb(path);
  {
    // The schema kvault wrote before scopes existed.
    std::unique_ptr<SqliteDatabase> db = SqliteDatabase::Open(path).value();
    ASSERT_TRUE(
        db->Execute("CREATE TABLE facts (id INTEGER PRIMARY KEY, topic TEXT NOT NULL,"
                    " key TEXT NOT NULL, value TEXT NOT NULL, updated_at INTEGER NOT NULL"
                    " DEFAULT (unixepoch()), UNIQUE (topic, key));"
                    "CREATE VIRTUAL TABLE facts_fts USING fts5(topic, key, value,"
                    " content='facts', content_rowid='id');"
                    "CREATE TRIGGER facts_ai AFTER INSERT ON facts BEGIN"
                    " INSERT INTO facts_fts(rowid, topic, key, value)"
                    " VALUES (new.id, new.topic, new.key, new.value); END;"
                    "INSERT INTO facts (topic, key, value) VALUES ('travel', 'city', 'Lisbon');")
            .ok());
  }
  std::unique_ptr<KnowledgeStore> store = KnowledgeStore::Open(path).value();
  EXPECT_EQ(store->TopicFacts("", "travel").value().size(), 1u);
  EXPECT_EQ(store->Search("", "Lisbon", 5).value().size(), 1u);
  EXPECT_TRUE(store->Search("k1", "Lisbon", 5).value().empty());
  // The new unique key lets another scope hold the same topic and key, and updates reach the
  // index through the recreated triggers.
  ASSERT_TRUE(store->Put("k1", {{"travel", "city", "Oslo"}}).ok());
  ASSERT_TRUE(store->Put("", {{"travel", "city", "Porto"}}).ok());
  EXPECT_TRUE(store->Search("", "Lisbon", 5).value().empty());
  EXPECT_EQ(store->Search("", "Porto", 5).value().size(), 1u);
  EXPECT_EQ(store->TotalStats().value().facts, 2);
  store.reset();
  EXPECT_TRUE(KnowledgeStore::Open(path).ok());  // a second open finds nothing to migrate
  RemoveDb(path);
}

// The logic of a shared feed, on an in-memory one (the same logic against a real Redis:
// tests/integration/cluster_test.cc SessionsAndFactsSavedOnOneReplicaServeOnAnother).
class MemoryFeed : public KnowledgeFeed {
 public:
  Status Publish(std::span<const std::string> records) override {
    if (down) return UnavailableError("down");
    if (log.empty()) log.push_back("epoch:" + std::to_string(++epochs));
    log.insert(log.end(), records.begin(), records.end());
    return Status::Ok();
  }
  Result<Batch> Read(int64_t from, int64_t limit) override {
    if (down) return UnavailableError("down");
    Batch batch;
    if (log.empty()) return batch;
    batch.epoch = log[0];
    for (int64_t i = from; i < from + limit && i < static_cast<int64_t>(log.size()); ++i) {
      batch.records.push_back(log[static_cast<size_t>(i)]);
    }
    return batch;
  }
  std::vector<std::string> log;
  int epochs = 0;
  bool down = false;
};

std::string ValueOf(KnowledgeStore& store, const std::string& topic) {
  const std::vector<Fact> facts = store.TopicFacts("", topic).value();
  return facts.empty() ? "" : facts[0].value;
}

TEST(KnowledgeFeedTest, StoresSharingAFeedAgreeOnEveryKeysLastValue) {
  MemoryFeed feed;
  std::unique_ptr<KnowledgeStore> a = KnowledgeStore::Open(":memory:").value();
  ASSERT_TRUE(a->Put("", {{"crew", "cook", "Mara"}}).ok());  // before it shares anything
  a->SetFeed(&feed);
  std::unique_ptr<KnowledgeStore> b = KnowledgeStore::Open(":memory:").value();
  b->SetFeed(&feed);
  EXPECT_EQ(ValueOf(*b, "crew"), "Mara");  // a's own facts were published when it joined
  ASSERT_TRUE(b->Put("", {{"crew", "cook", "Ivo"}}).ok());
  EXPECT_EQ(ValueOf(*a, "crew"), "Ivo");
  ASSERT_TRUE(a->Put("", {{"crew", "cook", "Tomas"}, {"crew", "pilot", "Lin"}}).ok());
  EXPECT_EQ(ValueOf(*b, "crew"), "Tomas");
  EXPECT_EQ(b->Search("", "Lin", 5).value().size(), 1u);

  // Down: writes apply locally and wait; back, they are published in order.
  feed.down = true;
  ASSERT_TRUE(a->Put("", {{"crew", "cook", "Noor"}}).ok());
  EXPECT_EQ(ValueOf(*a, "crew"), "Noor");
  EXPECT_EQ(ValueOf(*b, "crew"), "Tomas");
  feed.down = false;
  EXPECT_EQ(ValueOf(*a, "crew"), "Noor");
  EXPECT_EQ(ValueOf(*b, "crew"), "Noor");

  // Restarted empty (a new epoch): both publish what they hold; a newcomer gets all of it.
  feed.log.clear();
  ASSERT_TRUE(b->Put("", {{"ship", "name", "Kestrel"}}).ok());
  EXPECT_EQ(a->Stats("").value().facts, 3);
  std::unique_ptr<KnowledgeStore> c = KnowledgeStore::Open(":memory:").value();
  c->SetFeed(&feed);
  EXPECT_EQ(c->Stats("").value().facts, 3);
  EXPECT_EQ(ValueOf(*c, "ship"), "Kestrel");
  EXPECT_EQ(ValueOf(*c, "crew"), "Noor");
}

// Rejoining never lets a store's older copy win over a newer write in the feed: after Redis
// restarted empty, B publishes first and a client writes through B; A, joining later, takes
// the feed's value. A feed restored shorter than a store's cursor is joined again.
TEST(KnowledgeFeedTest, ARejoiningStoreDoesNotOverwriteNewerWrites) {
  MemoryFeed feed;
  std::unique_ptr<KnowledgeStore> a = KnowledgeStore::Open(":memory:").value();
  std::unique_ptr<KnowledgeStore> b = KnowledgeStore::Open(":memory:").value();
  a->SetFeed(&feed);
  b->SetFeed(&feed);
  ASSERT_TRUE(a->Put("", {{"crew", "cook", "v2"}, {"crew", "pilot", "Lin"}}).ok());
  EXPECT_EQ(ValueOf(*b, "crew"), "v2");
  feed.log.clear();                                        // Redis restarted empty
  ASSERT_TRUE(b->Put("", {{"crew", "cook", "v3"}}).ok());  // B rejoins, then writes
  EXPECT_EQ(ValueOf(*a, "crew"), "v3");                    // A rejoins later: v3 stays
  EXPECT_EQ(ValueOf(*b, "crew"), "v3");
  EXPECT_EQ(b->Stats("").value().facts, 2);

  // Restored from an older snapshot: the same epoch, fewer records than A applied.
  feed.log.resize(2);
  ASSERT_TRUE(b->Put("", {{"ship", "name", "Kestrel"}}).ok());
  std::unique_ptr<KnowledgeStore> c = KnowledgeStore::Open(":memory:").value();
  c->SetFeed(&feed);
  EXPECT_EQ(ValueOf(*a, "ship"), "Kestrel");  // not skipped past
  EXPECT_EQ(c->Stats("").value().facts, 3);   // what the snapshot lost, published again
  EXPECT_EQ(ValueOf(*c, "crew"), "v3");
}

TEST(KnowledgeFeedTest, AMalformedRecordIsSkipped) {
  MemoryFeed feed;
  feed.log = {"epoch:x", "not json", R"({"scope":"","facts":[["t","k"]]})",
              R"({"scope":"","facts":[["t","k","v"]]})"};
  std::unique_ptr<KnowledgeStore> store = KnowledgeStore::Open(":memory:").value();
  store->SetFeed(&feed);
  EXPECT_EQ(ValueOf(*store, "t"), "v");
  EXPECT_EQ(store->Stats("").value().facts, 1);
}

}  // namespace
}  // namespace kvault::memory
