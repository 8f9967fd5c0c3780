// ConversationMemory with the real pieces: the tiny model's tokenizer and chat template, a
// SQLite FTS5 index, the window builder. A fact planted ~50k tokens deep in a conversation
// comes back into the prompt of a question about it, with its annotation, when recall is on,
// and not when it is off; resent histories are matched turn by turn.
#include "kvault/conversation/conversation_memory.h"

#include <filesystem>
#include <random>

#include "tests/test_env.h"
#include <gtest/gtest.h>
#include <unistd.h>

#include "kvault/engine/model.h"

namespace kvault::conversation {
namespace {

const char* kFact = "The combination of the blue garden locker is 4721, write it down.";
const char* kQuestion = "What is the combination of the blue garden locker?";

class ConversationMemoryTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    model_ = engine::Model::Load({.path = testing::TestModelPath(), .vocab_only = true})
                 .value()
                 .release();
  }
  static void TearDownTestSuite() { delete model_; }

  ConversationMemoryTest()
      : tokenizer_(*model_),
        template_(engine::ChatTemplate::ForModel(*model_)),
        renderer_(&tokenizer_, &template_) {
    memory::ChunkIndexOptions options;
    options.path = ":memory:";
    options.detokenize = [this](std::span<const int32_t> tokens) { return renderer_.Text(tokens); };
    index_ = memory::ChunkIndex::Open(std::move(options)).value();
    memory_ = std::make_unique<ConversationMemory>(
        &renderer_, index_.get(), nullptr, nullptr, nullptr,
        MemoryParams{.window = 4096, .cache_size = 10000000, .recall_budget = 1024});
  }

  // ~`tokens` tokens of everyday filler, the fact somewhere in the first part.
  static std::vector<engine::ChatMessage> History(int64_t tokens, size_t fact_turn) {
    static const char* kWords[] = {"weather", "train",  "coffee", "meeting", "garden",
                                   "cousin",  "market", "bread",  "rain",    "bicycle",
                                   "museum",  "letter", "dinner", "window",  "holiday"};
    std::mt19937 rng(3);
    std::vector<engine::ChatMessage> messages = {{"system", "You are a patient assistant."}};
    for (size_t turn = 0; static_cast<int64_t>(turn) * 60 < tokens; ++turn) {
      std::string text;
      for (int w = 0; w < 40; ++w) text += std::string(w ? " " : "") + kWords[rng() % 15];
      if (turn == fact_turn) text = kFact;
      messages.push_back({turn % 2 ? "assistant" : "user", text + "."});
    }
    return messages;
  }

  std::string PromptText(const memory::Window& window) {
    return tokenizer_.Detokenize(window.tokens, /*render_special=*/true);
  }

  static engine::Model* model_;
  engine::Tokenizer tokenizer_;
  engine::ChatTemplate template_;
  ChatTurnRenderer renderer_;
  std::unique_ptr<memory::ChunkIndex> index_;
  std::unique_ptr<ConversationMemory> memory_;
};

engine::Model* ConversationMemoryTest::model_ = nullptr;

