#include "kvault/memory/chunk_index.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <functional>
#include <map>
#include <random>

#include <gtest/gtest.h>
#include <unistd.h>

#include "kvault/base/sqlite.h"
#include "kvault/base/time_text.h"
#include "kvault/testing/test_words.h"

namespace kvault::memory {
namespace {

using testing::TestWords;

constexpr int32_t kTurnStart = 1;  // special ids framing a turn, as a chat template would
constexpr int32_t kTurnEnd = 2;

const char* const kFillerWords[] = {
    "river",  "garden",  "coffee",   "morning", "train",  "window", "market",  "winter",
    "bread",  "music",   "walk",     "evening", "street", "yellow", "kitchen", "letter",
    "summer", "bridge",  "mountain", "paint",   "table",  "story",  "office",  "meeting",
    "rain",   "bicycle", "lunch",    "weekend", "ticket", "museum", "forest",  "lamp"};

// A fake embedder for the dense path: a bag of words, one dimension per distinct word, where
// "automobile" shares the dimension of "car", so the two are near with no word in common.
class BagOfWordsEmbedder final : public Embedder {
 public:
  static constexpr size_t kDims = 512;
  Result<std::vector<float>> Embed(std::string_view text) override {
    if (on_embed) on_embed();
    const std::vector<std::string> words = TestWords::Split(text);
    // As engine::EmbeddingModel: a text without tokens is an error.
    if (words.empty()) return InvalidArgumentError("test embedder: no words");
    std::vector<float> vector(kDims, 0.0f);
    vector[0] = 0.01f;  // never all zero
    for (const std::string& word : words) {
      const std::string key = word == "automobile" ? "car" : word;
      const size_t dim = dims_.try_emplace(key, 1 + dims_.size()).first->second;
      if (dim >= kDims) return InternalError("test embedder: too many distinct words");
      vector[dim] += 1.0f;
    }
    ++calls;
    return vector;
  }
  std::string Identity() const override { return identity; }
  int calls = 0;
  std::string identity = "bag-of-words";
  std::function<void()> on_embed;  // runs at the start of every Embed()

 private:
  std::map<std::string, size_t> dims_;
};

class ChunkIndexTest : public ::testing::Test {
 protected:
  void TearDown() override {
    index_.reset();
    for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path_ + suffix);
  }

  // Without WordNet unless asked: the tests of ranking below check the query's own words.
  void Open(Embedder* embedder = nullptr, bool thesaurus = false) {
    index_.reset();
    ChunkIndexOptions options;
    options.path = path_;
    options.detokenize = [this](std::span<const int32_t> ids) { return words_.Detokenize(ids); };
    options.embedder = embedder;
    options.use_thesaurus = thesaurus;
    index_ = ChunkIndex::Open(std::move(options)).value();
  }
  TokenStore& Store(const std::string& conversation) {
    return stores_.try_emplace(conversation, 1 << 20).first->second;
  }
  // Appends one turn to the conversation's store and feeds it to the index.
  Turn Say(const std::string& conversation, std::string_view text) {
    std::vector<int32_t> tokens = {kTurnStart};
    for (int32_t id : words_.Tokenize(text)) tokens.push_back(id);
    tokens.push_back(kTurnEnd);
    const Turn turn = Store(conversation).Append(Role::kUser, tokens, 0, time_).value();
    const IndexTurn indexed{turn.number, turn.first_pos, tokens};
    EXPECT_TRUE(index_->AppendTurns(conversation, {&indexed, 1}).ok());
    return turn;
  }
  void Filler(const std::string& conversation, int n_turns) {
    for (int t = 0; t < n_turns; ++t) {
      std::string text;
      for (int w = 0; w < 40; ++w) text += std::string(kFillerWords[rng_() % 32]) + " ";
      Say(conversation, text);
    }
  }
  std::vector<ChunkHit> Search(const std::string& conversation, std::string_view query,
                               ChunkSearchParams params = {}) {
    return index_->Search(conversation, query, params).value();
  }
  std::string Text(const std::string& conversation, const ChunkHit& hit) {
    return words_.Detokenize(Store(conversation).Tokens(hit.first_pos, hit.n_tokens).value());
  }
  // Rowids the FTS5 table itself returns for a word, through a second connection.
  std::vector<int64_t> FtsRows(const std::string& word) {
    std::unique_ptr<SqliteDatabase> db = SqliteDatabase::Open(path_).value();
    auto query = db->Prepare("SELECT rowid FROM chunk_text WHERE chunk_text MATCH ?1").value();
    EXPECT_TRUE(query->Bind(1, std::string_view(word)).ok());
    std::vector<int64_t> rows;
    while (query->Step().value()) rows.push_back(query->ColumnInt(0));
    return rows;
  }

