// PlanHistory, case by case of the rule in history_plan.h, on a token store whose turns carry
// digests (no model needed: the plan compares roles and digests only).
#include "kvault/conversation/history_plan.h"

#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace kvault::conversation {
namespace {

using memory::Role;

// A message by role and a short text; its digest is the text's hash.
struct Msg {
  Role role;
  std::string text;
};

memory::TurnDigest Digest(const Msg& m) { return {m.role, std::hash<std::string>{}(m.text) | 1}; }

class HistoryPlanTest : public ::testing::Test {
 protected:
  void Store(const std::vector<Msg>& turns) {
    for (const Msg& m : turns) {
      const std::vector<int32_t> tokens = {1, 2, 3};
      ASSERT_TRUE(store_.Append(m.role, tokens, Digest(m).text_hash).ok());
    }
  }
  HistoryPlan Plan(const std::vector<Msg>& request, HistoryMode mode = HistoryMode::kAuto,
                   int64_t unanswered = -1) {
    digests_.clear();
    for (const Msg& m : request) digests_.push_back(Digest(m));
    return PlanHistory({&store_, digests_, mode, unanswered});
  }

  const Msg sys{Role::kSystem, "You are terse."};
  const Msg u1{Role::kUser, "My name is Alice."};
  const Msg a1{Role::kAssistant, "Hello Alice."};
  const Msg u2{Role::kUser, "I live in New York."};
  const Msg a2{Role::kAssistant, "Nice."};
  const Msg u3{Role::kUser, "What is my name?"};
  memory::TokenStore store_{1 << 20};
  std::vector<memory::TurnDigest> digests_;
};

TEST_F(HistoryPlanTest, AFirstRequestAppendsEverything) {
  HistoryPlan plan = Plan({sys, u1});
  EXPECT_EQ(plan.action, HistoryAction::kAppended);
  EXPECT_EQ(plan.first_new_message, 0u);
  EXPECT_FALSE(plan.replaces());
}

TEST_F(HistoryPlanTest, AWholeHistoryResentWithANewMessageAppendsOnlyTheNewOne) {
  Store({sys, u1, a1});
  HistoryPlan plan = Plan({sys, u1, a1, u2});
  EXPECT_EQ(plan.action, HistoryAction::kAppended);
  EXPECT_EQ(plan.first_new_message, 3u);
  EXPECT_EQ(plan.keep_turns, 3);
}

TEST_F(HistoryPlanTest, TheSystemPromptWithANewMessageIsADelta) {
  Store({sys, u1, a1, u2, a2});
  HistoryPlan plan = Plan({sys, u3});
  EXPECT_EQ(plan.action, HistoryAction::kAppended);
  EXPECT_EQ(plan.reason, "delta");
  EXPECT_FALSE(plan.replaces());
  EXPECT_EQ(plan.first_new_message, 1u);  // the repeated system message is not stored again
}

TEST_F(HistoryPlanTest, TheSecondDeltaAfterOneTurnIsStillADelta) {
  Store({sys, u1, a1});  // after the first request of the example
  HistoryPlan plan = Plan({sys, u2});
  EXPECT_EQ(plan.action, HistoryAction::kAppended);
  EXPECT_FALSE(plan.replaces());
}

TEST_F(HistoryPlanTest, ANewMessageWithoutSystemPromptThatMatchesNothingIsADelta) {
  Store({sys, u1, a1, u2, a2});
  HistoryPlan plan = Plan({u3});
  EXPECT_EQ(plan.action, HistoryAction::kAppended);
  EXPECT_EQ(plan.first_new_message, 0u);
  EXPECT_FALSE(plan.replaces());
}

TEST_F(HistoryPlanTest, AnEditedTurnAfterAMatchedTurnReplacesFromTheEdit) {
  Store({sys, u1, a1, u2, a2});
  const Msg edited{Role::kUser, "I live in Boston."};
  HistoryPlan plan = Plan({sys, u1, a1, edited});
  EXPECT_EQ(plan.action, HistoryAction::kReplaced);
  EXPECT_EQ(plan.reason, "edit");
  EXPECT_EQ(plan.keep_turns, 3);
  EXPECT_EQ(plan.known_turns, 5);
  EXPECT_EQ(plan.first_new_message, 3u);
}

TEST_F(HistoryPlanTest, AHistoryWithoutItsLastReplyIsARegenerate) {
  Store({sys, u1, a1, u2, a2});
  HistoryPlan plan = Plan({sys, u1, a1, u2});
  EXPECT_EQ(plan.action, HistoryAction::kReplaced);
  EXPECT_EQ(plan.reason, "regenerate");
  EXPECT_EQ(plan.keep_turns, 4);
  EXPECT_EQ(plan.first_new_message, 4u);  // nothing new: u2 is answered again
}

TEST_F(HistoryPlanTest, AnEditedFirstMessageInAFullResendReplacesEverything) {
  Store({u1, a1, u2, a2});
  const Msg edited{Role::kUser, "My name is Bob."};
  HistoryPlan plan = Plan({edited, a1, u2, a2, u3});
  EXPECT_EQ(plan.action, HistoryAction::kReplaced);
  EXPECT_EQ(plan.keep_turns, 0);
  EXPECT_EQ(plan.first_new_message, 0u);
}

TEST_F(HistoryPlanTest, AnEditedFirstUserMessageAfterTheSystemPromptReplacesFromIt) {
  Store({sys, u1, a1});
  const Msg edited{Role::kUser, "My name is Bob."};
  HistoryPlan plan = Plan({sys, edited, a1});  // as many messages as the history
  EXPECT_EQ(plan.action, HistoryAction::kReplaced);
  EXPECT_EQ(plan.keep_turns, 1);
}

TEST_F(HistoryPlanTest, AppendModeNeverReplaces) {
  Store({sys, u1, a1, u2, a2});
  HistoryPlan plan = Plan({sys, u1, a1, u3}, HistoryMode::kAppend);
  EXPECT_EQ(plan.action, HistoryAction::kAppended);
  EXPECT_FALSE(plan.replaces());
  EXPECT_EQ(plan.first_new_message, 3u);
}

TEST_F(HistoryPlanTest, ReplaceModeReplacesWithoutEvidence) {
  Store({sys, u1, a1, u2, a2});
  HistoryPlan plan = Plan({sys, u3}, HistoryMode::kReplace);
  EXPECT_EQ(plan.action, HistoryAction::kReplaced);
  EXPECT_EQ(plan.keep_turns, 1);
  EXPECT_EQ(plan.first_new_message, 1u);
}

TEST_F(HistoryPlanTest, TheSameMessageAfterAnUnansweredTurnIsARetry) {
  Store({sys, u1, a1, u2});  // u2 never got its reply
  HistoryPlan plan = Plan({sys, u2}, HistoryMode::kAuto, /*unanswered=*/3);
  EXPECT_EQ(plan.action, HistoryAction::kRetried);
  EXPECT_FALSE(plan.replaces());
  EXPECT_EQ(plan.first_new_message, 2u);  // nothing stored again
}

TEST_F(HistoryPlanTest, AnotherMessageAfterAnUnansweredTurnSupersedesIt) {
  Store({sys, u1, a1, u2});
  HistoryPlan plan = Plan({sys, u3}, HistoryMode::kAuto, /*unanswered=*/3);
  EXPECT_EQ(plan.action, HistoryAction::kReplaced);
  EXPECT_EQ(plan.reason, "unanswered turn superseded");
  EXPECT_EQ(plan.keep_turns, 3);
  EXPECT_EQ(plan.first_new_message, 1u);
}

TEST_F(HistoryPlanTest, AResendThatIncludesTheUnansweredTurnAnswersIt) {
  Store({sys, u1, a1, u2});
  HistoryPlan plan = Plan({sys, u1, a1, u2}, HistoryMode::kAuto, /*unanswered=*/3);
  EXPECT_EQ(plan.action, HistoryAction::kRetried);
  EXPECT_FALSE(plan.replaces());
}

TEST_F(HistoryPlanTest, AResendThatLeavesTheUnansweredTurnOutReplacesIt) {
  Store({sys, u1, a1, u2});
  HistoryPlan plan = Plan({sys, u1, a1, u3}, HistoryMode::kAuto, /*unanswered=*/3);
  EXPECT_EQ(plan.action, HistoryAction::kReplaced);
  EXPECT_EQ(plan.keep_turns, 3);
  EXPECT_EQ(plan.reason, "unanswered turn superseded");
}

TEST_F(HistoryPlanTest, AppendedUserTurnsAreNotUnansweredAndADeltaKeepsThem) {
  Store({sys, u1, a1, u2});  // u2 stored by bulk ingestion: not a chat request's turn
  HistoryPlan plan = Plan({sys, u3});
  EXPECT_EQ(plan.action, HistoryAction::kAppended);
  EXPECT_FALSE(plan.replaces());
}

TEST_F(HistoryPlanTest, ModeNamesRoundTripAndUnknownOnesAreRefused) {
  EXPECT_EQ(HistoryModeFromName("append").value(), HistoryMode::kAppend);
  EXPECT_EQ(HistoryModeFromName("replace").value(), HistoryMode::kReplace);
  EXPECT_EQ(HistoryModeFromName("auto").value(), HistoryMode::kAuto);
  EXPECT_EQ(HistoryModeFromName("merge").status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace kvault::conversation
