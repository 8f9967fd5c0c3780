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

TEST(SearchTermsTest, CloseContentWordsBecomePhrasesWithTheWordsBetween) {
  const SearchQuery query = ParseSearchQuery("What was the code for my locker at the gym, Omar?");
  EXPECT_EQ(query.terms, (std::vector<std::string>{"code", "locker", "gym", "omar"}));
  EXPECT_EQ(query.phrases,
            (std::vector<std::string>{"code for my locker", "locker at the gym", "gym omar"}));
  EXPECT_EQ(ParseSearchQuery("my sister's dog's name").phrases,
            (std::vector<std::string>{"sister s dog", "dog s name"}));
  // Words further apart than kMaxGap, and a word next to itself, make no phrase.
  EXPECT_TRUE(ParseSearchQuery("garden and then of all of the lake").phrases.empty());
  EXPECT_TRUE(ParseSearchQuery("lake lake").phrases.empty());
}

TEST(SearchTermsTest, MatchExpressionQuotesEveryTermAndPhrase) {
  const SearchQuery query = ParseSearchQuery("NEAR(x y) AND \"cabin\" OR wifi*");
  EXPECT_EQ(MatchExpression(query),
            "\"near\" OR \"cabin\" OR \"wifi\" OR \"near x y and cabin\" OR \"cabin or wifi\"");
  EXPECT_EQ(MatchExpression(SearchQuery()), "");
}

TEST(SearchTermsTest, SeedNamesAreCapitalizedWordsInsideSentences) {
  const SearchQuery query = ParseSearchQuery("what did my sister adopt");
  EXPECT_EQ(SeedNames("Yesterday Ottoline adopted a ferret. Hi again! Today is Monday, 3 May. "
                      "My sister met Dr Okonkwo and Ottoline.",
                      query),
            (std::vector<std::string>{"ottoline", "okonkwo"}));
  EXPECT_TRUE(SeedNames("Sister. Lisbon", ParseSearchQuery("lisbon")).empty());
}

TEST(SearchTermsTest, PlainMatchExpressionKeepsEveryWordOnce) {
  EXPECT_EQ(PlainMatchExpression("What is my Boat's name? my boat"),
            "\"what\" OR \"is\" OR \"my\" OR \"boat\" OR \"s\" OR \"name\"");
  EXPECT_EQ(PlainMatchExpression("?!"), "");
}

}  // namespace
}  // namespace kvault::memory
