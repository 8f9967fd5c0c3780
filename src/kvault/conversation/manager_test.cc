// ConversationManager against the real engine: tiny model, llama context, scheduler.
#include "kvault/conversation/manager.h"

#include <thread>

#include "tests/test_env.h"
#include <gtest/gtest.h>

#include "kvault/engine/context.h"
#include "kvault/engine/model.h"

namespace kvault::conversation {
namespace {

class ManagerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    model_ = engine::Model::Load({.path = testing::TestModelPath()}).value().release();
  }
  static void TearDownTestSuite() { delete model_; }

  void SetUp() override {
    Start(ManagerParams{
        .window = 512, .max_generation = 64, .threads = 2, .queue = 4, .n_sequences = 3});
  }
  void TearDown() override {
    manager_.reset();
    scheduler_.reset();
    context_.reset();
  }

  void Start(ManagerParams params) {
    manager_.reset();
    scheduler_.reset();
    engine::ContextParams context_params;
    context_params.n_ctx = static_cast<uint32_t>(params.window * params.n_sequences);
    context_params.n_seq_max = static_cast<uint32_t>(params.n_sequences);
    context_params.n_threads = 2;
    context_ = engine::Context::Create(*model_, context_params).value();
    scheduler_ = engine::Scheduler::Start(context_.get(), *model_, {}).value();
    manager_ = std::make_unique<ConversationManager>(*model_, scheduler_.get(), params);
  }

  GenerateRequest Chat(std::string id, std::vector<engine::ChatMessage> messages,
                       int max_tokens = 8) {
    GenerateRequest request;
    request.conversation_id = std::move(id);
    request.explicit_conversation = true;
    request.messages = std::move(messages);
    request.sampling.temperature = 0;
    request.max_tokens = max_tokens;
    return request;
  }

  Result<GenerateResult> Generate(GenerateRequest request, ReplySink* sink = nullptr) {
    Result<ConversationManager::PendingPtr> pending = manager_->Prepare(std::move(request));
    if (!pending.ok()) return pending.status();
    return manager_->Run(std::move(pending).value(), sink);
  }

  static engine::Model* model_;
  std::unique_ptr<engine::Context> context_;
  std::unique_ptr<engine::Scheduler> scheduler_;
  std::unique_ptr<ConversationManager> manager_;
};

engine::Model* ManagerTest::model_ = nullptr;

TEST_F(ManagerTest, SecondTurnReusesTheFirstTurnsKv) {
  Result<GenerateResult> first = Generate(Chat("c", {{"user", "Tell me about the sea."}}));
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_EQ(first->cached_tokens, 0);
  EXPECT_EQ(first->completion_tokens, 8);
  EXPECT_EQ(first->finish_reason, engine::FinishReason::kLength);

  // Full history restated: everything before the new message comes from the sequence's KV.
  Result<GenerateResult> second = Generate(Chat("c", {{"user", "Tell me about the sea."},
                                                      {"assistant", first->text},
                                                      {"user", "And the mountains?"}}));
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  EXPECT_GT(second->cached_tokens, first->prompt_tokens);
  EXPECT_LT(second->cached_tokens, second->prompt_tokens);

  // Only the new message (append semantics with a conversation id): same prompt as above.
  Result<GenerateResult> third = Generate(Chat("c", {{"user", "And the rivers?"}}));
  ASSERT_TRUE(third.ok());
  EXPECT_GT(third->prompt_tokens, second->prompt_tokens);
  EXPECT_GT(third->cached_tokens, second->prompt_tokens);
  ASSERT_EQ(manager_->List("").size(), 1u);
  EXPECT_EQ(manager_->List("")[0].turns, 6);
}

// The reused prefix gives the reply the recomputed prefix gives. One token is compared: the
// cold run decodes the prompt's last token inside a batch and the warm run alone, which
// llama.cpp computes with different kernels (see EngineTest's stated tolerance), so longer
// greedy continuations of a random model could part on a near-tie.
TEST_F(ManagerTest, GreedyReplyIsTheSameWithAndWithoutKvReuse) {
  const std::vector<engine::ChatMessage> history = {{"user", "Count: one two three"}};
  Result<GenerateResult> cold = Generate(Chat("x", history, 1));
  ASSERT_TRUE(cold.ok());
  Result<GenerateResult> warm = Generate(Chat("x", history, 1));  // restated: reuses KV
  ASSERT_TRUE(warm.ok());
  EXPECT_EQ(warm->cached_tokens, warm->prompt_tokens - 1);
  EXPECT_EQ(cold->cached_tokens, 0);
  EXPECT_EQ(warm->text, cold->text);
}

