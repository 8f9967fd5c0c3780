#include "kvault/conversation/registry.h"

namespace kvault::conversation {

std::shared_ptr<Conversation> Registry::GetOrCreate(const std::string& scope,
                                                    const std::string& id) {
  MutexLock lock(&mu_);
  std::shared_ptr<Conversation>& slot = by_key_[ConversationKey(scope, id)];
  if (!slot) {
    slot = std::make_shared<Conversation>(scope, id);
    ++total_created_;
  }
  return slot;
}

std::shared_ptr<Conversation> Registry::Find(const std::string& scope,
                                             const std::string& id) const {
  MutexLock lock(&mu_);
  auto it = by_key_.find(ConversationKey(scope, id));
  return it == by_key_.end() ? nullptr : it->second;
}

bool Registry::Remove(const std::shared_ptr<Conversation>& conversation) {
  MutexLock lock(&mu_);
  auto it = by_key_.find(conversation->key());
  if (it == by_key_.end() || it->second != conversation) return false;
  by_key_.erase(it);
  return true;
}

std::vector<std::shared_ptr<Conversation>> Registry::List(const std::string& scope) const {
  MutexLock lock(&mu_);
  std::vector<std::shared_ptr<Conversation>> out;
  for (const auto& [key, conversation] : by_key_) {
    if (conversation->scope() == scope) out.push_back(conversation);
  }
  return out;
}

std::vector<std::shared_ptr<Conversation>> Registry::ListAll() const {
  MutexLock lock(&mu_);
  std::vector<std::shared_ptr<Conversation>> out;
  for (const auto& [key, conversation] : by_key_) out.push_back(conversation);
  return out;
}

TurnLock Registry::Lock(const std::string& scope, const std::string& id) {
  while (true) {
    TurnLock conversation(GetOrCreate(scope, id));
    if (!conversation->ended) return conversation;
  }
}

Result<TurnLock> Registry::LockExisting(const std::string& scope, const std::string& id) {
  std::shared_ptr<Conversation> found = Find(scope, id);
  const Status not_found =
      NotFoundError("no conversation '" + id + "'").WithDetail(ErrorDetail::kConversationNotFound);
  if (!found) return not_found;
  TurnLock conversation(std::move(found));
  if (conversation->ended) return not_found;
  return conversation;
}

void Registry::Retire(TurnLock& conversation) {
  conversation->ended = true;
  Remove(conversation.shared());
}

void Registry::RetireIfEmpty(TurnLock& conversation) {
  if (!conversation->history || conversation->history->turns().empty()) Retire(conversation);
}

int64_t Registry::size() const {
  MutexLock lock(&mu_);
  return static_cast<int64_t>(by_key_.size());
}

int64_t Registry::total_created() const {
  MutexLock lock(&mu_);
  return total_created_;
}

}  // namespace kvault::conversation
