// Engine tests against real llama.cpp and the generated tiny model.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "tests/test_env.h"
#include <gtest/gtest.h>

#include "kvault/engine/batch_decoder.h"
#include "kvault/engine/completion.h"
#include "kvault/engine/context.h"
#include "kvault/engine/model.h"
#include "kvault/engine/sampler.h"
#include "kvault/engine/tokenizer.h"

namespace kvault::engine {
namespace {

class EngineTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    Result<std::unique_ptr<Model>> model = Model::Load({.path = testing::TestModelPath()});
    ASSERT_TRUE(model.ok()) << model.status().ToString();
    model_ = std::move(model).value().release();
  }
  static void TearDownTestSuite() { delete model_; }

  std::unique_ptr<Context> NewContext(uint32_t n_seq_max = 4, uint32_t n_ctx = 1024) {
    ContextParams params;
    params.n_ctx = n_ctx;
    params.n_seq_max = n_seq_max;
    params.n_threads = 2;
    Result<std::unique_ptr<Context>> context = Context::Create(*model_, params);
    EXPECT_TRUE(context.ok()) << context.status().ToString();
    return std::move(context).value();
  }

  std::vector<llama_token> Tokens(const std::string& text) {
    return Tokenizer(*model_).Tokenize(text).value();
  }

  std::unique_ptr<Sampler> Greedy() { return Sampler::Create(*model_, {.temperature = 0}).value(); }

  static Model* model_;
};

Model* EngineTest::model_ = nullptr;

TEST_F(EngineTest, ModelInfoMatchesTheTinyPreset) {
  const ModelInfo& info = model_->info();
  EXPECT_EQ(info.architecture, "qwen2");
  EXPECT_EQ(info.n_layer, 4);
  EXPECT_EQ(info.n_embd, 256);
  EXPECT_EQ(info.n_head, 4);
  EXPECT_EQ(info.n_head_kv, 2);
  EXPECT_EQ(info.n_vocab, 151936);
}

TEST_F(EngineTest, MissingModelIsNotFound) {
  Result<std::unique_ptr<Model>> model = Model::Load({.path = "/nonexistent/model.gguf"});
  ASSERT_FALSE(model.ok());
  EXPECT_EQ(model.status().code(), StatusCode::kNotFound);
  EXPECT_NE(model.status().message().find("/nonexistent/model.gguf"), std::string::npos);
}

TEST_F(EngineTest, NonGgufAndTruncatedFilesAreInvalidArguments) {
  const std::string dir = std::filesystem::temp_directory_path().string();
  const std::string text_file = dir + "/kvault_not_a_model.gguf";
  std::ofstream(text_file) << "this is not a model";
  EXPECT_EQ(Model::Load({.path = text_file}).status().code(), StatusCode::kInvalidArgument);

  // The first 1 MiB of a real model: a valid header whose tensor data is missing.
  const std::string truncated = dir + "/kvault_truncated.gguf";
  std::filesystem::copy_file(testing::TestModelPath(), truncated,
                             std::filesystem::copy_options::overwrite_existing);
  std::filesystem::resize_file(truncated, 1 << 20);
  Result<std::unique_ptr<Model>> model = Model::Load({.path = truncated});
  EXPECT_EQ(model.status().code(), StatusCode::kInvalidArgument) << model.status().ToString();
  std::filesystem::remove(text_file);
  std::filesystem::remove(truncated);
}

