#include "kvault/testing/memory_dialogue.h"

#include <set>

#include <gtest/gtest.h>

namespace kvault::testing {
namespace {

MemoryDialogueParams SmallParams(uint64_t seed) {
  MemoryDialogueParams params;
  params.seed = seed;
  params.sessions = 30;
  params.turns_per_session = 20;
  return params;
}

TEST(MemoryDialogueTest, SameSeedSameDialogueAndRolesAlternate) {
  const MemoryDialogue a = GenerateMemoryDialogue(SmallParams(5));
  const MemoryDialogue b = GenerateMemoryDialogue(SmallParams(5));
  const MemoryDialogue c = GenerateMemoryDialogue(SmallParams(6));
  ASSERT_EQ(a.turns.size(), b.turns.size());
  for (size_t i = 0; i < a.turns.size(); ++i) {
    EXPECT_EQ(a.turns[i].text, b.turns[i].text);
    EXPECT_EQ(a.turns[i].role, i % 2 == 0 ? memory::Role::kUser : memory::Role::kAssistant);
    if (i > 0) EXPECT_GE(a.turns[i].unix_seconds, a.turns[i - 1].unix_seconds);
  }
  EXPECT_NE(a.questions[0].question + a.turns[5].text, c.questions[0].question + c.turns[5].text);
}

TEST(MemoryDialogueTest, QuestionsOfEachKindWithTheirEvidence) {
  const MemoryDialogueParams params = SmallParams(1);
  const MemoryDialogue dialogue = GenerateMemoryDialogue(params);
  std::map<QuestionKind, int> counts;
  for (const EvidenceQuestion& q : dialogue.questions) {
    ++counts[q.kind];
    EXPECT_FALSE(q.distractors.empty()) << q.question;
    for (size_t e : q.evidence) {
      ASSERT_LT(e, dialogue.turns.size());
      EXPECT_EQ(dialogue.turns[e].role, memory::Role::kUser);
    }
    switch (q.kind) {
      case QuestionKind::kNone: EXPECT_TRUE(q.evidence.empty()) << q.question; break;
      case QuestionKind::kSingle:
        ASSERT_EQ(q.evidence.size(), 1u) << q.question;
        // Stated indirectly: the answer is in the statement, never in the question.
        EXPECT_NE(dialogue.turns[q.evidence[0]].text.find(q.answer), std::string::npos);
        EXPECT_EQ(q.question.find(q.answer), std::string::npos);
        break;
      case QuestionKind::kMulti: {
        ASSERT_GE(q.evidence.size(), 2u) << q.question;
        // Sessions apart: later turns are at least two days after the first.
        EXPECT_GE(dialogue.turns[q.evidence.back()].unix_seconds -
                      dialogue.turns[q.evidence.front()].unix_seconds,
                  2 * 86400)
            << q.question;
        break;
      }
      case QuestionKind::kTemporal: {
        // The session's opening message, which holds the date, is evidence.
        ASSERT_EQ(q.evidence.size(), 2u) << q.question;
        EXPECT_NE(dialogue.turns[q.evidence[0]].text.find("Today is"), std::string::npos);
        break;
      }
    }
  }
  EXPECT_EQ(counts[QuestionKind::kSingle], params.single);
  EXPECT_EQ(counts[QuestionKind::kMulti], params.multi);
  EXPECT_EQ(counts[QuestionKind::kTemporal], params.temporal);
  EXPECT_EQ(counts[QuestionKind::kNone], params.none);
}

TEST(MemoryDialogueTest, DateTextIsReadable) {
  EXPECT_EQ(DateText(1683072000), "Wednesday, 3 May 2023");
  EXPECT_EQ(DateText(1673258400), "Monday, 9 January 2023");
}

}  // namespace
}  // namespace kvault::testing
