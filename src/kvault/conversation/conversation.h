// conversation/conversation.h: one conversation: its id, the API key scope it belongs to,
// the turns it has accumulated, and the lock that lets only one request use it at a time.
//
// Thread-safety: id/scope are immutable; the rest is guarded by `turn_lock`, which a request
// holds from start to end (ConversationManager); counters are atomics readable any time.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "kvault/base/mutex.h"
#include "kvault/engine/chat_template.h"
#include "kvault/kv/block_hash.h"

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
  // The messages so far (system, user, assistant...), in order.
  std::vector<engine::ChatMessage> turns KV_GUARDED_BY(turn_lock);
  // Set by `end`: a request that was waiting for the lock must not use it.
  bool ended KV_GUARDED_BY(turn_lock) = false;
  // The partial last block of the conversation's latest KV checkpoint (kv/radix_tree.h): its
  // own, replaced at each checkpoint. {} if none.
  kv::BlockName kv_tail KV_GUARDED_BY(turn_lock);

  void Touch();
  double IdleSeconds() const;
  std::atomic<int64_t> n_turns{0};
  std::atomic<int64_t> n_tokens{0};  // tokens of the last prompt + reply
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