// Two sequences decoded together (their prompts in one llama_decode call, then one call per
// step carrying both sequences' tokens) against each decoded alone, under greedy sampling.
//
// Stated tolerance: llama.cpp's CPU matmul picks its kernel by batch width (llamafile's sgemm
// for two or more columns, a dot-product loop for one), so a token decoded beside another is
// computed with a different summation order than alone; the tiny model's logits then differ
// by a few 1e-3 (cell placement, by contrast, changes nothing: see the export test). A
// random-weight model has many near-ties, so a free-running comparison would flip on noise.
// The batched run is therefore fed the alone run's tokens (teacher forcing), and at every
// step: all logits agree within kLogitTolerance, and the batched argmax equals the alone
// token wherever the alone run's top-2 margin exceeds 2 * kLogitTolerance (nearly all steps;
// the count is checked).
TEST_F(EngineTest, BatchedSequencesGenerateWhatEachGeneratesAlone) {
  constexpr float kLogitTolerance = 0.05f;
  constexpr int kSteps = 24;
  const std::vector<llama_token> prompts[2] = {Tokens("The quick brown fox jumps over"),
                                               Tokens("Once upon a time, in a land far away,")};
  // Alone: each sequence in its own fresh context, greedy, keeping every step's logits.
  std::vector<std::vector<float>> alone_logits[2];
  std::vector<llama_token> alone_tokens[2];
  for (int s = 0; s < 2; ++s) {
    std::unique_ptr<Context> context = NewContext();
    BatchDecoder decoder(context.get());
    SequenceChunk chunk{0, 0, prompts[s], true};
    ASSERT_TRUE(decoder.Decode({&chunk, 1}).ok());
    for (int step = 0; step < kSteps; ++step) {
      const std::span<const float> logits = context->Logits(decoder.OutputIndex(0));
      alone_logits[s].emplace_back(logits.begin(), logits.end());
      alone_tokens[s].push_back(static_cast<llama_token>(
          std::max_element(logits.begin(), logits.end()) - logits.begin()));
      chunk = {0,
               chunk.first_pos + static_cast<llama_pos>(chunk.tokens.size()),
               {&alone_tokens[s].back(), 1},
               true};
      ASSERT_TRUE(decoder.Decode({&chunk, 1}).ok());
    }
  }
  EXPECT_NE(alone_tokens[0], alone_tokens[1]);

  // Together: one context, both sequences in every llama_decode call.
  std::unique_ptr<Context> context = NewContext();
  BatchDecoder decoder(context.get());
  std::vector<SequenceChunk> chunks = {{0, 0, prompts[0], true}, {1, 0, prompts[1], true}};
  ASSERT_TRUE(decoder.Decode(chunks).ok());
  int n_margin_checked = 0;
  for (int step = 0; step < kSteps; ++step) {
    for (int s = 0; s < 2; ++s) {
      const std::span<const float> logits = context->Logits(decoder.OutputIndex(s));
      const std::vector<float>& expected = alone_logits[s][step];
      ASSERT_EQ(logits.size(), expected.size());
      float max_diff = 0;
      for (size_t i = 0; i < logits.size(); ++i) {
        max_diff = std::max(max_diff, std::fabs(logits[i] - expected[i]));
      }
      EXPECT_LE(max_diff, kLogitTolerance) << "sequence " << s << " step " << step;
      std::vector<float> top2(expected);
      std::nth_element(top2.begin(), top2.begin() + 1, top2.end(), std::greater<float>());
      if (top2[0] - top2[1] > 2 * kLogitTolerance) {
        ++n_margin_checked;
        const auto best = std::max_element(logits.begin(), logits.end()) - logits.begin();
        EXPECT_EQ(best, alone_tokens[s][step]) << "sequence " << s << " step " << step;
      }
    }
    chunks = {
        {0, static_cast<llama_pos>(prompts[0].size()) + step, {&alone_tokens[0][step], 1}, true},
        {1, static_cast<llama_pos>(prompts[1].size()) + step, {&alone_tokens[1][step], 1}, true}};
    ASSERT_TRUE(decoder.Decode(chunks).ok());
  }
  EXPECT_GE(n_margin_checked, 2 * kSteps * 3 / 4) << "too few steps with a clear greedy choice";
}

