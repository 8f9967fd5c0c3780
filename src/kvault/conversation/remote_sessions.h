// conversation/remote_sessions.h: named sessions (session_store.h) shared by the replicas of
// one Redis (store/redis_client.h), so a session saved on one replica loads on any other:
//
//   <prefix>:sess:<scope hash>   a hash, session name -> its JSON text ("" once removed)
//
// The KV blocks a session names are content-addressed blocks of the remote tier
// (store/remote_tier.h), found there by the replica that loads it.
//
// Thread-safety: all methods may be called from any thread.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "kvault/conversation/session_store.h"
#include "kvault/store/redis_client.h"

namespace kvault::conversation {

class RemoteSessions : public SessionMirror {
 public:
  RemoteSessions(std::shared_ptr<store::RedisClient> client, std::string prefix);

  Result<std::optional<std::string>> Get(const std::string& scope,
                                         const std::string& name) override;
  Status Put(const std::string& scope, const std::string& name, const std::string& text) override;
  Result<std::map<std::string, std::string>> List(const std::string& scope) override;

  int64_t writes() const { return writes_.load(); }
  int64_t errors() const { return errors_.load(); }

 private:
  std::string KeyOf(const std::string& scope) const;

  std::shared_ptr<store::RedisClient> client_;
  const std::string prefix_;
  std::atomic<int64_t> writes_{0}, errors_{0};
};

}  // namespace kvault::conversation
