#include "kvault/memory/window_builder.h"

#include <algorithm>
#include <random>

#include <gtest/gtest.h>

#include "kvault/testing/test_words.h"

namespace kvault::memory {
namespace {

using testing::TestWords;

constexpr int32_t kEndToken = 8;

// A chat template over the test tokenizer: a role token, the words, an end token.
class WordRenderer final : public TurnRenderer {
 public:
  explicit WordRenderer(TestWords* words) : words_(words) {}
  Result<std::vector<int32_t>> Render(Role role, std::string_view text) override {
    std::vector<int32_t> tokens = {1 + static_cast<int32_t>(role)};
    for (int32_t id : words_->Tokenize(text)) tokens.push_back(id);
    tokens.push_back(kEndToken);
    return tokens;
  }
  std::vector<int32_t> GenerationPrompt() override {
    return {1 + static_cast<int32_t>(Role::kAssistant)};
  }
  Result<std::vector<int32_t>> Tokenize(std::string_view text) override {
    std::vector<int32_t> tokens;
    for (int32_t id : words_->Tokenize(text)) tokens.push_back(id);
    return tokens;
  }

 private:
  TestWords* words_;
};

bool Contains(std::span<const int32_t> haystack, std::span<const int32_t> needle) {
  return std::search(haystack.begin(), haystack.end(), needle.begin(), needle.end()) !=
         haystack.end();
}

class WindowBuilderTest : public ::testing::Test {
 protected:
  explicit WindowBuilderTest(int64_t capacity = 1 << 24) : store_(capacity) {
    ChunkIndexOptions options;
    options.path = ":memory:";
    options.detokenize = MakeDetokenizer();
    index_ = ChunkIndex::Open(std::move(options)).value();
  }
  Detokenizer MakeDetokenizer() {
    return [this](std::span<const int32_t> ids) { return words_.Detokenize(ids); };
  }
  Turn Say(Role role, std::string_view text) {
    const std::vector<int32_t> tokens = renderer_.Render(role, text).value();
    const Turn turn = store_.Append(role, tokens).value();
    const IndexTurn indexed{turn.number, turn.first_pos, tokens};
    EXPECT_TRUE(index_->AppendTurns("c", {&indexed, 1}).ok());
    return turn;
  }
  // Alternating user and assistant turns of `words` filler words, until `n_tokens` more.
  void Filler(int64_t n_tokens, int words = 60) {
    const int64_t end = store_.end_pos() + n_tokens;
    while (store_.end_pos() < end) {
      std::string text;
      for (int w = 0; w < words; ++w) text += "w" + std::to_string(rng_() % 3000) + " ";
      Say(store_.turns().size() % 2 == 0 ? Role::kAssistant : Role::kUser, text);
    }
  }
  WindowInputs Inputs(bool recall, std::string question = "") {
    WindowInputs inputs;
    inputs.store = &store_;
    inputs.renderer = &renderer_;
    inputs.detokenize = MakeDetokenizer();
    if (recall) {
      inputs.recall = [this, question](int64_t fog_end) {
        return index_->Search(
            "c", question,
            {.k = 8, .end_pos_limit = fog_end, .fog_alpha = 0.5, .cache_size = 10000000});
      };
    }
    return inputs;
  }
  int32_t Id(const std::string& word) { return words_.Tokenize(word)[0]; }