// Export -> clear -> import into another sequence id -> decode: bit-identical next-token
// logits to the run that never left the device. Cells are placed identically (the import
// lands in cells 0..n-1 of an empty cache, as the original did), so exact equality is
// expected and checked with memcmp.
TEST_F(EngineTest, ExportClearImportGivesBitIdenticalLogits) {
  const std::vector<llama_token> prompt = Tokens("Remember this sentence exactly as it is.");
  const llama_token next = Tokens(" Then")[0];
  const llama_pos n = static_cast<llama_pos>(prompt.size());

  std::unique_ptr<Context> reference = NewContext();
  BatchDecoder reference_decoder(reference.get());
  const SequenceChunk prefill{0, 0, prompt, false};
  ASSERT_TRUE(reference_decoder.Decode({&prefill, 1}).ok());
  const SequenceChunk step{0, n, {&next, 1}, true};
  ASSERT_TRUE(reference_decoder.Decode({&step, 1}).ok());
  const std::span<const float> ref_span = reference->Logits(reference_decoder.OutputIndex(0));
  const std::vector<float> expected(ref_span.begin(), ref_span.end());

  std::unique_ptr<Context> context = NewContext();
  BatchDecoder decoder(context.get());
  ASSERT_TRUE(decoder.Decode({&prefill, 1}).ok());
  Result<std::vector<uint8_t>> state = context->ExportSequence(0);
  ASSERT_TRUE(state.ok()) << state.status().ToString();
  EXPECT_GT(state->size(), 0u);
  context->ClearAll();
  EXPECT_EQ(context->SequenceLength(0), 0);

  ASSERT_TRUE(context->ImportSequence(2, *state).ok());
  EXPECT_EQ(context->SequenceLength(2), n);
  EXPECT_EQ(context->SequenceLength(0), 0);
  const SequenceChunk resumed{2, n, {&next, 1}, true};
  ASSERT_TRUE(decoder.Decode({&resumed, 1}).ok());
  const std::span<const float> actual = context->Logits(decoder.OutputIndex(0));
  ASSERT_EQ(actual.size(), expected.size());
  EXPECT_EQ(std::memcmp(actual.data(), expected.data(), expected.size() * sizeof(float)), 0)
      << "logits after import differ from the run that never left the device";
}

TEST_F(EngineTest, ImportOfGarbageIsRejectedNotCrashing) {
  std::unique_ptr<Context> context = NewContext();
  std::vector<uint8_t> garbage(4096, 0x5a);
  EXPECT_FALSE(context->ImportSequence(0, garbage).ok());
  EXPECT_FALSE(context->ImportSequence(99, garbage).ok());  // sequence id out of range
}

TEST_F(EngineTest, RemoveAndCopySequenceRanges) {
  std::unique_ptr<Context> context = NewContext();
  BatchDecoder decoder(context.get());
  const std::vector<llama_token> prompt = Tokens("one two three four five six seven eight");
  const SequenceChunk prefill{0, 0, prompt, true};
  ASSERT_TRUE(decoder.Decode({&prefill, 1}).ok());
  const auto n = static_cast<llama_pos>(prompt.size());

  context->CopySequence(0, 1, 0, 4);
  EXPECT_EQ(context->SequenceLength(1), 4);
  ASSERT_TRUE(context->RemoveTokens(0, 4, -1).ok());
  EXPECT_EQ(context->SequenceLength(0), 4);
  EXPECT_LT(context->SequenceLength(0), n);
  context->ClearSequence(1);
  EXPECT_EQ(context->SequenceLength(1), 0);
  EXPECT_FALSE(context->RemoveTokens(-5, 0, 1).ok());
}

TEST_F(EngineTest, SeededSamplingIsReproducibleAndGreedyIsArgmax) {
  const std::vector<llama_token> prompt = Tokens("A seeded draw");
  auto run = [&](uint32_t seed) {
    std::unique_ptr<Context> context = NewContext();
    std::unique_ptr<Sampler> sampler =
        Sampler::Create(*model_, {.temperature = 1.0f, .top_k = 40, .top_p = 0.9f, .seed = seed})
            .value();
    CompletionParams params;
    params.n_predict = 12;
    params.stop_at_end_of_generation = false;
    return Complete(*context, *sampler, Tokenizer(*model_), prompt, params).value();
  };
  EXPECT_EQ(run(7).tokens, run(7).tokens);
  EXPECT_NE(run(7).tokens, run(8).tokens);

  std::unique_ptr<Context> context = NewContext();
  std::unique_ptr<Sampler> greedy = Greedy();
  CompletionParams params;
  params.n_predict = 1;
  CompletionResult result = Complete(*context, *greedy, Tokenizer(*model_), prompt, params).value();
  const auto best = std::max_element(result.first_logits.begin(), result.first_logits.end());
  EXPECT_EQ(result.tokens[0], static_cast<llama_token>(best - result.first_logits.begin()));
}

