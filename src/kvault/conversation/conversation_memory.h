// conversation/conversation_memory.h: a conversation's long memory, as the manager uses it.
// Ties the pieces of memory/ to a Conversation: its history as tokens (TokenStore), the
// chunk index shared by all conversations (ChunkIndex), the fog-of-war window
// (WindowBuilder), and the journal that makes all of it survive a restart.
//
//   Plan         what a request's messages do to the history (history_plan.h: append, delta,
//                replace, retry), with the new turns rendered and everything that can reject
//                the request checked. Changes nothing.
//   Commit       carries a plan out: journal first (durable), then the token store and the
//                index. Replaced turns stay in the journal as an archived branch.
//   Ingest       Plan + Commit (bulk ingestion: POST /v1/conversations/append).
//   BuildWindow  the prompt: system turns, the clear zone, recalled fog chunks, the new turn.
//   AppendReply  the assistant's reply, once generated.
//   Search       POST /v1/conversations/search and `kvault chat`'s /search.
//
// Thread-safety: a conversation is reached through its TurnLock (conversation.h); the object
// itself is thread-safe (the index has its own lock).
#pragma once

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "kvault/base/result.h"
#include "kvault/base/storage_health.h"
#include "kvault/conversation/conversation.h"
#include "kvault/conversation/history_plan.h"
#include "kvault/conversation/journal.h"
#include "kvault/conversation/turn_renderer.h"
#include "kvault/engine/chat_template.h"
#include "kvault/memory/chunk_index.h"
#include "kvault/memory/knowledge_store.h"
#include "kvault/memory/window_builder.h"

namespace kvault::conversation {

struct MemoryParams {
  int window = 4096;
  int64_t cache_size = 10000000;  // tokens a conversation remembers (TokenStore capacity)
  int recall_budget = 1024;       // tokens of recalled chunks per prompt (0 = no recall)
  int recall_k = 8;               // chunks considered per recall
  int recall_facts = 3;           // knowledge-store facts considered per recall
  double min_score = 1.0;         // relevance threshold of recalled chunks
  double fog_alpha = 0.5;         // recency demotion in recall ranking
  bool token_recall = false;      // memory::WindowParams::token_recall
};

// A validated change to a conversation's history. Valid until the conversation's turn lock
// is released (it refers to the history as it was planned against).
struct IngestPlan {
  HistoryPlan history;
  std::vector<JournalTurn> new_turns;  // rendered, in order
  int64_t new_tokens = 0;
  bool to_answer = false;
  // Of the history the plan leads to: tokens of its leading system turns and of its last
  // turn (what the window must hold whatever else it drops).
  int64_t system_tokens = 0;
  int64_t last_turn_tokens = 0;
};

struct IngestResult {
  HistoryAction action = HistoryAction::kUnchanged;
  std::string_view reason;  // history_plan.h's words
  int64_t new_turns = 0;
  int64_t new_tokens = 0;
  // A replaced history: turns from `from_turn` on were archived as `archived_branch`.
  bool replaced = false;
  int64_t from_turn = -1;
  int64_t archived_turns = 0;
  std::string archived_branch;
};

struct SearchResult {
  double score = 0;
  std::string text;
  int64_t first_turn = 0;
  int64_t last_turn = 0;
  int64_t first_pos = 0;
  int32_t n_tokens = 0;
  int64_t time = 0;  // Unix seconds its first turn was said; 0 = unknown
};

class ConversationMemory {
 public:
  // `index`, `journal` and `knowledge` may be null (no recall or search; nothing persists;
  // no facts recalled).
  // `health` (may be null) hears of every journal and index write.
  ConversationMemory(ChatTurnRenderer* renderer, memory::ChunkIndex* index, Journal* journal,
                     memory::KnowledgeStore* knowledge, StorageHealth* health, MemoryParams params);

  // The plan for `messages` (see above). With `to_answer`, the resulting history must end
  // with a message to answer. InvalidArgument for that, an unknown role or a message the
  // cache cannot hold; nothing changes in any case.
  Result<IngestPlan> Plan(const TurnLock& conversation,
                          std::span<const engine::ChatMessage> messages, HistoryMode mode,
                          bool to_answer);
  // Carries out `plan` (made by Plan under the same lock hold). An error leaves the history
  // as it was if the journal refused the record; later steps cannot fail on input.
  Result<IngestResult> Commit(TurnLock& conversation, IngestPlan plan);
  // Plan, then Commit.
  Result<IngestResult> Ingest(TurnLock& conversation, std::span<const engine::ChatMessage> messages,
                              bool to_answer, HistoryMode mode = HistoryMode::kAuto);
  // The prompt for the history's last turn; `query` selects what is recalled from the fog
  // (nothing without `recall`). `generation_budget` tokens are kept free for the reply.
  Result<memory::Window> BuildWindow(TurnLock& conversation, const std::string& query,
                                     int generation_budget, bool recall);
  // OK if BuildWindow will fit the history `plan` leads to in the window (the same check,
  // made before the plan is committed); context_length_exceeded otherwise.
  Status CheckWindow(const IngestPlan& plan, int generation_budget) const;
  // Stores, indexes and journals the reply; records the KV tail and clear zone with it.
  Status AppendReply(TurnLock& conversation, const std::string& text);
  // `time`: when the question is asked (relative dates in it count from there); 0: the time
  // of the conversation's last turn.
  Result<std::vector<SearchResult>> Search(const TurnLock& conversation, const std::string& query,
                                           int k, int64_t time = 0);
  // Forgets the conversation's index entries (its journal is the manager's to remove).
  void Forget(TurnLock& conversation);
  // Rebuilds a conversation from its journal at start-up (history, index catch-up).
  Status Recover(TurnLock& conversation, JournalEntry entry);

  const MemoryParams& params() const { return params_; }
  ChatTurnRenderer& renderer() { return *renderer_; }

 private:
  // The journal's record of a change: of the recorded turns keep `kept`, add `turns`.
  Status Record(TurnLock& conversation, size_t kept, std::span<const JournalTurn> turns,
                const JournalState& state);
  // Appends rendered turns to the token store (dropping the oldest beyond the cache size,
  // and their index entries). Indexing the new turns is the caller's.
  Status AppendTurns(TurnLock& conversation, std::span<const JournalTurn> turns);
  Status IndexFrom(TurnLock& conversation, int64_t first_pos);
  memory::WindowParams WindowParamsFor(int generation_budget) const;
  void UpdateCounts(TurnLock& conversation);

  ChatTurnRenderer* const renderer_;
  memory::ChunkIndex* const index_;
  Journal* const journal_;
  StorageHealth* const health_;
  memory::KnowledgeStore* const knowledge_;
  const MemoryParams params_;
};

// The digest a stored turn keeps of its message (role and text), for reconnect matching.
uint64_t MessageDigest(const std::string& role, const std::string& content);

}  // namespace kvault::conversation
