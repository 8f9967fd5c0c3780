// conversation/manager_pending.h: the state of a request between Prepare() and Run(), shared
// by manager.cc and manager_run.cc. Private to the conversation module.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <llama.h>

#include "kvault/conversation/admission.h"
#include "kvault/conversation/conversation.h"
#include "kvault/conversation/manager.h"
#include "kvault/conversation/registry.h"
#include "kvault/conversation/remote_journal.h"

namespace kvault::conversation {

class ConversationManager::Pending {
 public:
  ~Pending() {
    if (!conversation.held()) return;
    // A stateless request's conversation has nothing to remember: the client keeps it. A
    // conversation this request created but refused is not kept either.
    if (forget_if_empty != nullptr) forget_if_empty->RetireIfEmpty(conversation);
    if (forget_in != nullptr) forget_in->Remove(conversation.shared());
    // `conversation`, declared after `ticket`, is unlocked before the ticket is given back.
  }
  Registry* forget_in = nullptr;        // set for a stateless request's conversation
  Registry* forget_if_empty = nullptr;  // set for a kept conversation's request
  IngestResult history;                 // what the request did to its history
  std::unique_ptr<Admission::Ticket> ticket;
  TurnLock conversation;
  // With a shared Redis: the conversation's lease, released (before the turn lock) when the
  // request is done.
  RemoteJournal::Lease remote_lease;
  GenerateRequest request;
  bool windowed = false;      // a chat conversation whose prompt is its history's window
  std::string query;          // the newest user message: what recall searches for
  int generation_budget = 0;  // tokens the window keeps free for the reply
  std::vector<llama_token> prompt;
  int recalled_chunks = 0;  // in the current prompt
  // Of the current prompt, offsets prompt positions: the history it holds as it is (system
  // turns and clear zone, one run where they meet), whose spans are kept as KV after the
  // reply, and the chunks recalled as their tokens, put back as KV before it (recall_kv.h).
  std::vector<memory::HistoryRun> history_runs;
  std::vector<memory::HistoryRun> recall_runs;
  int64_t text_recalled_chunks = 0;  // chunks recalled as text instead (--recall-kv off)
  int64_t text_recalled_tokens = 0;
  std::vector<int64_t> recalled_turns;  // first turn of each
  int max_tokens = 0;
  std::chrono::steady_clock::time_point start;
};

// A response across its rounds (manager_run.cc, manager_upstream.cc).
struct ConversationManager::Generation {
  SequenceLease lease;
  GenerateResult result;
  memory::HedgeDetector hedge;
  int remaining_tokens = 0;
  int rounds = 0;
  bool hedged = false;  // the last round ended on a hedge
  std::string phrase;
  engine::FinishReason reason = engine::FinishReason::kStop;
  std::vector<llama_token> held;  // what the sequence holds after the last round
};

}  // namespace kvault::conversation