TEST_F(ConversationMemoryTest, AFactFiftyThousandTokensDeepIsRecalledIntoThePrompt) {
  TurnLock conversation(std::make_shared<Conversation>("", "deep"));
  std::vector<engine::ChatMessage> history = History(70000, 20);
  ASSERT_TRUE(memory_->Ingest(conversation, history, false).ok());
  ASSERT_GT(conversation->history->n_tokens(), 50000);
  const memory::Turn& fact_turn = conversation->history->turns()[21];  // after the system turn
  ASSERT_EQ(fact_turn.number, 21);
  ASSERT_GT(conversation->history->end_pos() - fact_turn.first_pos, 50000);

  const std::vector<engine::ChatMessage> question = {{"user", kQuestion}};
  ASSERT_TRUE(memory_->Ingest(conversation, question, true).ok());
  Result<memory::Window> window = memory_->BuildWindow(conversation, kQuestion, 512, true);
  ASSERT_TRUE(window.ok()) << window.status().ToString();
  EXPECT_LE(window->tokens.size(), 4096u - 512u);
  const std::string prompt = PromptText(*window);
  EXPECT_NE(prompt.find("4721"), std::string::npos) << prompt.substr(0, 3000);
  ASSERT_FALSE(window->recalled.empty());
  bool annotated = false;
  for (const memory::RecalledChunk& chunk : window->recalled) {
    if (chunk.text.find("4721") == std::string::npos) continue;
    EXPECT_LE(chunk.hit.first_turn, 21);
    EXPECT_GE(chunk.hit.last_turn, 21);
    EXPECT_NE(prompt.find(chunk.annotation), std::string::npos) << chunk.annotation;
    annotated = chunk.annotation.find("turn") != std::string::npos &&
                chunk.annotation.find("tokens ago") != std::string::npos;
  }
  EXPECT_TRUE(annotated);
  // The system prompt comes first, the question last.
  EXPECT_EQ(prompt.find("You are a patient assistant."), prompt.find("system") + 7);
  EXPECT_NE(prompt.rfind(kQuestion), std::string::npos);

  Result<memory::Window> without = memory_->BuildWindow(conversation, kQuestion, 512, false);
  ASSERT_TRUE(without.ok());
  EXPECT_EQ(PromptText(*without).find("4721"), std::string::npos);
  EXPECT_TRUE(without->recalled.empty());
}

TEST_F(ConversationMemoryTest, AResentHistoryOnlyAddsWhatIsNew) {
  TurnLock conversation(std::make_shared<Conversation>("", "resend"));
  std::vector<engine::ChatMessage> history = History(3000, 5);
  history.push_back({"user", "first question"});
  Result<IngestResult> first = memory_->Ingest(conversation, history, true);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(first->new_turns, static_cast<int64_t>(history.size()));
  ASSERT_TRUE(memory_->AppendReply(conversation, "an answer").ok());
  history.push_back({"assistant", "an answer"});
  history.push_back({"user", "second question"});
  Result<IngestResult> again = memory_->Ingest(conversation, history, true);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->new_turns, 1);
  EXPECT_FALSE(again->replaced);
  // Only the new message: appended as well, once the second question has its answer.
  ASSERT_TRUE(memory_->AppendReply(conversation, "another answer").ok());
  history.push_back({"assistant", "another answer"});
  const std::vector<engine::ChatMessage> only_new = {{"user", "third question"}};
  Result<IngestResult> third = memory_->Ingest(conversation, only_new, true);
  ASSERT_TRUE(third.ok());
  EXPECT_EQ(third->new_turns, 1);
  EXPECT_EQ(third->action, HistoryAction::kAppended);
  EXPECT_EQ(conversation.conversation().n_turns.load(), static_cast<int64_t>(history.size()) + 1);
  // An edited earlier message replaces the history from there.
  std::vector<engine::ChatMessage> edited(history.begin(), history.begin() + 4);
  edited[3].content = "something else entirely";
  Result<IngestResult> replaced = memory_->Ingest(conversation, edited, true);
  ASSERT_TRUE(replaced.ok());
  EXPECT_TRUE(replaced->replaced);
  EXPECT_EQ(conversation.conversation().n_turns.load(), 4);
  // Nothing to answer after an assistant message.
  const std::vector<engine::ChatMessage> reply = {{"assistant", "hm"}};
  EXPECT_EQ(memory_->Ingest(conversation, reply, true).status().code(),
            StatusCode::kInvalidArgument);
}

TEST_F(ConversationMemoryTest, SearchFindsTheChunkWithItsTurns) {
  TurnLock conversation(std::make_shared<Conversation>("", "search"));
  ASSERT_TRUE(memory_->Ingest(conversation, History(20000, 30), false).ok());
  Result<std::vector<SearchResult>> results =
      memory_->Search(conversation, "combination blue garden locker", 3);
  ASSERT_TRUE(results.ok());
  ASSERT_FALSE(results->empty());
  EXPECT_NE((*results)[0].text.find("4721"), std::string::npos) << (*results)[0].text;
  EXPECT_LE((*results)[0].first_turn, 31);
  EXPECT_GE((*results)[0].last_turn, 31);
  EXPECT_GT((*results)[0].score, 0);
}

