// conversation/conversation.h: one conversation (its id, the API key scope it belongs to, the
// history it has accumulated) and the turn lock that lets one request at a time use it.
//
// Thread-safety, checked by the compiler: what a request may change of a conversation
// (ConversationState) is private to Conversation, and the only way to reach it is a TurnLock,
// which holds the conversation's lock for as long as it exists. A function that may touch a
// conversation takes its TurnLock; one that only gets a Conversation can read the immutable
// id/scope and the atomic counters, nothing else. (Clang's lock annotations cannot follow a
// lock that is moved between objects, as a request's lock is from Prepare to Run; access
// control can.)
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "kvault/engine/chat_template.h"
#include "kvault/kv/block_hash.h"
#include "kvault/memory/token_store.h"
#include "kvault/memory/window_builder.h"

namespace kvault::conversation {

// What a request reads and changes of its conversation, under the turn lock.
struct ConversationState {
  // A chat conversation's history as the model's tokens (memory/token_store.h); absent for
  // stateless requests and raw completions.
  std::optional<memory::TokenStore> history;
  // Where the prompt's clear zone starts (memory/window_builder.h): kept stable between
  // turns so that the prompt's prefix, and its KV, stay the same.
  memory::ClearZoneState clear_zone;
  // Set by `end` (or a refused first request): a request that was waiting for the lock must
  // not use it (Registry::Lock takes the successor).
  bool ended = false;
  // The partial last block of the conversation's latest KV checkpoint (kv/radix_tree.h): its
  // own, replaced at each checkpoint. {} if none.
  kv::BlockName kv_tail;
  // The last block of that checkpoint, full or partial (where the conversation's branch of
  // the tree ends); {} until its first checkpoint in this process (not journaled: the tail
  // stands in for it after a restart).
  kv::BlockName kv_last;
  // The history's last turn, a user turn a chat request stored whose reply never came
  // (history_plan.h); -1 if none. Journaled.
  int64_t unanswered_turn = -1;
  // Branches archived so far (replaced histories; journal.h names them).
  int64_t n_branches = 0;
  // An index write failed (a full or read-only disk): the next one starts where the index
  // ends, so the index catches up once writes succeed.
  bool index_behind = false;
};

class Conversation {
 public:
  Conversation(std::string scope, std::string id);
  Conversation(const Conversation&) = delete;
  Conversation& operator=(const Conversation&) = delete;

  const std::string& scope() const { return scope_; }
  const std::string& id() const { return id_; }
  // Unique across scopes: the key of the registry and of the sequence pool.
  const std::string& key() const { return key_; }

  void Touch();
  double IdleSeconds() const;
  // Readable any time (listing, stats); written under the turn lock.
  std::atomic<int64_t> n_turns{0};          // messages so far (dropped ones included)
  std::atomic<int64_t> n_tokens{0};         // tokens remembered (the history, or the last prompt)
  std::atomic<int64_t> n_chunks{0};         // index entries of its history
  std::atomic<int64_t> history_bytes{0};    // RAM of its token store (TokenStore::MemoryBytes)
  std::atomic<int64_t> n_dropped_turns{0};  // beyond --cache-size
  std::atomic<int64_t> n_dropped_tokens{0};
  std::atomic<int64_t> n_requests{0};

 private:
  friend class TurnLock;
  const std::string scope_;
  const std::string id_;
  const std::string key_;
  std::atomic<int64_t> last_used_ms_;
  std::mutex turn_mu_;
  ConversationState state_;  // only a TurnLock, holding turn_mu_, reaches it
};

// Exclusive use of one conversation: shares its ownership and holds its turn lock, both
// released together when the TurnLock is destroyed (or assigned over). Movable, so a request
// keeps it from Prepare to Run. An empty TurnLock (default-constructed or moved from) holds
// nothing, and its accessors must not be called.
class TurnLock {
 public:
  TurnLock() = default;
  // Waits until no one else holds the conversation's lock. REQUIRES: `conversation`.
  explicit TurnLock(std::shared_ptr<Conversation> conversation);
  TurnLock(TurnLock&& other) noexcept = default;
  TurnLock& operator=(TurnLock&& other) noexcept;
  ~TurnLock() { Release(); }

  bool held() const { return lock_.owns_lock(); }
  // Unlocks, then lets go of the conversation. A no-op when empty.
  void Release();

  Conversation& conversation() const { return *conversation_; }
  const std::string& id() const { return conversation_->id(); }
  const std::string& scope() const { return conversation_->scope(); }
  const std::string& key() const { return conversation_->key(); }
  const std::shared_ptr<Conversation>& shared() const { return conversation_; }
  ConversationState& state() { return conversation_->state_; }
  const ConversationState& state() const { return conversation_->state_; }
  ConversationState* operator->() { return &state(); }
  const ConversationState* operator->() const { return &state(); }

 private:
  // Declared first, destroyed last: the conversation outlives the lock on its mutex.
  std::shared_ptr<Conversation> conversation_;
  std::unique_lock<std::mutex> lock_;
};

// The registry key of (scope, id).
std::string ConversationKey(const std::string& scope, const std::string& id);

}  // namespace kvault::conversation
