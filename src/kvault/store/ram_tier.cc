// The RAM tier: shared immutable buffers in a hash map.
#include <unordered_map>

#include "kvault/base/mutex.h"
#include "kvault/kv/radix_tree.h"
#include "kvault/store/tier.h"

namespace kvault::store {
namespace {

class RamTier final : public Tier {
 public:
  std::string_view name() const override { return "ram"; }

  Status Put(const BlockName& name, const BlockBytes& bytes) override {
    MutexLock lock(&mu_);
    auto [it, inserted] = blocks_.try_emplace(name, bytes);
    if (!inserted) {
      used_bytes_ -= it->second->size();
      it->second = bytes;
    }
    used_bytes_ += bytes->size();
    return Status::Ok();
  }

  Result<BlockBytes> Get(const BlockName& name) override {
    MutexLock lock(&mu_);
    auto it = blocks_.find(name);
    if (it == blocks_.end()) return NotFoundError("block " + name.ToHex() + " is not in RAM");
    return it->second;
  }

  Status Erase(const BlockName& name) override {
    MutexLock lock(&mu_);
    auto it = blocks_.find(name);
    if (it == blocks_.end()) return Status::Ok();
    used_bytes_ -= it->second->size();
    blocks_.erase(it);
    return Status::Ok();
  }

  bool Contains(const BlockName& name) const override {
    MutexLock lock(&mu_);
    return blocks_.count(name) > 0;
  }

  uint64_t used_bytes() const override {
    MutexLock lock(&mu_);
    return used_bytes_;
  }

  uint64_t n_blocks() const override {
    MutexLock lock(&mu_);
    return blocks_.size();
  }

 private:
  mutable Mutex mu_;
  std::unordered_map<BlockName, BlockBytes, kv::BlockNameHash> blocks_ KV_GUARDED_BY(mu_);
  uint64_t used_bytes_ KV_GUARDED_BY(mu_) = 0;
};

}  // namespace

std::unique_ptr<Tier> NewRamTier() { return std::make_unique<RamTier>(); }

}  // namespace kvault::store
