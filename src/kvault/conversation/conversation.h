// conversation/conversation.h: one conversation: its id, the API key scope it belongs to,
// the turns it has accumulated, and the lock that lets only one request use it at a time.
//
// Thread-safety: id/scope are immutable; the rest is guarded by `turn_lock`, which a request
// holds from start to end (ConversationManager); counters are atomics readable any time.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "kvault/base/mutex.h"
#include "kvault/engine/chat_template.h"
#include "kvault/kv/block_hash.h"
#include "kvault/memory/token_store.h"
#include "kvault/memory/window_builder.h"

namespace kvault::conversation {

class Conversation {
 public:
  Conversation(std::string scope, std::string id);

  const std::string& scope() const { return scope_; }
  const std::string& id() const { return id_; }
  // Unique across scopes: the key of the registry and of the sequence pool.
  const std::string& key() const { return key_; }

  // Held by the request that uses the conversation (and by `end`).
  Mutex turn_lock;
  // A chat conversation's history as the model's tokens (memory/token_store.h); absent for
  // stateless requests and raw completions.
  std::optional<memory::TokenStore> history KV_GUARDED_BY(turn_lock);
  // Where the prompt's clear zone starts (memory/window_builder.h): kept stable between
  // turns so that the prompt's prefix, and its KV, stay the same.
  memory::ClearZoneState clear_zone KV_GUARDED_BY(turn_lock);
  // Set by `end`: a request that was waiting for the lock must not use it.
  bool ended KV_GUARDED_BY(turn_lock) = false;
  // The partial last block of the conversation's latest KV checkpoint (kv/radix_tree.h): its
  // own, replaced at each checkpoint. {} if none.
  kv::BlockName kv_tail KV_GUARDED_BY(turn_lock);
  // The history's last turn, a user turn a chat request stored whose reply never came
  // (history_plan.h); -1 if none. Journaled.
  int64_t unanswered_turn KV_GUARDED_BY(turn_lock) = -1;
  // Branches archived so far (replaced histories; journal.h names them).
  int64_t n_branches KV_GUARDED_BY(turn_lock) = 0;

  void Touch();
  double IdleSeconds() const;
  std::atomic<int64_t> n_turns{0};          // messages so far (dropped ones included)
  std::atomic<int64_t> n_tokens{0};         // tokens remembered (the history, or the last prompt)
  std::atomic<int64_t> n_chunks{0};         // index entries of its history
  std::atomic<int64_t> n_dropped_turns{0};  // beyond --cache-size
  std::atomic<int64_t> n_dropped_tokens{0};
  std::atomic<int64_t> n_requests{0};

 private:
  const std::string scope_;
  const std::string id_;
  const std::string key_;
  std::atomic<int64_t> last_used_ms_;
};

// The registry key of (scope, id).
std::string ConversationKey(const std::string& scope, const std::string& id);

}  // namespace kvault::conversation
