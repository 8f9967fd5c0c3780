#include "kvault/engine/grammar_check.h"

#include <string>

#include <gtest/gtest.h>

#include "kvault/engine/sampler.h"

namespace kvault::engine {
namespace {

TEST(GrammarCheckTest, OrdinaryGrammarsPass) {
  EXPECT_TRUE(CheckGrammarText("root ::= \"yes\" | \"no\"").ok());
  EXPECT_TRUE(CheckGrammarText("root ::= ( [a-z] ( \"(\" | \")\" | [()] ) )+ # a ) comment").ok());
  EXPECT_TRUE(CheckGrammarText("root ::= \"\\\"(\" x\nx ::= [\\]]").ok());
}

TEST(GrammarCheckTest, DeepNestingIsRefusedBeforeTheParserRecursesIntoIt) {
  const std::string deep =
      "root ::= " + std::string(100000, '(') + "\"a\"" + std::string(100000, ')');
  Status status = CheckGrammarText(deep);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(status.detail(), ErrorDetail::kInvalidGrammar);
  std::string ok_depth = "root ::= " + std::string(kMaxGrammarDepth, '(') + "\"a\"" +
                         std::string(kMaxGrammarDepth, ')');
  EXPECT_TRUE(CheckGrammarText(ok_depth).ok());
  EXPECT_FALSE(CheckGrammarText("root ::= (" + ok_depth.substr(9) + ")").ok());
}

TEST(GrammarCheckTest, EmptyCharacterRangesAreRefused) {
  EXPECT_FALSE(CheckGrammarText("root ::= [z-a]").ok());
  EXPECT_FALSE(CheckGrammarText("root ::= \"x\" [b-a]").ok());
  EXPECT_FALSE(CheckGrammarText("root ::= [^0-9\\x7f-\\x20]").ok());
  EXPECT_TRUE(CheckGrammarText("root ::= [a-z0-9_\\-] [\\x00-\\x1f] [a-a] [-a]").ok());
  EXPECT_TRUE(CheckGrammarText("root ::= [\u00e0-\u00ff\U0001F600-\U0001F64F]").ok());
  EXPECT_TRUE(CheckGrammarText(std::string(JsonObjectGrammar())).ok());
}

TEST(GrammarCheckTest, UnbalancedOrUnterminatedOrOversizedTextIsRefused) {
  EXPECT_FALSE(CheckGrammarText("root ::= (\"a\"").ok());
  EXPECT_FALSE(CheckGrammarText("root ::= \"a\")").ok());
  EXPECT_FALSE(CheckGrammarText("root ::= \"a").ok());
  EXPECT_FALSE(CheckGrammarText("root ::= [a-").ok());
  EXPECT_FALSE(CheckGrammarText(std::string("root ::= \"a\0\"", 13)).ok());
  EXPECT_FALSE(CheckGrammarText("root ::= \"" + std::string(kMaxGrammarBytes, 'a') + "\"").ok());
}

}  // namespace
}  // namespace kvault::engine