  std::string path_ = (std::filesystem::temp_directory_path() /
                       ("kvault_chunks_" + std::to_string(::getpid()) + ".db"))
                          .string();
  TestWords words_;
  std::map<std::string, TokenStore> stores_;
  std::unique_ptr<ChunkIndex> index_;
  std::mt19937 rng_{11};
  int64_t time_ = 0;  // of the turns Say appends
};

int64_t Day(int64_t year, int month, int day) { return DaysFromCivil({year, month, day}) * 86400; }

TEST_F(ChunkIndexTest, FindsTheChunkHoldingTheFact) {
  Open();
  Filler("a", 200);
  const Turn fact = Say("a", "by the way my sister's dog is called Biscuit");
  Filler("a", 20);
  const std::vector<ChunkHit> hits = Search("a", "What was the name of my sister's dog?");
  ASSERT_FALSE(hits.empty());
  const ChunkHit& best = hits[0];
  EXPECT_LE(best.first_turn, fact.number);
  EXPECT_GE(best.last_turn, fact.number);
  EXPECT_LE(best.first_pos, fact.first_pos);
  EXPECT_GE(best.end_pos(), fact.end_pos());
  EXPECT_LE(best.n_tokens, 128);
  EXPECT_GT(best.score, 0);
  EXPECT_NE(Text("a", best).find("Biscuit"), std::string::npos);
  EXPECT_EQ(best.chunk_id >> 32, hits.back().chunk_id >> 32);
  EXPECT_TRUE(Search("a", "what did I tell you before?").empty());  // no content words
  EXPECT_TRUE(Search("a", "NEAR( \" * AND").empty());               // FTS syntax is inert
  EXPECT_TRUE(Search("nobody", "dog").empty());
}

TEST_F(ChunkIndexTest, SearchStaysInsideTheConversationAndTheFog) {
  Open();
  Filler("a", 30);
  const Turn fact_a = Say("a", "the cabin wifi password is marmalade");
  Filler("b", 30);
  Say("b", "the cabin wifi password is zeppelin");
  Filler("a", 30);
  Filler("b", 30);
  const std::vector<ChunkHit> hits = Search("b", "cabin wifi password");
  ASSERT_EQ(hits.size(), 1u);
  EXPECT_NE(Text("b", hits[0]).find("zeppelin"), std::string::npos);
  ASSERT_EQ(Search("a", "cabin wifi password").size(), 1u);
  // Fog limit: chunks must end at or before the position given.
  ChunkSearchParams params;
  params.end_pos_limit = fact_a.first_pos;
  EXPECT_TRUE(Search("a", "cabin wifi password", params).empty());
  params.end_pos_limit = fact_a.end_pos() + 200;
  EXPECT_EQ(Search("a", "cabin wifi password", params).size(), 1u);
}

TEST_F(ChunkIndexTest, FogAlphaDemotesOlderChunksByItsFormula) {
  Open();
  Filler("a", 10);
  const Turn old_fact = Say("a", "the locker code is quartz");
  Filler("a", 500);
  const Turn new_fact = Say("a", "the locker code is quartz");
  Filler("a", 10);
  std::vector<ChunkHit> plain = Search("a", "locker code");
  ASSERT_EQ(plain.size(), 2u);
  ChunkSearchParams params;
  params.fog_alpha = 0.5;
  params.cache_size = 10000;
  std::vector<ChunkHit> fogged = Search("a", "locker code", params);
  ASSERT_EQ(fogged.size(), 2u);
  EXPECT_TRUE(fogged[0].first_turn <= new_fact.number && new_fact.number <= fogged[0].last_turn);
  EXPECT_TRUE(fogged[1].first_turn <= old_fact.number && old_fact.number <= fogged[1].last_turn);
  // score = relevance * exp(-alpha * age / cache_size), age from the last appended token.
  const int64_t end = Store("a").end_pos();
  for (const ChunkHit& hit : fogged) {
    const ChunkHit& same = plain[0].chunk_id == hit.chunk_id ? plain[0] : plain[1];
    EXPECT_NEAR(hit.score, same.score * std::exp(-0.5 * double(end - hit.end_pos()) / 10000),
                1e-9 * same.score);
  }
}

TEST_F(ChunkIndexTest, DroppedChunksLeaveTheFullTextIndex) {
  Open();
  const Turn old_fact = Say("a", "my passport number is albatross");
  Filler("a", 100);
  ASSERT_EQ(FtsRows("albatross").size(), 1u);
  const ChunkIndexStats before = index_->Stats().value();
  const ChunkDropResult dropped =
      index_->DropBefore("a", old_fact.end_pos() + 300, Store("a")).value();
  EXPECT_GE(dropped.n_chunks, 2);
  EXPECT_EQ(dropped.n_orphaned, 0);
  EXPECT_TRUE(Search("a", "passport albatross").empty());
  EXPECT_TRUE(FtsRows("albatross").empty());
  EXPECT_EQ(index_->Stats().value().n_chunks, before.n_chunks - dropped.n_chunks);
  for (const ChunkHit& hit : Search("a", "river garden coffee", {.k = 1000})) {
    EXPECT_GE(hit.first_pos, old_fact.end_pos() + 300);
  }
}

TEST_F(ChunkIndexTest, ClosedChunksSurviveReopeningAndFeedingResumes) {
  Open();
  Filler("a", 40);
  Say("a", "the spare key is under the green gnome");
  Filler("a", 3);
  const int64_t fed = index_->IndexedEnd("a").value();
  EXPECT_EQ(fed, Store("a").end_pos());
  const int64_t chunks = index_->Stats().value().n_chunks;
  Open();  // the open chunk is lost; closed ones are on disk
  const int64_t resume = index_->IndexedEnd("a").value();
  EXPECT_LT(resume, fed);
  EXPECT_EQ(Search("a", "spare key gnome").size(), 1u);
  // Feeding every turn again only indexes what was not closed before.
  std::vector<IndexTurn> turns;
  std::vector<std::vector<int32_t>> tokens;
  for (const Turn& turn : Store("a").turns()) tokens.push_back(Store("a").TurnTokens(turn));
  for (size_t i = 0; i < tokens.size(); ++i) {
    turns.push_back({Store("a").turns()[i].number, Store("a").turns()[i].first_pos, tokens[i]});
  }
  ASSERT_TRUE(index_->AppendTurns("a", turns).ok());
  EXPECT_EQ(index_->Stats().value().n_chunks, chunks);
  EXPECT_EQ(index_->IndexedEnd("a").value(), fed);
}

TEST_F(ChunkIndexTest, RemovingAConversationRemovesOnlyIt) {
  Open();
  Say("a", "the boat is named seahorse");
  Filler("a", 10);
  Say("b", "the boat is named seahorse");
  Filler("b", 10);
  const ChunkDropResult removed = index_->RemoveConversation("a", &Store("a")).value();
  EXPECT_GT(removed.n_chunks, 0);
  EXPECT_TRUE(Search("a", "seahorse").empty());
  EXPECT_EQ(Search("b", "seahorse").size(), 1u);
  EXPECT_EQ(FtsRows("seahorse").size(), 1u);
  EXPECT_EQ(index_->Stats().value().n_conversations, 1);
  EXPECT_EQ(index_->RemoveConversation("a", nullptr).value().n_chunks, 0);
  // Without the tokens, the rows stay in FTS but are never found again.
  EXPECT_EQ(index_->RemoveConversation("b", nullptr).value().n_orphaned, removed.n_chunks);
  Say("b", "the boat is named seahorse");
  Filler("b", 10);
  EXPECT_EQ(Search("b", "seahorse").size(), 1u);
}

TEST_F(ChunkIndexTest, DenseRankingFindsSynonymsAndIsFusedWithBm25) {
  BagOfWordsEmbedder embedder;
  Open(&embedder);
  Filler("a", 30);
  const Turn car = Say("a", "my car is a blue hatchback");
  Filler("a", 30);
  // BM25 alone has no match for "automobile"; the vector ranking does.
  std::vector<ChunkHit> hits = Search("a", "automobile", {.k = 3});
  ASSERT_FALSE(hits.empty());
  EXPECT_LE(hits[0].first_turn, car.number);
  EXPECT_GE(hits[0].last_turn, car.number);
  // Found by both rankings at rank 1: the fused score is 2 / 61.
  hits = Search("a", "car hatchback", {.k = 3});
  ASSERT_FALSE(hits.empty());
  EXPECT_NEAR(hits[0].score, 2.0 / 61.0, 1e-12);
  EXPECT_GT(index_->Stats().value().vectors, 0);
  // Embeddings are persisted: a reopened index finds the synonym without re-embedding chunks.
  Open(&embedder);
  const int calls = embedder.calls;
  hits = Search("a", "automobile", {.k = 3});
  ASSERT_FALSE(hits.empty());
  EXPECT_LE(hits[0].first_turn, car.number);
  EXPECT_EQ(embedder.calls, calls + 1);  // the query only
  EXPECT_EQ(index_->Stats().value().vectors_dropped, 0);
}

TEST_F(ChunkIndexTest, AChunkWithoutTextIsIndexedWithoutAVector) {
  BagOfWordsEmbedder embedder;
  Open(&embedder);
  for (int t = 0; t < 80; ++t) Say("a", "");  // turn framing only: a chunk of special tokens
  Filler("a", 10);
  const int64_t n_chunks = index_->CountChunks("a").value();
  EXPECT_GT(n_chunks, 1);
  EXPECT_FALSE(Search("a", std::string(kFillerWords[0]), {.k = 3}).empty());
  const ChunkIndexStats stats = index_->Stats().value();
  EXPECT_EQ(stats.vectors, n_chunks - 1);  // loaded by the search: all but the blank chunk
  EXPECT_EQ(stats.embedding_failures, 0);
}

TEST_F(ChunkIndexTest, ChunksAreEmbeddedOutsideTheLockAndDroppedOnesGetNoVector) {
  BagOfWordsEmbedder embedder;
  Open(&embedder);
  Filler("a", 10);
  // While the next chunks are being embedded, the index serves a search and drops every
  // chunk. Run from inside Embed() on this thread, both would deadlock if embedding held the
  // index's mutex.
  bool intervened = false;
  embedder.on_embed = [&] {
    if (intervened) return;
    intervened = true;
    EXPECT_TRUE(index_->Search("a", "river", {.k = 1}).ok());
    EXPECT_TRUE(index_->DropBefore("a", Store("a").end_pos(), Store("a")).ok());
  };
  Filler("a", 10);
  embedder.on_embed = nullptr;
  ASSERT_TRUE(intervened);
  std::unique_ptr<SqliteDatabase> db = SqliteDatabase::Open(path_).value();
  auto orphans =
      db->Prepare("SELECT count(*) FROM chunk_vectors WHERE id NOT IN (SELECT id FROM chunks)")
          .value();
  ASSERT_TRUE(orphans->Step().value());
  EXPECT_EQ(orphans->ColumnInt(0), 0);
  EXPECT_EQ(index_->Stats().value().embedding_failures, 0);
}

TEST_F(ChunkIndexTest, VectorsOfAnotherEmbedderAreDroppedAtOpen) {
  BagOfWordsEmbedder embedder;
  Open(&embedder);
  Filler("a", 30);
  const Turn car = Say("a", "my car is a blue hatchback");
  Filler("a", 30);
  ASSERT_FALSE(Search("a", "automobile", {.k = 3}).empty());
  const int64_t n_chunks = index_->Stats().value().n_chunks;
  ASSERT_GT(n_chunks, 0);

  // Another model's vectors would be compared with this one's queries: meaningless.
  BagOfWordsEmbedder other;
  other.identity = "another-model";
  Open(&other);
  EXPECT_EQ(index_->Stats().value().vectors_dropped, n_chunks);
  EXPECT_TRUE(Search("a", "automobile", {.k = 3}).empty());  // no dense hit, no BM25 term
  std::vector<ChunkHit> hits = Search("a", "hatchback", {.k = 3});
  ASSERT_FALSE(hits.empty());  // BM25 still finds it
  EXPECT_LE(hits[0].first_turn, car.number);
  EXPECT_GE(hits[0].last_turn, car.number);

  // New chunks get the new identity's vectors, which a reopen keeps.
  Filler("a", 30);
  Open(&other);
  EXPECT_EQ(index_->Stats().value().vectors_dropped, 0);
  EXPECT_FALSE(Search("a", "river", {.k = 3}).empty());
  EXPECT_GT(index_->Stats().value().vectors, 0);
}

bool Covers(const std::vector<ChunkHit>& hits, const Turn& turn) {
  return std::any_of(hits.begin(), hits.end(), [&](const ChunkHit& hit) {
    return hit.first_pos < turn.end_pos() && turn.first_pos < hit.end_pos();
  });
}

TEST_F(ChunkIndexTest, ThesaurusBridgesAParaphrase) {
  if (!std::filesystem::exists("/usr/share/wordnet/index.noun")) {
    GTEST_SKIP() << "no WordNet (apt-get install wordnet-base)";
  }
  Open(nullptr, /*thesaurus=*/true);
  Filler("a", 30);
  const Turn lease = Say("a", "we signed the papers for an old automobile near the harbour");
  Filler("a", 30);
  const std::vector<ChunkHit> hits = Search("a", "which car did we get", {.k = 1});
  ASSERT_EQ(hits.size(), 1u);
  EXPECT_TRUE(Covers(hits, lease));
  // Not a word of the question is in that turn: without the thesaurus nothing is found.
  EXPECT_TRUE(Search("a", "which car did we get", {.k = 1, .expand = false}).empty());
}

TEST_F(ChunkIndexTest, NamesInTheBestHitsBringTheOtherTurnOfAFact) {
  Open();
  Filler("a", 10);
  const Turn name = Say("a", "by the way my sister is called Ottoline");
  for (int i = 0; i < 6; ++i) {
    Filler("a", 8);
    Say("a", "my sister and my sister's friends like the river");  // "sister" twice
  }
  Filler("a", 8);
  const Turn adopted = Say("a", "yesterday Ottoline adopted a ferret called Nimbus");
  Filler("a", 10);
  const std::string question = "what pet did my sister adopt";
  // One step: the turn that says what happened, and chunks about "sister" above the name.
  const std::vector<ChunkHit> one = Search("a", question, {.k = 3});
  EXPECT_TRUE(Covers(one, adopted));
  EXPECT_FALSE(Covers(one, name));
  // With the store, "Ottoline" from the best hit seeds a second step.
  const std::vector<ChunkHit> two = Search("a", question, {.k = 3, .store = &Store("a")});
  EXPECT_TRUE(Covers(two, adopted));
  EXPECT_TRUE(Covers(two, name));
  for (size_t i = 1; i < two.size(); ++i) EXPECT_LE(two[i].score, two[i - 1].score);
}

// More chunks match than the search ranks in full (50): the best one must still come first.
TEST_F(ChunkIndexTest, TheBestOfManyMatchingChunksComesFirst) {
  Open();
  Filler("a", 150);  // every chunk says "river" at least once
  const Turn fact = Say("a", "the river otter we saw by the river was called Biscuit");
  Filler("a", 150);
  const std::vector<ChunkHit> hits = Search("a", "river Biscuit", {.k = 3});
  ASSERT_FALSE(hits.empty());
  EXPECT_TRUE(Covers({hits[0]}, fact));
  EXPECT_GT(hits.size(), 1u);
}

// Word counts are cached per conversation: a word asked about before it was said must be
// found once it is, even when the conversation holds as many chunks as before (at capacity,
// old chunks drop as new ones close).
TEST_F(ChunkIndexTest, AWordNotYetSaidIsFoundOnceSaid) {
  Open();
  std::vector<Turn> turns;
  for (int i = 0; i < 40; ++i) {
    Filler("a", 1);
    turns.push_back(Store("a").turns().back());
  }
  EXPECT_TRUE(Search("a", "ferret").empty());
  const int64_t chunks = index_->CountChunks("a").value();
  const Turn fact = Say("a", "my ferret is called Biscuit");
  Filler("a", 6);
  for (size_t i = 1; i < turns.size() && index_->CountChunks("a").value() > chunks; ++i) {
    ASSERT_TRUE(index_->DropBefore("a", turns[i].first_pos, Store("a")).ok());
  }
  ASSERT_EQ(index_->CountChunks("a").value(), chunks);
  const std::vector<ChunkHit> hits = Search("a", "ferret");
  ASSERT_FALSE(hits.empty());
  EXPECT_TRUE(Covers({hits[0]}, fact));
}

TEST_F(ChunkIndexTest, AQuestionNamingAPeriodFindsWhatWasSaidThen) {
  Open();
  time_ = Day(2023, 4, 3) + 36000;
  Filler("a", 20);
  Say("a", "we baked and baked, baking bread all day, the bakery smell everywhere");
  Filler("a", 20);
  time_ = Day(2023, 5, 9) + 36000;
  Filler("a", 20);
  const Turn may = Say("a", "I baked little apricot tarts");
  Filler("a", 20);
  time_ = Day(2023, 6, 20) + 36000;
  Filler("a", 20);
  Say("a", "more baking: we baked and baked, the bakery could not keep up");
  Filler("a", 20);
  time_ = Day(2023, 8, 15) + 36000;
  const Turn yesterday = Say("a", "the lamp by the window flickered all evening");
  Filler("a", 2);
  time_ = Day(2023, 8, 16) + 36000;
  Filler("a", 10);
  Say("a", "What did I bake in May?");  // the question: "May" is relative to its time
  const std::string question = "What did I bake in May?";
  // Without the store's times the baking days of April and June rank first.
  const std::vector<ChunkHit> plain = Search("a", question, {.k = 1});
  ASSERT_EQ(plain.size(), 1u);
  EXPECT_FALSE(Covers(plain, may));
  const std::vector<ChunkHit> dated = Search("a", question, {.k = 3, .store = &Store("a")});
  ASSERT_FALSE(dated.empty());
  EXPECT_TRUE(Covers({dated[0]}, may));
  EXPECT_EQ(dated.size(), 3u);  // the other baking days follow
  for (size_t i = 1; i < dated.size(); ++i) EXPECT_LE(dated[i].score, dated[i - 1].score);
  // A question with nothing but its period gets the chunks said then.
  const std::vector<ChunkHit> asked = Search("a", "and yesterday?", {.k = 2, .store = &Store("a")});
  ASSERT_FALSE(asked.empty());
  EXPECT_TRUE(Covers(asked, yesterday));
  EXPECT_TRUE(Search("a", "and yesterday?", {.k = 2}).empty());
}

}  // namespace
}  // namespace kvault::memory
