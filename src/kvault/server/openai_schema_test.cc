#include "kvault/server/openai_schema.h"

#include <gtest/gtest.h>

namespace kvault::server {
namespace {

Result<OpenAiRequest> Chat(const std::string& text) {
  Result<Json> body = ParseJson(text);
  if (!body.ok()) return body.status();
  return ParseChatCompletionRequest(*body);
}

std::string ErrorOf(const std::string& text) { return Chat(text).status().message(); }

TEST(OpenAiSchemaTest, ParsesAFullChatRequest) {
  Result<OpenAiRequest> request = Chat(R"({
    "model": "m", "stream": true, "stream_options": {"include_usage": true},
    "messages": [{"role": "developer", "content": "be brief"},
                 {"role": "user", "content": [{"type": "text", "text": "hi "},
                                              {"type": "text", "text": "there"}]}],
    "max_completion_tokens": 7, "temperature": 0, "top_p": 0.5, "seed": 3,
    "stop": "END", "n": 1, "conversation_id": "c1", "logit_bias": {"42": -100}})");
  ASSERT_TRUE(request.ok()) << request.status().ToString();
  EXPECT_TRUE(request->stream);
  EXPECT_TRUE(request->include_usage);
  const conversation::GenerateRequest& g = request->generate;
  ASSERT_EQ(g.messages.size(), 2u);
  EXPECT_EQ(g.messages[0].role, "system");
  EXPECT_EQ(g.messages[1].content, "hi there");
  EXPECT_EQ(g.max_tokens, 7);
  EXPECT_EQ(g.sampling.temperature, 0);
  EXPECT_EQ(g.sampling.top_p, 0.5f);
  EXPECT_EQ(g.sampling.seed, 3u);
  EXPECT_EQ(g.stop, std::vector<std::string>{"END"});
  EXPECT_EQ(g.conversation_id, "c1");
  EXPECT_TRUE(g.explicit_conversation);
  ASSERT_EQ(g.sampling.logit_bias.size(), 1u);
  EXPECT_EQ(g.sampling.logit_bias[0].token, 42);
}

TEST(OpenAiSchemaTest, PenaltiesTopKMinPAndJsonMode) {
  Result<OpenAiRequest> request = Chat(R"({
    "messages": [{"role": "user", "content": "x"}], "top_k": 40, "min_p": 0.05,
    "repeat_penalty": 1.1, "presence_penalty": 0.5, "frequency_penalty": -0.5,
    "response_format": {"type": "json_object"}})");
  ASSERT_TRUE(request.ok()) << request.status().ToString();
  const engine::SamplingParams& s = request->generate.sampling;
  EXPECT_EQ(s.top_k, 40);
  EXPECT_EQ(s.min_p, 0.05f);
  EXPECT_EQ(s.repeat_penalty, 1.1f);
  EXPECT_EQ(s.presence_penalty, 0.5f);
  EXPECT_EQ(s.frequency_penalty, -0.5f);
  EXPECT_EQ(s.grammar, engine::JsonObjectGrammar());

  const std::string one = R"("messages": [{"role": "user", "content": "x"}])";
  EXPECT_TRUE(Chat("{" + one + R"(, "response_format": {"type": "text"}})")
                  ->generate.sampling.grammar.empty());
  EXPECT_EQ(ErrorOf("{" + one + R"(, "presence_penalty": 3})"),
            "'presence_penalty' must be in [-2, 2]");
  EXPECT_EQ(ErrorOf("{" + one + R"(, "frequency_penalty": "x"})"),
            "'frequency_penalty' must be a number, got string");
  EXPECT_EQ(ErrorOf("{" + one + R"(, "repeat_penalty": 0})"),
            "'repeat_penalty' must be in (0, 10]");
  EXPECT_EQ(ErrorOf("{" + one + R"(, "top_k": -1})"), "'top_k' must be >= 0");
  EXPECT_EQ(ErrorOf("{" + one + R"(, "response_format": {"type": "yaml"}})"),
            "'response_format.type' must be 'text' or 'json_object'");
  EXPECT_EQ(
      ErrorOf("{" + one + R"(, "response_format": {"type": "json_schema"}})"),
      "response_format 'json_schema' is not supported; use 'json_object' or a GBNF 'grammar'");
  EXPECT_EQ(ErrorOf("{" + one + R"(, "grammar": "root ::= [a]",)" +
                    R"( "response_format": {"type": "json_object"}})"),
            "'response_format' cannot be combined with 'grammar'");
}

TEST(OpenAiSchemaTest, DefaultsFollowOpenAi) {
  Result<OpenAiRequest> request = Chat(R"({"messages": [{"role": "user", "content": "x"}]})");
  ASSERT_TRUE(request.ok());
  EXPECT_FALSE(request->stream);
  EXPECT_EQ(request->generate.sampling.temperature, 1.0f);
  EXPECT_EQ(request->generate.conversation_id, "default");
  EXPECT_FALSE(request->generate.explicit_conversation);
  EXPECT_FALSE(request->generate.max_tokens.has_value());
}

