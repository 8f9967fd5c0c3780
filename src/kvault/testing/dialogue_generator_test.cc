#include "kvault/testing/dialogue_generator.h"

#include <algorithm>
#include <cctype>
#include <set>
#include <sstream>

#include <gtest/gtest.h>

namespace kvault::testing {
namespace {

std::string Lower(std::string text) {
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

TEST(DialogueGeneratorTest, SameSeedSameDialogueAndRolesAlternate) {
  DialogueGenerator a(42), b(42), c(43);
  bool differs = false;
  for (int i = 0; i < 200; ++i) {
    const DialogueTurn turn = a.NextTurn();
    EXPECT_EQ(turn.role, i % 2 == 0 ? memory::Role::kUser : memory::Role::kAssistant);
    EXPECT_FALSE(turn.text.empty());
    EXPECT_EQ(turn.text, b.NextTurn().text);
    differs = differs || turn.text != c.NextTurn().text;
  }
  EXPECT_TRUE(differs);
}

TEST(DialogueGeneratorTest, VocabularyVaries) {
  DialogueGenerator generator(1);
  std::set<std::string> words;
  for (int i = 0; i < 2000; ++i) {
    std::istringstream stream(Lower(generator.NextTurn().text));
    for (std::string word; stream >> word;) words.insert(word);
  }
  EXPECT_GT(words.size(), 400u);
}

TEST(DialogueGeneratorTest, FactsHaveUniqueSubjectsAndQuestionsNeverHoldTheAnswer) {
  DialogueGenerator generator(7);
  std::set<std::string> statements, questions;
  for (int i = 0; i < 150; ++i) {
    const PlantedFact fact = generator.NextFact();
    EXPECT_NE(fact.statement.find(fact.answer), std::string::npos) << fact.statement;
    EXPECT_EQ(Lower(fact.question).find(Lower(fact.answer)), std::string::npos) << fact.question;
    EXPECT_TRUE(questions.insert(fact.question).second) << "subject reused: " << fact.question;
    statements.insert(fact.statement);
  }
  EXPECT_EQ(statements.size(), 150u);
  EXPECT_GE(DialogueGenerator::SubjectCount(), 150u);
  EXPECT_FALSE(generator.RandomQuestion().empty());
}

}  // namespace
}  // namespace kvault::testing
