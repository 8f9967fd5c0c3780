#include "kvault/conversation/text_normalizer.h"

#include <gtest/gtest.h>

namespace kvault::conversation {
namespace {

TEST(TextNormalizerTest, RulesReplaceInOrderAndOnlyForTheirModel) {
  const std::vector<NormalizeRule> rules = ParseNormalizeRules(ParseJson(R"json([
        {"pattern": "\\d{4}-\\d{2}-\\d{2}", "placeholder": "<date>"},
        {"pattern": "request id [0-9a-f]+", "placeholder": "request id <id>"},
        {"pattern": "(Mara|Ivo)", "placeholder": "[\\1]", "model": "qwen"}
      ])json")
                                                                   .value())
                                               .value();
  std::unique_ptr<TextNormalizer> tiny = TextNormalizer::Create(rules, "kvault-tiny-42").value();
  EXPECT_EQ(tiny->rules(), 2u);
  EXPECT_EQ(tiny->Apply("Today is 2026-12-03 (request id 9f3a). Mara says hi. 2026-12-04"),
            "Today is <date> (request id <id>). Mara says hi. <date>");
  EXPECT_EQ(tiny->replacements(), 3);
  std::unique_ptr<TextNormalizer> qwen = TextNormalizer::Create(rules, "qwen2.5-7b").value();
  EXPECT_EQ(qwen->Apply("Mara and Ivo"), "[Mara] and [Ivo]");
  std::vector<engine::ChatMessage> messages = {{"system", "Date: 2026-01-01"}, {"user", "hi"}};
  tiny->ApplyTo(&messages);
  EXPECT_EQ(messages[0].content, "Date: <date>");
}

TEST(TextNormalizerTest, BadRulesAreRefusedNamingTheRule) {
  const auto error = [](const char* json) {
    Result<std::vector<NormalizeRule>> rules = ParseNormalizeRules(ParseJson(json).value());
    if (!rules.ok()) return rules.status().message();
    Result<std::unique_ptr<TextNormalizer>> n = TextNormalizer::Create(*rules, "m");
    return n.ok() ? std::string() : n.status().message();
  };
  EXPECT_NE(error(R"json([{"pattern": "(unclosed", "placeholder": "x"}])json")
                .find("rule 1: bad pattern"),
            std::string::npos);
  EXPECT_NE(
      error(R"([{"pattern": "a", "placeholder": "x"}, {"pattern": "b", "placeholder": "\\3"}])")
          .find("rule 2: bad placeholder"),
      std::string::npos);
  EXPECT_NE(error(R"([{"pattern": "a"}])").find("'placeholder' is required"), std::string::npos);
  EXPECT_NE(error(R"([{"pattern": "a", "placeholder": "b", "flags": "i"}])").find("unknown key"),
            std::string::npos);
  EXPECT_NE(error(R"({"pattern": "a"})").find("JSON array"), std::string::npos);
}

}  // namespace
}  // namespace kvault::conversation
