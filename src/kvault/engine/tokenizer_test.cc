#include "kvault/engine/tokenizer.h"

#include "tests/test_env.h"
#include <gtest/gtest.h>

#include "kvault/engine/chat_template.h"
#include "kvault/engine/model.h"

namespace kvault::engine {
namespace {

class TokenizerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    Result<std::unique_ptr<Model>> model =
        Model::Load({.path = testing::TestModelPath(), .vocab_only = true});
    ASSERT_TRUE(model.ok()) << model.status().ToString();
    model_ = std::move(model).value().release();
  }
  static void TearDownTestSuite() { delete model_; }

  static Model* model_;
};

Model* TokenizerTest::model_ = nullptr;

TEST_F(TokenizerTest, OrdinaryTextRoundTripsUnchanged) {
  Tokenizer tokenizer(*model_);
  const std::string texts[] = {
      "Hello, world! This is kvault.",
      "  leading spaces, trailing spaces  ",
      "Line one\nLine two\n\ttabbed",
      "Numbers 12345 and symbols #$%&*()[]{}",
      "Unicode: café, naïve, 日本語, emoji 🙂",
  };
  for (const std::string& text : texts) {
    Result<std::vector<llama_token>> tokens = tokenizer.Tokenize(text);
    ASSERT_TRUE(tokens.ok());
    EXPECT_FALSE(tokens->empty());
    EXPECT_EQ(tokenizer.Detokenize(*tokens), text);
  }
}

TEST_F(TokenizerTest, SpecialTokensParseOnlyWhenAsked) {
  Tokenizer tokenizer(*model_);
  const std::string text = "<|im_start|>user";
  Result<std::vector<llama_token>> plain = tokenizer.Tokenize(text);
  Result<std::vector<llama_token>> special = tokenizer.Tokenize(text, {.parse_special = true});
  ASSERT_TRUE(plain.ok() && special.ok());
  EXPECT_GT(plain->size(), special->size());
  EXPECT_EQ(tokenizer.Detokenize(*special, /*render_special=*/true), text);
}

TEST_F(TokenizerTest, StreamDecoderNeverSplitsACharacter) {
  Tokenizer tokenizer(*model_);
  const std::string text = "日本語のテキスト🙂 and more";
  Result<std::vector<llama_token>> tokens = tokenizer.Tokenize(text);
  ASSERT_TRUE(tokens.ok());
  StreamDecoder stream(&tokenizer);
  std::string joined;
  for (llama_token token : *tokens) {
    const std::string chunk = stream.Push(token);
    EXPECT_EQ(CompleteUtf8Prefix(chunk), chunk.size()) << "chunk ends inside a character";
    joined += chunk;
  }
  joined += stream.Flush();
  EXPECT_EQ(joined, text);
}

TEST(Utf8Test, CompletePrefixHoldsBackOpenSequences) {
  EXPECT_EQ(CompleteUtf8Prefix("abc"), 3u);
  EXPECT_EQ(CompleteUtf8Prefix("ab\xE6\x97"), 2u);      // 3-byte char missing its last byte
  EXPECT_EQ(CompleteUtf8Prefix("ab\xE6\x97\xA5"), 5u);  // complete
  EXPECT_EQ(CompleteUtf8Prefix("\xF0\x9F\x99"), 0u);    // 4-byte char missing one
  EXPECT_EQ(CompleteUtf8Prefix("a\x80"), 2u);           // stray continuation: let through
}

TEST_F(TokenizerTest, ModelTemplateIsUsedAndRendersChatMl) {
  ChatTemplate chat = ChatTemplate::ForModel(*model_);
  EXPECT_EQ(chat.name(), "model");  // the Qwen2 vocabulary carries its template
  const ChatMessage messages[] = {{"system", "Be brief."}, {"user", "hi"}};
  Result<std::string> prompt = chat.Apply(messages, /*add_generation_prompt=*/true);
  ASSERT_TRUE(prompt.ok());
  EXPECT_EQ(*prompt,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
            "<|im_start|>assistant\n");
}

TEST(ChatTemplateTest, UnknownNamedTemplateIsAnError) {
  EXPECT_FALSE(ChatTemplate::Named("no-such-template").ok());
  EXPECT_TRUE(ChatTemplate::Named("chatml").ok());
}

}  // namespace
}  // namespace kvault::engine
