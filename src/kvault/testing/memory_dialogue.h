// testing/memory_dialogue.h: a generated multi-session dialogue with an answer key, for the
// recall benchmark (`kvault bench recall`) and the memory tests. Unlike DialogueGenerator's
// planted facts, whose questions repeat the statement's words, the questions here are built
// to be as hard as real long-term-memory questions:
//
//   kSingle    a fact stated indirectly, asked in other words ("I bought a little sailboat
//              and named her Quince" / "What did I call my boat?");
//   kMulti     the answer spread over 2-3 turns sessions apart, linked by a name ("my sister
//              is called Ottoline" ... "Ottoline adopted a ferret called Nimbus" / "What pet
//              did my sister adopt?");
//   kTemporal  questions about dates: when something happened (the date is in the session's
//              opening message, not in the turn that says what happened) or what happened
//              in a named month;
//   kNone      questions about things never said; the search should score them low.
//
// Every question comes with distractor turns that share its words but not its answer, and
// the filler (DialogueGenerator::NextTurn) mentions the same relatives and places. Sessions
// carry dates: each opens with "Hi again! Today is Tuesday, 3 May 2023." and every turn has
// a Unix time. Evidence is given as turn indices, so a benchmark scores a search by which
// evidence turns its hits overlap.
//
// Thread-safety: pure function of its parameters.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "kvault/memory/token_store.h"

namespace kvault::testing {

enum class QuestionKind { kSingle, kMulti, kTemporal, kNone };
inline constexpr QuestionKind kQuestionKinds[] = {QuestionKind::kSingle, QuestionKind::kMulti,
                                                  QuestionKind::kTemporal, QuestionKind::kNone};
std::string_view QuestionKindName(QuestionKind kind);  // "single", "multi", "temporal", "none"

struct MemoryDialogueTurn {
  memory::Role role = memory::Role::kUser;
  std::string text;
  int64_t unix_seconds = 0;  // when it was said (sessions are days apart)
};

struct EvidenceQuestion {
  QuestionKind kind = QuestionKind::kSingle;
  std::string question;
  std::string answer;            // for reports; "" for kNone
  std::vector<size_t> evidence;  // indices into MemoryDialogue::turns; empty for kNone
  // The evidence when turns are stored with their times: without the session's opening
  // message (its date comes with the recalled turn, in the recall annotation).
  std::vector<size_t> dated_evidence;
  std::vector<size_t> distractors;  // turns sharing the question's words, not the answer
};

struct MemoryDialogue {
  std::vector<MemoryDialogueTurn> turns;  // user and assistant alternate, user first
  std::vector<EvidenceQuestion> questions;
};

struct MemoryDialogueParams {
  uint64_t seed = 1;
  int sessions = 60;
  int turns_per_session = 40;  // filler turns; planted turns come on top
  // Questions of each kind; at most the number of templates of the kind (see the .cc).
  int single = 10;
  int multi = 6;
  int temporal = 6;
  int none = 6;
  int64_t first_unix_seconds = 1673258400;  // 9 Jan 2023, 10:00 UTC
};

// REQUIRES: sessions >= 8, turns_per_session >= 4, each count within its kind's templates.
MemoryDialogue GenerateMemoryDialogue(const MemoryDialogueParams& params);

// How many questions of `kind` a dialogue can hold (its templates).
int QuestionTemplateCount(QuestionKind kind);

// "Tuesday, 3 May 2023" for a Unix time (UTC).
std::string DateText(int64_t unix_seconds);

}  // namespace kvault::testing
