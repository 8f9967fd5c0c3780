#include "kvault/memory/thesaurus.h"

#include <algorithm>
#include <filesystem>

#include <gtest/gtest.h>

namespace kvault::memory {
namespace {

// Debian's wordnet-base (scripts/bootstrap.sh installs it).
constexpr const char* kWordNetDir = "/usr/share/wordnet";

class ThesaurusTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(std::string(kWordNetDir) + "/index.noun")) {
      GTEST_SKIP() << "no WordNet in " << kWordNetDir << " (apt-get install wordnet-base)";
    }
    thesaurus_ = Thesaurus::Open(kWordNetDir).value();
  }
  bool Relates(std::string_view word, std::string_view related) const {
    const std::vector<std::string> words = thesaurus_->Related(word, 64);
    return std::find(words.begin(), words.end(), related) != words.end();
  }
  std::unique_ptr<Thesaurus> thesaurus_;
};

TEST_F(ThesaurusTest, SynonymsOfTheFrequentSenses) {
  EXPECT_TRUE(Relates("car", "automobile"));
  EXPECT_FALSE(Relates("flat", "apartment"));  // sense 6 of "flat": too rare to take
  EXPECT_TRUE(Relates("movie", "film"));
  EXPECT_TRUE(Relates("doctor", "physician"));
  EXPECT_TRUE(Relates("kid", "child"));
}

TEST_F(ThesaurusTest, BroaderAndNarrowerWords) {
  EXPECT_TRUE(Relates("wife", "spouse"));              // hypernym
  EXPECT_TRUE(Relates("sailboat", "sailing vessel"));  // not "boat": WordNet as it is
  EXPECT_TRUE(Relates("car", "motor vehicle"));        // multi-word lemmas come with spaces
}

TEST_F(ThesaurusTest, InflectedWordsFindTheirBaseForm) {
  EXPECT_TRUE(Relates("bought", "buy"));  // verb.exc
  EXPECT_TRUE(Relates("bought", "purchase"));
  EXPECT_TRUE(Relates("sisters", "sister"));  // suffix rule
}

TEST_F(ThesaurusTest, UnknownWordsAndTheCap) {
  EXPECT_TRUE(thesaurus_->Related("qwzxv").empty());
  EXPECT_LE(thesaurus_->Related("dog", 5).size(), 5u);
  EXPECT_FALSE(Relates("movie", "movie"));
}

TEST_F(ThesaurusTest, KnowsEverydayWordsNotNames) {
  EXPECT_TRUE(thesaurus_->Knows("yesterday"));
  EXPECT_TRUE(thesaurus_->Knows("honestly"));
  EXPECT_TRUE(thesaurus_->Knows("adopted"));
  EXPECT_FALSE(thesaurus_->Knows("ottoline"));
}

TEST(ThesaurusOpenTest, MissingFilesAreNotFound) {
  EXPECT_FALSE(Thesaurus::Open("/nonexistent-wordnet").ok());
}

}  // namespace
}  // namespace kvault::memory