  TestWords words_;
  WordRenderer renderer_{&words_};
  TokenStore store_;
  std::unique_ptr<ChunkIndex> index_;
  std::mt19937 rng_{21};
};

TEST_F(WindowBuilderTest, ShortConversationIsSentWhole) {
  Say(Role::kSystem, "be brief");
  Say(Role::kUser, "hello there");
  Say(Role::kAssistant, "hi");
  Say(Role::kUser, "how are you");
  ClearZoneState state;
  const Window window = WindowBuilder({}).Build(Inputs(true, "how are you"), &state).value();
  std::vector<int32_t> expected = store_.Tokens(0, store_.n_tokens()).value();
  expected.push_back(1 + static_cast<int32_t>(Role::kAssistant));
  EXPECT_EQ(window.tokens, expected);
  EXPECT_EQ(window.first_clear_turn, 1);
  EXPECT_EQ(window.last_clear_turn, 2);
  EXPECT_EQ(window.n_fog_tokens, 0);
  EXPECT_TRUE(window.recalled.empty());
  EXPECT_FALSE(window.slid);
  EXPECT_EQ(state.first_turn, 1);
  EXPECT_EQ(window.n_prefix_tokens, store_.turns()[3].first_pos);
}

TEST_F(WindowBuilderTest, FactFiftyThousandTokensDeepIsRecalledWithItsAnnotation) {
  Say(Role::kSystem, "you are a helpful assistant");
  Filler(10000);
  const Turn fact = Say(Role::kUser, "by the way my sister's dog is called Biscuit");
  Filler(50000);
  const std::string question = "what was the name of my sister's dog again";
  const Turn asked = Say(Role::kUser, question);
  const WindowParams params{.window = 4096, .generation_budget = 512};

  ClearZoneState state;
  const Window window = WindowBuilder(params).Build(Inputs(true, question), &state).value();
  EXPECT_LE(window.tokens.size(), 4096u - 512u);
  EXPECT_GT(window.n_fog_tokens, 55000);
  const auto it = std::find_if(window.recalled.begin(), window.recalled.end(), [&](auto& c) {
    return c.hit.first_turn <= fact.number && fact.number <= c.hit.last_turn;
  });
  ASSERT_NE(it, window.recalled.end());
  EXPECT_GT(store_.end_pos() - it->hit.end_pos(), 50000);
  EXPECT_EQ(it->annotation, RecallAnnotation(it->hit, store_.end_pos(), &store_));
  EXPECT_NE(it->text.find("Biscuit"), std::string::npos);
  const std::string message = RecallMessageText(window.recalled);
  EXPECT_NE(message.find(it->annotation + "\n" + it->text), std::string::npos);
  // The prompt: system turn, clear zone, the recall message, the question, the opener.
  const std::vector<int32_t> rendered = renderer_.Render(Role::kSystem, message).value();
  std::vector<int32_t> tail = rendered;
  for (int32_t t : store_.TurnTokens(asked)) tail.push_back(t);
  tail.push_back(1 + static_cast<int32_t>(Role::kAssistant));
  ASSERT_GE(window.tokens.size(), tail.size());
  EXPECT_TRUE(std::equal(tail.rbegin(), tail.rend(), window.tokens.rbegin()));
  EXPECT_EQ(window.n_recall_tokens, static_cast<int64_t>(rendered.size()));
  EXPECT_LE(window.n_recall_tokens, 1024);
  EXPECT_TRUE(Contains(window.tokens, store_.TurnTokens(store_.turns()[0])));
  EXPECT_TRUE(Contains(window.tokens, std::vector<int32_t>{Id("Biscuit")}));

  // Recall disabled: the fact is nowhere in the prompt, and the clear zone is larger.
  ClearZoneState plain_state;
  const Window plain = WindowBuilder(params).Build(Inputs(false), &plain_state).value();
  EXPECT_FALSE(Contains(plain.tokens, std::vector<int32_t>{Id("Biscuit")}));
  EXPECT_TRUE(plain.recalled.empty());
  EXPECT_EQ(plain.n_recall_tokens, 0);
  EXPECT_GT(plain.n_prefix_tokens, window.n_prefix_tokens);
  EXPECT_LE(plain.tokens.size(), 4096u - 512u);
}

TEST_F(WindowBuilderTest, TokenRecallSplicesEachChunksOwnTokensWhereItsTextWouldBe) {
  Say(Role::kSystem, "you are a helpful assistant");
  Filler(3000);
  const Turn fact = Say(Role::kUser, "by the way my sister's dog is called Biscuit");
  Filler(6000);
  const std::string question = "what was the name of my sister's dog again";
  Say(Role::kUser, question);
  WindowParams params{.window = 2048, .generation_budget = 256};
  ClearZoneState text_state;
  const Window text = WindowBuilder(params).Build(Inputs(true, question), &text_state).value();
  params.token_recall = true;
  ClearZoneState state;
  const Window window = WindowBuilder(params).Build(Inputs(true, question), &state).value();
  ASSERT_TRUE(window.token_recall);
  ASSERT_FALSE(window.recalled.empty());
  // The same chunks as with text recall, each at its run, holding the store's own tokens.
  ASSERT_EQ(window.recalled.size(), text.recalled.size());
  ASSERT_EQ(window.recall_runs.size(), window.recalled.size());
  bool has_fact = false;
  int64_t previous_end = window.n_prefix_tokens;
  for (size_t i = 0; i < window.recalled.size(); ++i) {
    const ChunkHit& hit = window.recalled[i].hit;
    EXPECT_EQ(hit.chunk_id, text.recalled[i].hit.chunk_id);
    const HistoryRun& run = window.recall_runs[i];
    EXPECT_EQ(run.first_pos, hit.first_pos);
    EXPECT_EQ(run.n_tokens, hit.n_tokens);
    EXPECT_GT(run.offset, previous_end);  // the header or an annotation comes first
    previous_end = run.offset + run.n_tokens;
    const std::vector<int32_t> stored = store_.Tokens(hit.first_pos, hit.n_tokens).value();
    ASSERT_LE(run.offset + run.n_tokens, static_cast<int64_t>(window.tokens.size()));
    EXPECT_TRUE(std::equal(stored.begin(), stored.end(), window.tokens.begin() + run.offset));
    has_fact = has_fact || (hit.first_turn <= fact.number && fact.number <= hit.last_turn);
  }
  EXPECT_TRUE(has_fact);
  EXPECT_LE(window.n_recall_tokens, 1024);
  EXPECT_LE(window.tokens.size(), 2048u - 256u);
  // The stable prefix is the same either way; its clear zone run maps the store's tokens.
  EXPECT_EQ(window.n_prefix_tokens, text.n_prefix_tokens);
  const HistoryRun& clear = window.clear_run;
  EXPECT_EQ(clear.first_pos, window.clear_first_pos);
  EXPECT_EQ(clear.offset + clear.n_tokens, window.n_prefix_tokens);
  const std::vector<int32_t> zone = store_.Tokens(clear.first_pos, clear.n_tokens).value();
  EXPECT_TRUE(std::equal(zone.begin(), zone.end(), window.tokens.begin() + clear.offset));
}

TEST_F(WindowBuilderTest, ClearZoneKeepsItsPrefixAndSlidesRarelyByAtLeastTheStep) {
  Say(Role::kSystem, "system prompt");
  const WindowBuilder builder({.window = 1024, .generation_budget = 128, .recall_budget = 0});
  ClearZoneState state;
  Window previous;
  int slides = 0, builds_since_slide = 0;
  for (int i = 0; i < 300; ++i) {
    Filler(1, 5 + static_cast<int>(rng_() % 40));
    const Window window = builder.Build(Inputs(false), &state).value();
    ASSERT_LE(window.tokens.size(), 1024u - 128u);
    if (i > 0 && !window.slid) {
      // The stable prefix of the last prompt is a prefix of this one: its KV is reused.
      ASSERT_GE(window.n_prefix_tokens, previous.n_prefix_tokens);
      ASSERT_TRUE(std::equal(previous.tokens.begin(),
                             previous.tokens.begin() + previous.n_prefix_tokens,
                             window.tokens.begin()));
      ++builds_since_slide;
    } else if (window.slid) {
      ++slides;
      EXPECT_GE(window.clear_first_pos - previous.clear_first_pos, 256);
      EXPECT_GE(builds_since_slide, 4) << "slides too often";  // 256 free, turns of 7-46
      builds_since_slide = 0;
    }
    if (window.first_clear_turn >= 0) EXPECT_EQ(state.first_turn, window.first_clear_turn);
    previous = window;
  }
  EXPECT_GT(slides, 5);
  EXPECT_LT(slides, store_.n_tokens() / 256 + 2);
}

TEST_F(WindowBuilderTest, RecallTakesBestFogChunksWithinBudgetThresholdAndWithoutOverlap) {
  Say(Role::kSystem, "sys");
  Filler(5000, 50);  // turns of 52 tokens
  Say(Role::kUser, "question");
  const int64_t base = store_.turns()[1].first_pos;
  auto hit = [&](int64_t id, double score, int64_t first_pos, int32_t n) {
    return ChunkHit{id, score, first_pos, n, 1, 1};
  };
  std::vector<ChunkHit> offered;
  WindowInputs inputs = Inputs(false);
  inputs.recall = [&](int64_t fog_end) -> Result<std::vector<ChunkHit>> {
    offered = {hit(1, 9, base, 100),           // taken
               hit(1, 9, base, 100),           // duplicate
               hit(2, 8, base + 50, 100),      // overlaps chunk 1
               hit(3, 7, fog_end - 10, 100),   // reaches into the clear zone
               hit(4, 6, base + 1000, 1000),   // larger than what is left of the budget
               hit(5, 0.5, base + 2000, 100),  // below the threshold
               hit(6, 5, base + 3000, 128)};   // taken
    return offered;
  };
  ClearZoneState state;
  const WindowBuilder builder({.window = 2048, .generation_budget = 256, .min_score = 1.0});
  const Window window = builder.Build(inputs, &state).value();
  ASSERT_EQ(window.recalled.size(), 2u);
  EXPECT_EQ(window.recalled[0].hit.chunk_id, 1);
  EXPECT_EQ(window.recalled[1].hit.chunk_id, 6);
  EXPECT_LE(window.n_recall_tokens, 1024);
  EXPECT_GT(window.n_recall_tokens, 228);
  EXPECT_LE(window.tokens.size(), 2048u - 256u);
}

TEST_F(WindowBuilderTest, MessageThatCannotFitIsContextLengthExceeded) {
  Say(Role::kSystem, "sys");
  std::string huge;
  for (int i = 0; i < 600; ++i) huge += "word ";
  Say(Role::kUser, huge);
  ClearZoneState state;
  const Result<Window> window =
      WindowBuilder({.window = 512, .generation_budget = 64}).Build(Inputs(true, "x"), &state);
  ASSERT_EQ(window.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(window.status().detail(), ErrorDetail::kContextLengthExceeded);
  EXPECT_NE(window.status().message().find("606"), std::string::npos);  // 3 + 602 + 1
}

class SmallStoreWindowTest : public WindowBuilderTest {
 protected:
  SmallStoreWindowTest() : WindowBuilderTest(2000) {}
};

TEST_F(SmallStoreWindowTest, DroppedTurnsMoveTheClearZoneAndCountAsASlide) {
  Filler(1000, 20);
  ClearZoneState state;
  const WindowBuilder builder({.window = 4096, .generation_budget = 256, .recall_budget = 0});
  const Window first = builder.Build(Inputs(false), &state).value();
  EXPECT_EQ(first.first_clear_turn, 0);
  Filler(1500, 20);  // the store drops its oldest turns
  ASSERT_GT(store_.n_dropped_turns(), 0);
  const Window second = builder.Build(Inputs(false), &state).value();
  EXPECT_TRUE(second.slid);
  EXPECT_EQ(second.first_clear_turn, store_.turns().front().number);
  EXPECT_EQ(second.tokens.size(), static_cast<size_t>(store_.n_tokens() + 1));
}

}  // namespace
}  // namespace kvault::memory

namespace kvault::memory {
namespace {

TEST(RecallAnnotationTest, SaysTheTurnsTheirDaysAndTheDistance) {
  TokenStore store(1000);
  const std::vector<int32_t> ten(10, 5);
  ASSERT_TRUE(store.Append(Role::kUser, ten, 0, 1683108000).ok());       // 3 May 2023 10:00
  ASSERT_TRUE(store.Append(Role::kAssistant, ten, 0, 1683111600).ok());  // 3 May 2023 11:00
  ASSERT_TRUE(store.Append(Role::kUser, ten, 0, 1683280800).ok());       // 5 May 2023
  ASSERT_TRUE(store.Append(Role::kUser, ten).ok());                      // time unknown
  ChunkHit hit{.first_pos = 0, .n_tokens = 20, .first_turn = 0, .last_turn = 1};
  EXPECT_EQ(RecallAnnotation(hit, 51254, &store),
            "[recalled from turns 0-1, 3 May 2023, about 51,234 tokens ago]");
  hit.last_turn = 2;
  EXPECT_EQ(RecallAnnotation(hit, 51254, &store),
            "[recalled from turns 0-2, 3 May 2023 to 5 May 2023, about 51,234 tokens ago]");
  EXPECT_EQ(RecallAnnotation(hit, 51254, nullptr),
            "[recalled from turns 0-2, about 51,234 tokens ago]");
  hit = {.first_pos = 30, .n_tokens = 10, .first_turn = 3, .last_turn = 3};
  EXPECT_EQ(RecallAnnotation(hit, 1040, &store), "[recalled from turn 3, about 1,000 tokens ago]");
  EXPECT_EQ(GroupedNumber(999), "999");
  EXPECT_EQ(GroupedNumber(1234567), "1,234,567");
}

}  // namespace
}  // namespace kvault::memory