TEST_F(EngineTest, SamplingParametersAreValidated) {
  EXPECT_FALSE(Sampler::Create(*model_, {.temperature = NAN}).ok());
  EXPECT_FALSE(Sampler::Create(*model_, {.top_p = 0.0f}).ok());
  EXPECT_FALSE(Sampler::Create(*model_, {.top_k = -1}).ok());
  SamplingParams bad_bias;
  bad_bias.logit_bias.push_back({999999999, 1.0f});
  EXPECT_FALSE(Sampler::Create(*model_, bad_bias).ok());
  SamplingParams bad_grammar;
  bad_grammar.grammar = "root ::= (";
  EXPECT_FALSE(Sampler::Create(*model_, bad_grammar).ok());
}

TEST_F(EngineTest, LogitBiasForcesAToken) {
  const llama_token forced = Tokens(" banana")[0];
  SamplingParams params{.temperature = 0};
  params.logit_bias.push_back({forced, 1000.0f});
  std::unique_ptr<Sampler> sampler = Sampler::Create(*model_, params).value();
  std::unique_ptr<Context> context = NewContext();
  CompletionParams completion;
  completion.n_predict = 3;
  completion.stop_at_end_of_generation = false;
  CompletionResult result =
      Complete(*context, *sampler, Tokenizer(*model_), Tokens("Fruit:"), completion).value();
  EXPECT_EQ(result.tokens, std::vector<llama_token>(3, forced));
}

TEST_F(EngineTest, PresencePenaltyStopsAForcedRepeat) {
  // Two tokens far above all others, one 500 above the other: greedy picks it every time,
  // unless seen tokens are penalized by more than that: then the other one comes next.
  const llama_token a = Tokens(" banana")[0];
  const llama_token b = Tokens(" cherry")[0];
  auto run = [&](float presence_penalty) {
    SamplingParams params{.temperature = 0};
    params.logit_bias = {{a, 1000.0f}, {b, 500.0f}};
    params.presence_penalty = presence_penalty;
    std::unique_ptr<Sampler> sampler = Sampler::Create(*model_, params).value();
    std::unique_ptr<Context> context = NewContext();
    CompletionParams completion;
    completion.n_predict = 4;
    completion.stop_at_end_of_generation = false;
    return Complete(*context, *sampler, Tokenizer(*model_), Tokens("Fruit:"), completion)
        .value()
        .tokens;
  };
  EXPECT_EQ(run(0), std::vector<llama_token>(4, a));
  const std::vector<llama_token> penalized = run(1000);
  ASSERT_EQ(penalized.size(), 4u);
  EXPECT_EQ(penalized[0], a);
  EXPECT_EQ(penalized[1], b);
  EXPECT_FALSE(Sampler::Create(*model_, {.repeat_penalty = 0.0f}).ok());
}

TEST_F(EngineTest, JsonObjectGrammarParsesAndConstrains) {
  SamplingParams params{.temperature = 0};
  params.grammar = std::string(JsonObjectGrammar());
  std::unique_ptr<Sampler> sampler = Sampler::Create(*model_, params).value();
  std::unique_ptr<Context> context = NewContext();
  CompletionParams completion;
  completion.n_predict = 24;
  const Tokenizer tokenizer(*model_);
  CompletionResult result =
      Complete(*context, *sampler, tokenizer, Tokens("JSON:"), completion).value();
  const std::string text = tokenizer.Detokenize(result.tokens, /*render_special=*/false);
  ASSERT_FALSE(text.empty());
  EXPECT_EQ(text[0], '{') << text;
  // Whatever the model prefers, no control character can appear outside the grammar's ws.
  for (char c : text) {
    EXPECT_TRUE(static_cast<unsigned char>(c) >= 0x20 || c == '\n' || c == '\t') << text;
  }
}

TEST_F(EngineTest, DecodeBeyondTheCacheIsResourceExhausted) {
  std::unique_ptr<Context> context = NewContext(/*n_seq_max=*/1, /*n_ctx=*/256);
  BatchDecoder decoder(context.get());
  std::vector<llama_token> prompt;
  const std::vector<llama_token> words = Tokens(" word");
  while (prompt.size() < 200) prompt.push_back(words[0]);
  const SequenceChunk first{0, 0, prompt, false};
  ASSERT_TRUE(decoder.Decode({&first, 1}).ok());
  const SequenceChunk second{0, 200, prompt, false};
  Status status = decoder.Decode({&second, 1});
  EXPECT_EQ(status.code(), StatusCode::kResourceExhausted) << status.ToString();
}

}  // namespace
}  // namespace kvault::engine
