// conversation/history_service.h: a kept conversation's history without generation. Bulk
// ingestion (POST /v1/conversations/append, session loads, reconnects) by history_plan.h's
// rule, the journal's account of the conversation (turns, archived branches, the unanswered
// turn), and search over its chunks. Each call takes the conversation's turn lock, so it
// waits for a running request of the conversation. With a shared Redis (RemoteHook), each
// call also takes the conversation's lease and first continues from what other replicas
// recorded, so any replica appends to, reads and searches any conversation.
//
// Thread-safety: all methods may be called from any thread.
#pragma once

#include <functional>
#include <span>
#include <string>
#include <vector>

#include "kvault/base/result.h"
#include "kvault/conversation/conversation_memory.h"
#include "kvault/conversation/journal.h"
#include "kvault/conversation/registry.h"
#include "kvault/conversation/remote_journal.h"
#include "kvault/conversation/text_normalizer.h"
#include "kvault/engine/chat_template.h"

namespace kvault::conversation {

// Takes the conversation's lease in the shared Redis and adopts what other replicas recorded
// of it (ConversationManager's); held until the returned lease goes.
using RemoteHook = std::function<Result<RemoteJournal::Lease>(TurnLock&)>;

class HistoryService {
 public:
  // `journal` may be null (Read is then refused). REQUIRES: the pointees outlive this.
  // `normalizer` may be null (no --normalize-rules); `remote` empty without a shared Redis.
  HistoryService(Registry* registry, ConversationMemory* memory, Journal* journal,
                 const TextNormalizer* normalizer = nullptr, RemoteHook remote = nullptr);

  // Stores messages; creates the conversation if needed. An error leaves everything as it
  // was (a conversation created for the call is not kept).
  Result<IngestResult> Append(const std::string& scope, const std::string& id,
                              std::span<const engine::ChatMessage> messages,
                              HistoryMode mode = HistoryMode::kAuto);
  // The conversation as the journal holds it. NotFound for an unknown conversation;
  // FailedPrecondition without a journal.
  Result<JournalEntry> Read(const std::string& scope, const std::string& id);
  // The conversation's best chunks for `query`, asked at `time` (Unix seconds; 0: at the time
  // of the conversation's last turn). NotFound for an unknown conversation.
  Result<std::vector<SearchResult>> Search(const std::string& scope, const std::string& id,
                                           const std::string& query, int k, int64_t time = 0);

  // The conversation's lock (and lease, held until `lease` goes); with a remote, a
  // conversation this replica does not know yet is looked for there. NotFound if it exists
  // nowhere. (Sessions save through it.)
  Result<TurnLock> LockExisting(const std::string& scope, const std::string& id,
                                RemoteJournal::Lease* lease);

 private:
  Registry* const registry_;
  ConversationMemory* const memory_;
  Journal* const journal_;
  const TextNormalizer* const normalizer_;
  const RemoteHook remote_;
};

}  // namespace kvault::conversation
