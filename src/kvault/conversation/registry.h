// conversation/registry.h: the conversations that exist, by (API key scope, id). A scope only
// ever sees its own conversations: lookups, listing and removal all take the scope.
//
// Thread-safety: all methods may be called from any thread.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "kvault/base/mutex.h"
#include "kvault/base/result.h"
#include "kvault/conversation/conversation.h"

namespace kvault::conversation {

class Registry {
 public:
  std::shared_ptr<Conversation> GetOrCreate(const std::string& scope, const std::string& id);
  // nullptr if the scope has no such conversation.
  std::shared_ptr<Conversation> Find(const std::string& scope, const std::string& id) const;
  // Removes it if it is still the registered object. Returns whether it was.
  bool Remove(const std::shared_ptr<Conversation>& conversation);
  std::vector<std::shared_ptr<Conversation>> List(const std::string& scope) const;

  // The conversation (created if new), locked: waits for the request that holds it. One
  // that ended while we waited is not used; its successor is.
  TurnLock Lock(const std::string& scope, const std::string& id);
  // A live conversation of `scope`, locked (waits likewise); NotFound if there is none.
  Result<TurnLock> LockExisting(const std::string& scope, const std::string& id);
  // Marks the locked conversation ended (requests waiting for it take a successor) and
  // removes it.
  void Retire(TurnLock& conversation);
  // Retires it if it holds no turns: a conversation a refused request created is not kept.
  void RetireIfEmpty(TurnLock& conversation);
  std::vector<std::shared_ptr<Conversation>> ListAll() const;
  int64_t size() const;
  int64_t total_created() const;

 private:
  mutable Mutex mu_;
  std::map<std::string, std::shared_ptr<Conversation>> by_key_ KV_GUARDED_BY(mu_);
  int64_t total_created_ KV_GUARDED_BY(mu_) = 0;
};

}  // namespace kvault::conversation