TEST_F(ConversationMemoryTest, KnowledgeFactsAreRecalledLikeChunks) {
  std::unique_ptr<memory::KnowledgeStore> knowledge =
      memory::KnowledgeStore::Open(":memory:").value();
  ASSERT_TRUE(knowledge->Put("", {{"garden", "locker combination", "8812"}}).ok());
  ConversationMemory with_facts(&renderer_, index_.get(), nullptr, knowledge.get(), nullptr,
                                MemoryParams{.window = 4096});
  TurnLock conversation(std::make_shared<Conversation>("", "facts"));
  const std::vector<engine::ChatMessage> question = {{"user", kQuestion}};
  ASSERT_TRUE(with_facts.Ingest(conversation, question, true).ok());
  Result<memory::Window> window = with_facts.BuildWindow(conversation, kQuestion, 512, true);
  ASSERT_TRUE(window.ok()) << window.status().ToString();
  const std::string prompt = PromptText(*window);
  EXPECT_NE(prompt.find("8812"), std::string::npos) << prompt;
  EXPECT_NE(prompt.find("[known fact: garden / locker combination]"), std::string::npos);
  // Another scope's facts stay out.
  TurnLock other(std::make_shared<Conversation>("other-key", "facts"));
  ASSERT_TRUE(with_facts.Ingest(other, question, true).ok());
  EXPECT_EQ(PromptText(with_facts.BuildWindow(other, kQuestion, 512, true).value()).find("8812"),
            std::string::npos);
}

// With a journal on disk: a replaced history is archived as a branch that a restart reads
// back, an unanswered turn is remembered across the restart, and a plan that is refused
// writes nothing.
class JournaledMemoryTest : public ConversationMemoryTest {
 protected:
  JournaledMemoryTest() {
    char pattern[] = "/tmp/kvault_journal_XXXXXX";
    dir_ = ::mkdtemp(pattern);
    Reopen();
  }
  ~JournaledMemoryTest() override { std::filesystem::remove_all(dir_); }
  void Reopen() {
    journaled_.reset();
    journal_ = Journal::Open(dir_).value();
    journaled_ = std::make_unique<ConversationMemory>(
        &renderer_, index_.get(), journal_.get(), nullptr, nullptr, MemoryParams{.window = 4096});
  }
  uintmax_t JournalBytes() const {
    uintmax_t bytes = 0;
    for (const auto& entry : std::filesystem::directory_iterator(dir_)) bytes += entry.file_size();
    return bytes;
  }

  std::string dir_;
  std::unique_ptr<Journal> journal_;
  std::unique_ptr<ConversationMemory> journaled_;
};

