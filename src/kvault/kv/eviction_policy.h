// kv/eviction_policy.h: ranks blocks a tier may evict (the tier owns the heap, the lock and
// the act of evicting; a policy only ranks [sglang EvictionStrategy.get_priority]).
//
//   lru   the least recently used first
//   lfu   the lowest hit count, decayed with a half-life, first (old popularity fades)
//   cost  the least valuable first: value = time saved by keeping the block (recompute time
//         minus restore time from the next tier down, from measured rates) x (1 + decayed
//         frequency) / (1 + idle time / 10 min). Shallow, small, cold blocks go first.
//
// Whatever the policy, a tier only offers blocks none of whose children it (or a faster tier)
// holds, so a live descendant never loses its ancestors.
//
// Thread-safety: policies are stateless; Score may be called from any thread.
#pragma once

#include <memory>
#include <string_view>

#include "kvault/base/result.h"
#include "kvault/kv/radix_tree.h"

namespace kvault::kv {

class EvictionPolicy {
 public:
  virtual ~EvictionPolicy() = default;
  // Blocks with a lower score are evicted first. Depends only on `stats`.
  virtual double Score(const NodeStats& stats) const = 0;
  virtual std::string_view name() const = 0;
};

std::unique_ptr<EvictionPolicy> NewLruPolicy();
std::unique_ptr<EvictionPolicy> NewLfuPolicy();
std::unique_ptr<EvictionPolicy> NewCostPolicy();
Result<std::unique_ptr<EvictionPolicy>> NewEvictionPolicy(std::string_view name);

}  // namespace kvault::kv
