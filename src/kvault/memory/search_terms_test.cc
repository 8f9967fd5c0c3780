#include "kvault/memory/search_terms.h"

#include <gtest/gtest.h>

namespace kvault::memory {
namespace {

TEST(SearchTermsTest, KeepsContentWordsOnceInOrder) {
  EXPECT_EQ(SearchTerms("What did I say my sister's dog's name was? The DOG, I mean."),
            (std::vector<std::string>{"sister", "dog", "name", "mean"}));
  EXPECT_EQ(SearchTerms("Do you remember what I told you earlier?"), std::vector<std::string>{});
  EXPECT_EQ(SearchTerms("wifi password 4417 café"),
            (std::vector<std::string>{"wifi", "password", "4417", "café"}));
  EXPECT_EQ(SearchTerms("alpha beta gamma delta", 2), (std::vector<std::string>{"alpha", "beta"}));
}

TEST(SearchTermsTest, MatchExpressionQuotesEveryTerm) {
  const std::vector<std::string> terms = SearchTerms("NEAR(x y) AND \"cabin\" OR wifi*");
  EXPECT_EQ(MatchExpression(terms), "\"near\" OR \"cabin\" OR \"wifi\"");
  EXPECT_EQ(MatchExpression({}), "");
}

}  // namespace
}  // namespace kvault::memory
