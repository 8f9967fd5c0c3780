// BlockStore start-up: the disk tier's block files are indexed back into the radix tree from
// their headers, parents before children. A file whose header is unreadable is deleted; so is
// one whose chain no longer reaches a root (its KV could never be used: a prefix block is
// gone). The payload checksums are verified when a block is read (BlockStore::Fetch).
#include <unordered_map>

#include "kvault/base/log.h"
#include "kvault/store/block_store_impl.h"

namespace kvault::store {
namespace {

// Enough for the header of any block: 76 bytes + 40 per layer + 4 per token.
constexpr size_t kHeaderReadBytes = 256 << 10;

}  // namespace

void BlockStore::Impl::Recover() {
  std::unordered_map<BlockName, kv::BlockMeta, kv::BlockNameHash> metas;
  std::unordered_map<BlockName, uint64_t, kv::BlockNameHash> sizes;
  std::vector<BlockName> unusable;
  for (const DiskBlockFile& file : disk->Recovered()) {
    Result<std::vector<uint8_t>> head = disk->ReadPrefix(file.name, kHeaderReadBytes);
    Result<kv::BlockMeta> meta = head.ok() ? kv::PeekBlockMeta(*head) : head.status();
    if (!meta.ok() || !(meta->name == file.name) || !(meta->space == params.space)) {
      unusable.push_back(file.name);
      continue;
    }
    sizes[file.name] = file.size;
    metas.emplace(file.name, std::move(meta).value());
  }
  MutexLock lock(&mu);
  counters.corrupt_blocks += static_cast<int64_t>(unusable.size());
  // Insert each block after its parent: walk up to an inserted ancestor (or a root), then
  // insert on the way back down.
  int64_t orphans = 0;
  for (const auto& [name, meta] : metas) {
    std::vector<const kv::BlockMeta*> chain;
    for (const kv::BlockMeta* at = &meta; at != nullptr;) {
      if (tree.Find(at->name) != nullptr) break;
      chain.push_back(at);
      if (kv::IsPartitionRoot(at->parent)) break;
      auto parent = metas.find(at->parent);
      at = parent == metas.end() ? nullptr : &parent->second;
    }
    for (auto it = chain.rbegin(); it != chain.rend(); ++it) {
      const kv::BlockMeta& block = **it;
      if (!tree.Insert(block.name, block.parent, block.tokens, kv::kTierDisk, sizes[block.name])
               .ok()) {
        break;  // an orphan: its parent is not on disk; found again below
      }
      ++counters.recovered_blocks;
    }
  }
  for (const auto& [name, meta] : metas) {
    if (tree.Find(name) == nullptr) {
      unusable.push_back(name);
      ++orphans;
    }
  }
  for (const BlockName& name : unusable) disk->Erase(name).IgnoreError();
  if (!metas.empty() || !unusable.empty()) {
    KV_LOG(kInfo) << "store: recovered " << counters.recovered_blocks << " blocks ("
                  << disk->used_bytes() << " bytes) from disk; deleted "
                  << unusable.size() - static_cast<size_t>(orphans) << " unreadable and " << orphans
                  << " orphaned block files";
  }
  EvictDisk();
}

}  // namespace kvault::store
