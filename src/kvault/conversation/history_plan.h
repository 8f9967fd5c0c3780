// conversation/history_plan.h: what a request's messages do to a stored conversation. The one
// home of kvault's history semantics; ConversationMemory carries the plan out.
//
// Clients send a conversation's turns in two ways: the whole history every time (OpenAI's
// contract, most chat UIs) or only what is new, often with the system prompt repeated (KeSSie's
// and zKV's clients). kvault must tell them apart, and must never destroy stored turns on a
// guess. The request's messages M are compared with the stored turns T (k of them, dropped
// ones included) from the start; `matched` is the length of the common prefix (role and text
// digest; turns dropped beyond --cache-size count as matching).
//
//   1. matched == k: a resend that continues the history, or a first request. The messages
//      after the prefix are appended (none: the history is unchanged, its last turn answered).
//   2. matched < k, and the request is evidently a resend: it matched at least one stored
//      non-system turn before differing, or it holds at least as many messages as the history
//      (an edited first message). The history is REPLACED from turn `matched` (an edit, or a
//      regenerate: the history without its last reply). The replaced turns are archived as a
//      named branch, never dropped (journal.h; GET /v1/conversations/{id}/history?branch=).
//   3. Otherwise it is a DELTA: the messages after the matched prefix (the repeated system
//      messages) are appended after the history. A request with no system message that does
//      not match at all is a delta too.
//
// An unanswered turn: a user turn that a chat request stored but whose reply never came (the
// server died or failed mid-generation, the client went away). It stays stored. A delta that
// follows it is taken as the client's retry: the same message again is answered in its place
// (not stored twice); another message supersedes it (the unanswered turn is archived as a
// branch, as in 2). A resend that includes it keeps it, one that leaves it out replaces it.
//
// `mode` overrides the rule (the request's `history` field): kAppend never replaces (the
// messages after the matched prefix are appended); kReplace replaces from the first
// difference without asking for evidence.
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

#include "kvault/base/result.h"
#include "kvault/memory/token_store.h"

namespace kvault::conversation {

enum class HistoryMode : uint8_t { kAuto, kAppend, kReplace };
// "auto", "append", "replace" and back; InvalidArgument for another name.
Result<HistoryMode> HistoryModeFromName(std::string_view name);

enum class HistoryAction : uint8_t {
  kUnchanged,  // nothing new (the last turn is answered again)
  kAppended,   // new turns after the whole history
  kReplaced,   // turns from `keep_turns` on were archived and replaced
  kRetried,    // the unanswered last turn is answered now, not stored again
};
// "unchanged", "appended", "replaced", "retried".
std::string_view HistoryActionName(HistoryAction action);

struct HistoryPlanInput {
  const memory::TokenStore* store = nullptr;     // null: an empty history
  std::span<const memory::TurnDigest> messages;  // the request's, in order
  HistoryMode mode = HistoryMode::kAuto;
  int64_t unanswered_turn = -1;  // number of the unanswered last turn; -1 if none
};

struct HistoryPlan {
  HistoryAction action = HistoryAction::kUnchanged;
  int64_t keep_turns = 0;        // stored turns [0, keep_turns) stay; the rest is archived
  size_t first_new_message = 0;  // messages[first_new_message..] are appended after them
  int64_t known_turns = 0;       // turns stored before the request (dropped ones included)
  std::string_view reason;       // "resend", "delta", "edit", "regenerate", "retry", ...

  bool replaces() const { return keep_turns < known_turns; }
};

// The plan for `input`; see the rule above. Never fails: every request means something.
HistoryPlan PlanHistory(const HistoryPlanInput& input);

// Turns the store has had (numbers 0 .. n-1), dropped ones included.
int64_t TurnCount(const memory::TokenStore& store);

}  // namespace kvault::conversation
