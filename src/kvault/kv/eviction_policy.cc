#include "kvault/kv/eviction_policy.h"

#include <algorithm>
#include <string>

namespace kvault::kv {
namespace {

class LruPolicy final : public EvictionPolicy {
 public:
  double Score(const NodeStats& stats) const override { return stats.last_use_s; }
  std::string_view name() const override { return "lru"; }
};

class LfuPolicy final : public EvictionPolicy {
 public:
  // The tree decays frequency at each touch; ties (equal counts) go to the older block.
  double Score(const NodeStats& stats) const override {
    return stats.frequency + 1e-9 * stats.last_use_s;
  }
  std::string_view name() const override { return "lfu"; }
};

class CostPolicy final : public EvictionPolicy {
 public:
  double Score(const NodeStats& stats) const override {
    const double saved_s = std::max(0.0, stats.recompute_s - stats.restore_s);
    const double idle_s = std::max(0.0, stats.now_s - stats.last_use_s);
    return saved_s * (1.0 + stats.frequency) / (1.0 + idle_s / 600.0);
  }
  std::string_view name() const override { return "cost"; }
};

}  // namespace

std::unique_ptr<EvictionPolicy> NewLruPolicy() { return std::make_unique<LruPolicy>(); }
std::unique_ptr<EvictionPolicy> NewLfuPolicy() { return std::make_unique<LfuPolicy>(); }
std::unique_ptr<EvictionPolicy> NewCostPolicy() { return std::make_unique<CostPolicy>(); }

Result<std::unique_ptr<EvictionPolicy>> NewEvictionPolicy(std::string_view name) {
  if (name == "lru") return NewLruPolicy();
  if (name == "lfu") return NewLfuPolicy();
  if (name == "cost") return NewCostPolicy();
  return InvalidArgumentError("unknown eviction policy '" + std::string(name) +
                              "' (expected lru, lfu or cost)");
}

}  // namespace kvault::kv
