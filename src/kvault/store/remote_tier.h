// store/remote_tier.h: KV blocks in a Redis (or Valkey) shared by every replica, by block
// name. Blocks are content-addressed (kv/block_hash.h: the chained hash of the tokens with
// the model, cache type and layout, under the API key's partition), so replicas share them
// without coordination: the same name is always the same bytes, and a corrupt value is caught
// by the codec's checksum when decoded (the BlockStore then deletes it here too).
//
// Keys: <prefix>:blk:<name hex>, written with the TTL (--remote-ttl; 0 = until Redis evicts
// under its own maxmemory-policy). The BlockStore writes behind its RAM tier (never on a
// request's path) and reads here on a RAM and disk miss.
//
// Thread-safety: every method may be called from any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "kvault/store/redis_client.h"
#include "kvault/store/tier.h"

namespace kvault::store {

class RemoteTier : public Tier {
 public:
  RemoteTier(std::shared_ptr<RedisClient> client, std::string prefix, int64_t ttl_seconds);

  std::string_view name() const override { return "remote"; }
  Status Put(const BlockName& name, const BlockBytes& bytes) override;
  Result<BlockBytes> Get(const BlockName& name) override;
  // Deletes a block that failed its checks (a value every replica would otherwise fetch).
  Status Erase(const BlockName& name) override;
  bool Contains(const BlockName& name) const override;
  // What this replica wrote (Redis holds more: other replicas' blocks).
  uint64_t used_bytes() const override { return written_bytes_.load(); }
  uint64_t n_blocks() const override { return written_blocks_.load(); }

  // The encoded size of each block, 0 for one Redis does not have: one round trip.
  Result<std::vector<uint64_t>> Sizes(std::span<const BlockName> names);
  // A block's size and its first `max_bytes` (its header: kv::PeekBlockMeta), in one round
  // trip; NotFound if Redis does not have it.
  struct Head {
    uint64_t size = 0;
    std::vector<uint8_t> prefix;
  };
  Result<Head> ReadHead(const BlockName& name, size_t max_bytes);

  RedisClient& client() { return *client_; }
  const std::string& prefix() const { return prefix_; }

 private:
  std::string KeyOf(const BlockName& name) const;

  std::shared_ptr<RedisClient> client_;
  const std::string prefix_;
  const int64_t ttl_seconds_;
  std::atomic<uint64_t> written_bytes_{0};
  std::atomic<uint64_t> written_blocks_{0};
};

}  // namespace kvault::store
