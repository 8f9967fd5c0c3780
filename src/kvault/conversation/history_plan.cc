#include "kvault/conversation/history_plan.h"

#include <algorithm>
#include <string>

namespace kvault::conversation {
namespace {

bool AnyNonSystem(std::span<const memory::TurnDigest> messages) {
  return std::any_of(messages.begin(), messages.end(), [](const memory::TurnDigest& message) {
    return message.role != memory::Role::kSystem;
  });
}

// Rule 3 with an unanswered last turn: the delta is the client's retry of it.
HistoryPlan PlanDeltaAfterUnanswered(const HistoryPlanInput& input, HistoryPlan plan) {
  const memory::Turn* unanswered = input.store->FindTurn(input.unanswered_turn);
  if (unanswered == nullptr || plan.first_new_message >= input.messages.size()) return plan;
  const memory::TurnDigest& first = input.messages[plan.first_new_message];
  if (first.role == unanswered->role && unanswered->SameDigest(first.text_hash)) {
    // The same message again: answer the stored one instead of storing it twice.
    ++plan.first_new_message;
    plan.action = plan.first_new_message == input.messages.size() ? HistoryAction::kRetried
                                                                  : HistoryAction::kAppended;
    plan.reason = "retry";
    return plan;
  }
  plan.keep_turns = input.unanswered_turn;  // superseded by the new message, archived
  plan.action = HistoryAction::kReplaced;
  plan.reason = "unanswered turn superseded";
  return plan;
}

}  // namespace

int64_t TurnCount(const memory::TokenStore& store) {
  return store.turns().empty() ? store.n_dropped_turns() : store.turns().back().number + 1;
}

Result<HistoryMode> HistoryModeFromName(std::string_view name) {
  if (name == "auto") return HistoryMode::kAuto;
  if (name == "append") return HistoryMode::kAppend;
  if (name == "replace") return HistoryMode::kReplace;
  return InvalidArgumentError("'history' must be \"auto\", \"append\" or \"replace\"");
}

std::string_view HistoryActionName(HistoryAction action) {
  switch (action) {
    case HistoryAction::kUnchanged: return "unchanged";
    case HistoryAction::kAppended: return "appended";
    case HistoryAction::kReplaced: return "replaced";
    case HistoryAction::kRetried: return "retried";
  }
  return "unchanged";
}

HistoryPlan PlanHistory(const HistoryPlanInput& input) {
  HistoryPlan plan;
  const std::span<const memory::TurnDigest> messages = input.messages;
  plan.known_turns = input.store == nullptr ? 0 : TurnCount(*input.store);
  const size_t matched = input.store == nullptr ? 0 : input.store->CountMatchingDigests(messages);
  const auto known = static_cast<size_t>(plan.known_turns);
  plan.keep_turns = plan.known_turns;
  plan.first_new_message = matched;
  const bool something_new = matched < messages.size();
  if (matched >= known) {  // rule 1: the whole history, then perhaps more
    plan.action = something_new ? HistoryAction::kAppended : HistoryAction::kUnchanged;
    plan.reason = known == 0 ? "new" : "resend";
    if (!something_new && input.unanswered_turn >= 0 &&
        input.unanswered_turn + 1 == plan.known_turns) {
      plan.action = HistoryAction::kRetried;  // the history as it was: answer its last turn
      plan.reason = "retry";
    }
    return plan;
  }
  // Evidence of a resend: a stored conversation turn was matched before the difference, or
  // the request is at least as long as the history (its first message edited).
  const bool resend = AnyNonSystem(messages.first(matched)) || messages.size() >= known;
  const bool replace =
      input.mode == HistoryMode::kReplace || (input.mode == HistoryMode::kAuto && resend);
  if (replace) {  // rule 2
    plan.keep_turns = static_cast<int64_t>(matched);
    plan.action = HistoryAction::kReplaced;
    const bool only_unanswered =
        input.unanswered_turn >= 0 && plan.keep_turns == input.unanswered_turn;
    plan.reason = only_unanswered              ? "unanswered turn superseded"
                  : matched == messages.size() ? "regenerate"
                                               : "edit";
    return plan;
  }
  plan.action = something_new ? HistoryAction::kAppended : HistoryAction::kUnchanged;  // rule 3
  plan.reason = "delta";
  const bool after_unanswered =
      input.unanswered_turn >= 0 && input.unanswered_turn == plan.known_turns - 1;
  if (input.mode == HistoryMode::kAuto && after_unanswered) {
    return PlanDeltaAfterUnanswered(input, plan);
  }
  return plan;
}

}  // namespace kvault::conversation