TEST(OpenAiSchemaTest, BadRequestsNameTheField) {
  EXPECT_EQ(ErrorOf("[]"), "the request body must be a JSON object");
  EXPECT_EQ(ErrorOf("{}"), "'messages' is required");
  EXPECT_EQ(ErrorOf(R"({"messages": []})"), "'messages' must not be empty");
  EXPECT_EQ(ErrorOf(R"({"messages": "hi"})"), "'messages' must be an array");
  EXPECT_EQ(ErrorOf(R"({"messages": [{"role": "wizard", "content": "x"}]})"),
            "'messages[0].role' must be system, developer, user, assistant or tool, not 'wizard'");
  EXPECT_EQ(ErrorOf(R"({"messages": [{"role": "user", "content": ""}]})"),
            "'messages[0].content' is empty");
  EXPECT_EQ(ErrorOf(R"({"messages": [{"role": "user"}]})"), "'messages[0].content' is empty");
  EXPECT_EQ(ErrorOf(R"({"messages": [{"role": 5, "content": "x"}]})"),
            "'messages[0].role' must be a string, got number");
  const std::string one = R"("messages": [{"role": "user", "content": "x"}])";
  EXPECT_EQ(ErrorOf("{" + one + R"(, "n": 2})"), "'n' must be 1 (kvault generates one choice)");
  EXPECT_EQ(ErrorOf("{" + one + R"(, "temperature": 3})"), "'temperature' must be in [0, 2]");
  EXPECT_EQ(ErrorOf("{" + one + R"(, "temperature": "hot"})"),
            "'temperature' must be a number, got string");
  EXPECT_EQ(ErrorOf("{" + one + R"(, "max_tokens": 0})"),
            "'max_tokens' must be a positive integer");
  EXPECT_EQ(ErrorOf("{" + one + R"(, "max_tokens": 1e30})"),
            "'max_tokens' must be an integer, got number");
  EXPECT_EQ(ErrorOf("{" + one + R"(, "stop": [1]})"), "'stop' must hold only strings");
  EXPECT_EQ(ErrorOf("{" + one + R"(, "stream": "yes"})"), "'stream' must be a boolean, got string");
  EXPECT_EQ(ErrorOf("{" + one + R"(, "conversation_id": ""})"),
            "'conversation_id' must be 1 to 256 bytes");
  EXPECT_EQ(ErrorOf("{" + one + R"(, "logit_bias": {"x": 1}})"),
            "'logit_bias' keys must be token ids, not 'x'");
}

TEST(OpenAiSchemaTest, CompletionNeedsAPrompt) {
  Result<Json> body = ParseJson(R"({"prompt": "Once"})");
  Result<OpenAiRequest> request = ParseCompletionRequest(*body);
  ASSERT_TRUE(request.ok());
  EXPECT_EQ(request->generate.raw_prompt.value(), "Once");
  EXPECT_FALSE(ParseCompletionRequest(*ParseJson("{}")).ok());
  EXPECT_FALSE(ParseCompletionRequest(*ParseJson(R"({"prompt": ["a", "b"]})")).ok());
}

TEST(OpenAiSchemaTest, ResponsesHaveOpenAisShape) {
  conversation::GenerateResult result;
  result.text = "hello";
  result.prompt_tokens = 10;
  result.cached_tokens = 4;
  result.completion_tokens = 2;
  result.finish_reason = engine::FinishReason::kLength;
  const ResponseMeta meta{"chatcmpl-1", "m", 123, "fp_x"};
  const Json response = ChatCompletionJson(meta, result);
  EXPECT_EQ(response["object"], "chat.completion");
  EXPECT_EQ(response["choices"][0]["message"]["content"], "hello");
  EXPECT_EQ(response["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(response["usage"]["total_tokens"], 12);
  EXPECT_EQ(response["usage"]["prompt_tokens_details"]["cached_tokens"], 4);
  const Json chunk = ChatChunkJson(meta, {{"content", "he"}}, nullptr, true);
  EXPECT_EQ(chunk["object"], "chat.completion.chunk");
  EXPECT_TRUE(chunk["choices"][0]["finish_reason"].is_null());
  EXPECT_TRUE(chunk.contains("usage") && chunk["usage"].is_null());
  EXPECT_FALSE(ChatChunkJson(meta, Json::object(), "stop", false).contains("usage"));
  EXPECT_TRUE(ChatUsageChunkJson(meta, result)["choices"].empty());
  EXPECT_EQ(NewResponseId("chatcmpl").size(), std::string("chatcmpl-").size() + 24);
}

}  // namespace
}  // namespace kvault::server
