// conversation/conversation_memory.h: a conversation's long memory, as the manager uses it.
// Ties the pieces of memory/ to a Conversation: its history as tokens (TokenStore), the
// chunk index shared by all conversations (ChunkIndex), the fog-of-war window
// (WindowBuilder), and the journal that makes all of it survive a restart.
//
//   Ingest       a request's messages: new turns are rendered once, stored, indexed and
//                journaled; a client that resends its whole history is matched turn by turn
//                (by digest, without tokenizing it again) and only what is new is processed;
//                a history that diverges from the stored one replaces it.
//   BuildWindow  the prompt: system turns, the clear zone, recalled fog chunks, the new turn.
//   AppendReply  the assistant's reply, once generated.
//   Search       POST /v1/conversations/search and `kvault chat`'s /search.
//
// Thread-safety: every method taking a Conversation requires its turn_lock to be held; the
// object itself is thread-safe (the index has its own lock).
#pragma once

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "kvault/base/result.h"
#include "kvault/conversation/conversation.h"
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
};

struct IngestResult {
  int64_t new_turns = 0;
  int64_t new_tokens = 0;
  bool replaced = false;  // the history diverged from the stored one and replaced it
};

struct SearchResult {
  double score = 0;
  std::string text;
  int64_t first_turn = 0;
  int64_t last_turn = 0;
  int64_t first_pos = 0;
  int32_t n_tokens = 0;
};

class ConversationMemory {
 public:
  // `index`, `journal` and `knowledge` may be null (no recall or search; nothing persists;
  // no facts recalled).
  ConversationMemory(ChatTurnRenderer* renderer, memory::ChunkIndex* index, Journal* journal,
                     memory::KnowledgeStore* knowledge, MemoryParams params);

  // Brings the stored history in line with `messages` (see above). With `to_answer`, the
  // history must end with a message to answer (InvalidArgument otherwise).
  Result<IngestResult> Ingest(Conversation& conversation,
                              std::span<const engine::ChatMessage> messages, bool to_answer);
  // The prompt for the history's last turn; `query` selects what is recalled from the fog
  // (nothing without `recall`). `generation_budget` tokens are kept free for the reply.
  Result<memory::Window> BuildWindow(Conversation& conversation, const std::string& query,
                                     int generation_budget, bool recall);
  // Stores, indexes and journals the reply; records the KV tail and clear zone with it.
  Status AppendReply(Conversation& conversation, const std::string& text);
  Result<std::vector<SearchResult>> Search(Conversation& conversation, const std::string& query,
                                           int k);
  // Forgets the conversation's index entries (its journal is the manager's to remove).
  void Forget(Conversation& conversation);
  // Rebuilds a conversation from its journal at start-up (history, index catch-up).
  Status Recover(Conversation& conversation, JournalEntry entry);

  const MemoryParams& params() const { return params_; }
  ChatTurnRenderer& renderer() { return *renderer_; }

 private:
  Status AppendTurns(Conversation& conversation, std::span<const JournalTurn> turns,
                     size_t journal_kept);
  Status IndexFrom(Conversation& conversation, int64_t first_pos);
  void UpdateCounts(Conversation& conversation);

  ChatTurnRenderer* const renderer_;
  memory::ChunkIndex* const index_;
  Journal* const journal_;
  memory::KnowledgeStore* const knowledge_;
  const MemoryParams params_;
};

// The digest a stored turn keeps of its message (role and text), for reconnect matching.
uint64_t MessageDigest(const std::string& role, const std::string& content);

}  // namespace kvault::conversation
