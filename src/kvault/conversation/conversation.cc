#include "kvault/conversation/conversation.h"

namespace kvault::conversation {
namespace {

int64_t NowMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

std::string ConversationKey(const std::string& scope, const std::string& id) {
  // The unit separator cannot appear in a scope (a hex digest) and keeps keys unambiguous.
  return scope + '\x1f' + id;
}

Conversation::Conversation(std::string scope, std::string id)
    : scope_(std::move(scope)),
      id_(std::move(id)),
      key_(ConversationKey(scope_, id_)),
      last_used_ms_(NowMillis()) {}

void Conversation::Touch() { last_used_ms_.store(NowMillis()); }

double Conversation::IdleSeconds() const {
  return static_cast<double>(NowMillis() - last_used_ms_.load()) / 1000.0;
}

TurnLock::TurnLock(std::shared_ptr<Conversation> conversation)
    : conversation_(std::move(conversation)), lock_(conversation_->turn_mu_) {}

TurnLock& TurnLock::operator=(TurnLock&& other) noexcept {
  if (this != &other) {
    Release();  // the old conversation's lock goes before the reference that keeps it alive
    conversation_ = std::move(other.conversation_);
    lock_ = std::move(other.lock_);
  }
  return *this;
}

void TurnLock::Release() {
  if (lock_.owns_lock()) lock_.unlock();
  lock_ = {};
  conversation_.reset();
}

}  // namespace kvault::conversation