TEST_F(JournaledMemoryTest, AReplacedHistoryIsArchivedAndSurvivesARestart) {
  std::vector<engine::ChatMessage> messages = {{"system", "Be brief."}};
  {
    TurnLock conversation(std::make_shared<Conversation>("", "branchy"));
    for (int i = 0; i < 4; ++i) {
      messages.push_back({"user", "question " + std::to_string(i)});
      ASSERT_TRUE(journaled_->Ingest(conversation, messages, true).ok());
      ASSERT_TRUE(journaled_->AppendReply(conversation, "answer " + std::to_string(i)).ok());
      messages.push_back({"assistant", "answer " + std::to_string(i)});
    }
    std::vector<engine::ChatMessage> edited(messages.begin(), messages.begin() + 4);
    edited[3].content = "question one, edited";
    Result<IngestResult> replaced = journaled_->Ingest(conversation, edited, true);
    ASSERT_TRUE(replaced.ok());
    EXPECT_EQ(replaced->action, HistoryAction::kReplaced);
    EXPECT_EQ(replaced->from_turn, 3);
    EXPECT_EQ(replaced->archived_turns, 6);
    EXPECT_EQ(replaced->archived_branch, "branch-1");
    EXPECT_EQ(conversation.conversation().n_turns.load(), 4);
    EXPECT_EQ(conversation->unanswered_turn, 3);  // the edited question awaits its reply
  }
  Reopen();  // a restart
  std::vector<JournalEntry> recovered = journal_->TakeRecovered();
  ASSERT_EQ(recovered.size(), 1u);
  const JournalEntry& entry = recovered[0];
  ASSERT_EQ(entry.turns.size(), 4u);
  EXPECT_EQ(entry.turns[3].content, "question one, edited");
  EXPECT_EQ(entry.unanswered_turn, 3);
  ASSERT_EQ(entry.branches.size(), 1u);
  EXPECT_EQ(entry.branches[0].name, "branch-1");
  EXPECT_EQ(entry.branches[0].from_turn, 3);
  ASSERT_EQ(entry.branches[0].turns.size(), 6u);
  for (size_t i = 0; i < 6; ++i) {
    EXPECT_EQ(entry.branches[0].turns[i].content, messages[3 + i].content);
    EXPECT_EQ(entry.branches[0].turns[i].role, messages[3 + i].role);
  }
  TurnLock again(std::make_shared<Conversation>("", "branchy"));
  ASSERT_TRUE(journaled_->Recover(again, entry).ok());
  EXPECT_EQ(again->unanswered_turn, 3);
  EXPECT_EQ(again->n_branches, 1);
  // Another message supersedes the unanswered turn: the next branch.
  const std::vector<engine::ChatMessage> delta = {{"system", "Be brief."}, {"user", "new one"}};
  Result<IngestResult> superseded = journaled_->Ingest(again, delta, true);
  ASSERT_TRUE(superseded.ok());
  EXPECT_EQ(superseded->action, HistoryAction::kReplaced);
  EXPECT_EQ(superseded->archived_branch, "branch-2");
  EXPECT_EQ(again.conversation().n_turns.load(), 4);
  EXPECT_EQ(journal_->Read("", "branchy").value().branches.size(), 2u);
}

TEST_F(JournaledMemoryTest, ARefusedPlanWritesNothing) {
  TurnLock conversation(std::make_shared<Conversation>("", "refused"));
  const std::vector<engine::ChatMessage> first = {{"system", "Be brief."}, {"user", "hello"}};
  ASSERT_TRUE(journaled_->Ingest(conversation, first, true).ok());
  ASSERT_TRUE(journaled_->AppendReply(conversation, "hi").ok());
  const uintmax_t bytes = JournalBytes();
  const int64_t tokens = conversation.conversation().n_tokens.load();
  const std::vector<engine::ChatMessage> ends_with_reply = {{"user", "q"}, {"assistant", "a"}};
  EXPECT_FALSE(journaled_->Plan(conversation, ends_with_reply, HistoryMode::kAuto, true).ok());
  const std::vector<engine::ChatMessage> bad_role = {{"wizard", "q"}};
  EXPECT_FALSE(journaled_->Plan(conversation, bad_role, HistoryMode::kAuto, true).ok());
  // A plan that fits nothing: the window check refuses it before the commit.
  std::string huge;
  for (int i = 0; i < 5000; ++i) huge += "word ";
  const std::vector<engine::ChatMessage> too_long = {{"user", huge}};
  Result<IngestPlan> plan = journaled_->Plan(conversation, too_long, HistoryMode::kAuto, true);
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(journaled_->CheckWindow(*plan, 512).detail(), ErrorDetail::kContextLengthExceeded);
  EXPECT_EQ(JournalBytes(), bytes);
  EXPECT_EQ(conversation.conversation().n_tokens.load(), tokens);
  EXPECT_EQ(conversation.conversation().n_turns.load(), 3);
}

}  // namespace
}  // namespace kvault::conversation