TEST_F(ManagerTest, StopStringEndsTheReplyBeforeIt) {
  Result<GenerateResult> free_run = Generate(Chat("s", {{"user", "Say something long"}}, 16));
  ASSERT_TRUE(free_run.ok());
  ASSERT_GE(free_run->text.size(), 4u);
  // Early in the reply: the second request reuses the first's cells for its prompt, and a
  // random model's greedy text may part from the free run on a near-tie later on (README,
  // "Determinism, stated").
  const std::string stop = free_run->text.substr(std::min<size_t>(free_run->text.size() / 2, 6), 2);
  GenerateRequest request = Chat("s2", {{"user", "Say something long"}}, 16);
  request.stop = {stop};
  Result<GenerateResult> stopped = Generate(request);
  ASSERT_TRUE(stopped.ok());
  EXPECT_EQ(stopped->finish_reason, engine::FinishReason::kStop);
  EXPECT_EQ(stopped->text, free_run->text.substr(0, free_run->text.find(stop)));
}

class CountingSink : public ReplySink {
 public:
  explicit CountingSink(int accept) : accept_(accept) {}
  bool OnText(std::string_view) override { return ++seen_ <= accept_; }
  int seen_ = 0;
  int accept_;
};

TEST_F(ManagerTest, SinkThatGoesAwayCancelsWithinAStep) {
  CountingSink sink(3);
  Result<GenerateResult> result = Generate(Chat("gone", {{"user", "Talk"}}, 64), &sink);
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result->finish_reason, engine::FinishReason::kCancelled);
  EXPECT_LE(result->completion_tokens, 6);  // stopped at the next step, not after 64
  // The sequence is usable right away.
  EXPECT_TRUE(Generate(Chat("gone", {{"user", "Again"}}, 2)).ok());
}

TEST_F(ManagerTest, EndFreesTheConversationAndUnknownIsNotFound) {
  ASSERT_TRUE(Generate(Chat("e", {{"user", "hi"}})).ok());
  EXPECT_GT(manager_->stats().sequences.n_parked, 0);
  ASSERT_TRUE(manager_->End("", "e").ok());
  EXPECT_TRUE(manager_->List("").empty());
  EXPECT_EQ(manager_->stats().sequences.n_parked, 0);
  EXPECT_EQ(context_->SequenceLength(0) + context_->SequenceLength(1) + context_->SequenceLength(2),
            0);
  EXPECT_EQ(manager_->End("", "e").code(), StatusCode::kNotFound);
}

TEST_F(ManagerTest, ScopesAreIsolated) {
  GenerateRequest request = Chat("shared-name", {{"user", "hi"}});
  request.scope = "key-a";
  ASSERT_TRUE(Generate(request).ok());
  EXPECT_EQ(manager_->List("key-a").size(), 1u);
  EXPECT_TRUE(manager_->List("key-b").empty());
  EXPECT_EQ(manager_->End("key-b", "shared-name").code(), StatusCode::kNotFound);
  EXPECT_TRUE(manager_->End("key-a", "shared-name").ok());
}

TEST_F(ManagerTest, PromptLongerThanTheWindowIsRejected) {
  std::string long_text;
  for (int i = 0; i < 400; ++i) long_text += " word" + std::to_string(i);
  Result<GenerateResult> result = Generate(Chat("long", {{"user", long_text}}));
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(result.status().detail(), ErrorDetail::kContextLengthExceeded);
}

TEST_F(ManagerTest, ConcurrentConversationsGenerateTogether) {
  std::vector<std::thread> threads;
  std::vector<Result<GenerateResult>> results(2, InternalError("not run"));
  for (int i = 0; i < 2; ++i) {
    threads.emplace_back([&, i] {
      results[i] =
          Generate(Chat("p" + std::to_string(i), {{"user", "Story " + std::to_string(i)}}, 32));
    });
  }
  for (std::thread& t : threads) t.join();
  for (const auto& result : results) {
    ASSERT_TRUE(result.ok()) << result.status().ToString();
    EXPECT_EQ(result->completion_tokens, 32);
  }
  // Two requests of 32 tokens shared steps: fewer decode calls than if they ran in turn.
  EXPECT_LT(scheduler_->stats().steps, 2 * (32 + 1));
}

TEST_F(ManagerTest, SameConversationRequestsRunOneAtATime) {
  std::vector<std::thread> threads;
  std::vector<Result<GenerateResult>> results(3, InternalError("not run"));
  for (int i = 0; i < 3; ++i) {
    threads.emplace_back([&, i] {
      results[i] = Generate(Chat("one", {{"user", "Hello " + std::to_string(i)}}, 8));
    });
  }
  for (std::thread& t : threads) t.join();
  for (const auto& result : results) ASSERT_TRUE(result.ok()) << result.status().ToString();
  // Appended one after another: the conversation holds all three exchanges.
  EXPECT_EQ(manager_->List("")[0].turns, 6);
}

}  // namespace
}  // namespace kvault::conversation
