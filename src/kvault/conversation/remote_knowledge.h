// conversation/remote_knowledge.h: the knowledge store's facts (memory/knowledge_store.h)
// shared by the replicas of one Redis (store/redis_client.h), as a feed of writes:
//
//   <prefix>:knowledge   a list: the feed's epoch (a random id, written when the list is
//                        created), then one record per Put, in the order they were made
//
// Every replica applies the list in order, so all agree on each key's last value. Redis
// restarted empty: the list starts again under a new epoch, and each replica publishes what
// it holds into it (KnowledgeStore::SetFeed).
//
// Thread-safety: all methods may be called from any thread.
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "kvault/memory/knowledge_store.h"
#include "kvault/store/redis_client.h"

namespace kvault::conversation {

class RemoteKnowledge : public memory::KnowledgeFeed {
 public:
  RemoteKnowledge(std::shared_ptr<store::RedisClient> client, std::string prefix);

  Status Publish(std::span<const std::string> records) override;
  Result<Batch> Read(int64_t from, int64_t limit) override;

  int64_t published() const { return published_.load(); }
  int64_t errors() const { return errors_.load(); }

 private:
  std::shared_ptr<store::RedisClient> client_;
  const std::string key_;
  std::atomic<int64_t> published_{0}, errors_{0};
};

}  // namespace kvault::conversation
