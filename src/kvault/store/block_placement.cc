// BlockStore placement: eviction from RAM and disk under their budgets, and the background
// thread that writes blocks to the disk tier.
#include <algorithm>
#include <chrono>

#include "kvault/base/log.h"
#include "kvault/store/block_store_impl.h"

namespace kvault::store {

double BlockStore::Impl::ReadBandwidth(const TierStats& tier, double fallback) const {
  // A few milliseconds of reads are too few to trust.
  return tier.read_seconds > 0.005 ? static_cast<double>(tier.read_bytes) / tier.read_seconds
                                   : fallback;
}

// What keeping `node` in `tier` is worth: the policy compares the cost of getting it back
// once evicted (from the next tier down, or by prefill) with restoring it from here.
kv::NodeStats BlockStore::Impl::RankStats(const kv::RadixNode& node, uint8_t tier) const {
  kv::NodeStats stats;
  stats.depth = node.depth;
  stats.bytes = node.bytes;
  stats.hits = node.hits;
  stats.last_use_s = node.last_use_s;
  stats.frequency = node.frequency;
  stats.now_s = Now();
  const double prefix_tokens =
      static_cast<double>(node.depth - 1) * params.space.block_size + node.tokens.size();
  const double recompute_s = prefix_tokens * prefill_seconds_per_token;
  const double ram_s = node.bytes / ReadBandwidth(counters.ram, kDefaultRamBandwidth);
  const double disk_s = node.bytes / ReadBandwidth(counters.disk, kDefaultDiskBandwidth);
  if (tier == kv::kTierRam) {
    stats.recompute_s = disk ? disk_s : recompute_s;
    stats.restore_s = ram_s;
  } else {
    stats.recompute_s = recompute_s;
    stats.restore_s = disk_s;
  }
  return stats;
}

void BlockStore::Impl::EnqueueWrite(const BlockName& name, const BlockBytes& bytes,
                                    double delay_s) {
  if (pending.try_emplace(name, bytes).second) {
    if (delay_s > 0) {
      delayed.emplace_back(Now() + delay_s, name);
    } else {
      queue.push_back(name);
    }
    pending_bytes += bytes->size();
    work.Signal();
  }
}

bool BlockStore::Impl::NextWrite(BlockName* name, double* wait_s) {
  if (!queue.empty()) {
    *name = queue.front();
    queue.pop_front();
    return true;
  }
  *wait_s = -1;
  if (delayed.empty()) return false;
  const double due = delayed.front().first;
  if (due <= Now() || flushing > 0 || stopping) {
    *name = delayed.front().second;
    delayed.pop_front();
    return true;
  }
  *wait_s = due - Now();
  return false;
}

void BlockStore::Impl::EvictRam() {
  while (ram->used_bytes() > params.ram_budget_bytes) {
    std::vector<const kv::RadixNode*> candidates = tree.EvictableIn(kv::kTierRam, 0);
    if (candidates.empty()) return;  // everything left is pinned
    std::vector<std::pair<double, BlockName>> ranked;
    ranked.reserve(candidates.size());
    for (const kv::RadixNode* node : candidates) {
      ranked.emplace_back(policy->Score(RankStats(*node, kv::kTierRam)), node->name);
    }
    std::sort(ranked.begin(), ranked.end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });
    for (const auto& [score, name] : ranked) {
      if (ram->used_bytes() <= params.ram_budget_bytes) return;
      const kv::RadixNode* node = tree.Find(name);
      // A tail that was not to be kept on disk is cheap to recompute: it is just dropped.
      const bool demote = !node->partial(params.space.block_size) || pending.count(name) > 0;
      if ((node->tiers & kv::kTierDisk) == 0 && DiskWritable() && demote) {
        Result<BlockBytes> bytes = ram->Get(name);
        if (bytes.ok()) {
          EnqueueWrite(name, *bytes);  // demotion
          tree.AddTiers(name, kv::kTierDisk);
        }
      }
      ram->Erase(name).IgnoreError();
      ++counters.ram.evictions;
      // Without a copy below, the block leaves the tree (a leaf of the RAM part: nothing of
      // its subtree is in RAM, and without a disk tier nothing is anywhere else).
      ForgetRemoved(tree.RemoveTiers(name, kv::kTierRam));
    }
  }
}

// Two kinds of candidates, the first all before the second: blocks only on disk whose
// children are nowhere (they leave the tree), then disk copies of blocks also in RAM whose
// children are not on disk (the block stays in RAM; only a restart would miss it).
void BlockStore::Impl::EvictDisk() {
  if (!disk) return;
  constexpr double kStillInRam = 1e30;
  while (disk->used_bytes() + pending_bytes > params.disk_budget_bytes) {
    std::vector<std::pair<double, BlockName>> ranked;
    for (const kv::RadixNode* node : tree.EvictableIn(kv::kTierDisk, 0)) {
      if (pending.count(node->name) > 0) continue;  // its write is still queued
      const bool in_ram = (node->tiers & kv::kTierRam) != 0;
      if (!in_ram && !tree.EvictableFrom(*node, kv::kTierDisk | kv::kTierRam)) continue;
      ranked.emplace_back(
          policy->Score(RankStats(*node, kv::kTierDisk)) + (in_ram ? kStillInRam : 0), node->name);
    }
    if (ranked.empty()) return;
    std::sort(ranked.begin(), ranked.end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });
    for (const auto& [score, name] : ranked) {
      if (disk->used_bytes() + pending_bytes <= params.disk_budget_bytes) return;
      ++counters.disk.evictions;
      disk->Erase(name).IgnoreError();
      ForgetRemoved(tree.RemoveTiers(name, kv::kTierDisk));
    }
  }
}

// Unlinking a block file is cheap, so it happens under the store's lock: the index and the
// files never disagree.
void BlockStore::Impl::ForgetRemoved(const std::vector<BlockName>& removed) {
  for (const BlockName& name : removed) {
    ram->Erase(name).IgnoreError();
    if (disk) {
      Status erased = disk->Erase(name);
      if (!erased.ok()) {
        KV_LOG(kWarning) << "store: " << erased.message();
      }
    }
    // A queued write of a removed block is skipped by the writer (the node is gone).
  }
}

Removed BlockStore::Impl::RemoveLeavesWhile(
    const std::function<bool(const kv::RadixNode&, const kv::RadixTree&)>& wanted) {
  std::vector<std::pair<uint32_t, BlockName>> candidates;
  std::vector<const kv::RadixNode*> nodes;
  nodes.reserve(tree.size());
  tree.ForEach([&nodes](const kv::RadixNode& node) { nodes.push_back(&node); });
  for (const kv::RadixNode* node : nodes) {
    if (wanted(*node, tree)) candidates.emplace_back(node->depth, node->name);
  }
  // Deepest first, so a block's children have had their turn before it: one pass removes a
  // whole idle branch however long, and a block keeps its place while anything below stays.
  std::sort(candidates.begin(), candidates.end(),
            [](const auto& a, const auto& b) { return a.first > b.first; });
  Removed removed;
  for (const auto& [depth, name] : candidates) {
    const kv::RadixNode* node = tree.Find(name);
    if (node == nullptr || !node->children.empty()) continue;
    if (node->pins > 0) {
      ++removed.pinned;
      continue;
    }
    ++removed.blocks;
    removed.bytes += static_cast<int64_t>(node->bytes);
    ForgetRemoved(tree.Remove(name));
  }
  return removed;
}

Removed BlockStore::Impl::ExpireIdle() {
  if (params.ttl_s <= 0) return {};
  const double now = Now();
  const Removed removed = RemoveLeavesWhile([&](const kv::RadixNode& node, const kv::RadixTree&) {
    return now - node.last_use_s > params.ttl_s;
  });
  counters.expired_blocks += removed.blocks;
  if (removed.blocks > 0) {
    KV_LOG(kInfo) << "store: " << removed.blocks << " blocks (" << removed.bytes
                  << " bytes) unused for over " << params.ttl_s << " s expired (--cache-ttl)";
  }
  return removed;
}

void BlockStore::Impl::ExpirerLoop() {
  const auto period = std::chrono::milliseconds(
      static_cast<int64_t>(std::clamp(params.ttl_s / 4, 0.01, 1.0) * 1000));
  MutexLock lock(&mu);
  while (!stopping) {
    stop.WaitFor(&mu, period);
    if (!stopping) ExpireIdle();
  }
}

void BlockStore::Impl::StartWriter() {
  if (disk) writer = std::thread([this] { WriterLoop(); });
  if (params.ttl_s > 0) expirer = std::thread([this] { ExpirerLoop(); });
  if (remote) remote_writer = std::thread([this] { RemoteWriterLoop(); });
}

void BlockStore::Impl::EnqueueRemote(const BlockName& name, const BlockBytes& bytes) {
  const kv::RadixNode* node = tree.Find(name);
  if (!remote || node == nullptr || (node->tiers & kv::kTierRemote) != 0) return;
  if (!remote_queued.insert(name).second) return;
  remote_queue.emplace_back(name, bytes);
  remote_queue_bytes += bytes->size();
  // Oldest first out: a remote that cannot keep up loses the blocks least likely to matter
  // (a conversation's latest blocks are the ones another replica resumes from).
  while (remote_queue_bytes > kMaxRemoteQueueBytes && remote_queue.size() > 1) {
    remote_queue_bytes -= remote_queue.front().second->size();
    remote_queued.erase(remote_queue.front().first);
    remote_queue.pop_front();
    ++counters.remote_writes_dropped;
  }
  remote_work.Signal();
}

void BlockStore::Impl::RemoteWriterLoop() {
  while (true) {
    std::pair<BlockName, BlockBytes> item;
    {
      MutexLock lock(&mu);
      while (remote_queue.empty() && !stopping) remote_work.Wait(&mu);
      if (remote_queue.empty()) return;  // stopping, and everything queued was tried
      item = std::move(remote_queue.front());
      remote_queue.pop_front();
      remote_queue_bytes -= item.second->size();
      remote_writing = true;
    }
    const auto start = std::chrono::steady_clock::now();
    const Status written = remote->Put(item.first, item.second);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    MutexLock lock(&mu);
    remote_writing = false;
    remote_queued.erase(item.first);
    if (written.ok()) {
      counters.remote.write_bytes += static_cast<int64_t>(item.second->size());
      counters.remote.write_seconds += seconds;
      if (tree.Find(item.first) != nullptr) tree.AddTiers(item.first, kv::kTierRemote);
    } else {
      // Logged by the client once per outage; the block is queued again when next stored.
      ++counters.remote_writes_dropped;
    }
    if (remote_queue.empty()) remote_idle.SignalAll();
  }
}

void BlockStore::Impl::StopWriter() {
  {
    MutexLock lock(&mu);
    stopping = true;
    work.SignalAll();
    stop.SignalAll();
    remote_work.SignalAll();
  }
  if (writer.joinable()) writer.join();
  if (expirer.joinable()) expirer.join();
  if (remote_writer.joinable()) remote_writer.join();
}

void BlockStore::Impl::WriterLoop() {
  while (true) {
    BlockName name;
    BlockBytes bytes;
    {
      MutexLock lock(&mu);
      double wait_s = -1;
      while (!NextWrite(&name, &wait_s)) {
        if (stopping) return;  // every queued block is written
        if (wait_s < 0) {
          work.Wait(&mu);
        } else {
          work.WaitFor(&mu, std::chrono::milliseconds(static_cast<int64_t>(wait_s * 1000) + 1));
        }
      }
      bytes = pending.at(name);
      writing = true;
    }
    Status written = Status::Ok();
    bool skipped = false;
    const bool wanted = [&] {
      MutexLock lock(&mu);
      return tree.Find(name) != nullptr;
    }();
    const auto start = std::chrono::steady_clock::now();
    if (wanted) {
      Result<uint64_t> free = disk->FreeBytes();
      skipped = free.ok() && *free < bytes->size() + params.disk_reserve_bytes;
      if (!skipped) written = disk->Put(name, bytes);
      if (params.health != nullptr) {
        // A write skipped for lack of room is a failing disk too (it is how a full one shows).
        params.health
            ->Note(StorageArea::kBlocks,
                   skipped ? ResourceExhaustedError("the disk tier's file system has "
                                                    "less free space than its reserve")
                                 .WithDetail(ErrorDetail::kInsufficientStorage)
                           : written)
            .IgnoreError();
      }
    }
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    {
      MutexLock lock(&mu);
      pending.erase(name);
      pending_bytes -= bytes->size();
      writing = false;
      const bool full = skipped || written.code() == StatusCode::kResourceExhausted;
      if (full) disk_full_since_s = Now();  // the next retry is a full interval away
      if (full != counters.disk_full) {
        counters.disk_full = full;
        if (full) {
          KV_LOG(kWarning) << "store: the disk tier's file system is full; block writes stop "
                              "and serving goes on from RAM";
        } else {
          KV_LOG(kInfo) << "store: disk space is back; block writes resume";
        }
      }
      if (wanted && written.ok() && !skipped) {
        counters.disk.write_bytes += static_cast<int64_t>(bytes->size());
        counters.disk.write_seconds += seconds;
        if (tree.Find(name) == nullptr) disk->Erase(name).IgnoreError();  // dropped meanwhile
      } else if (wanted) {
        if (skipped) {
          ++counters.writes_skipped;
        } else {
          ++counters.write_errors;
          if (!full && params.health == nullptr) {
            KV_LOG(kWarning) << "store: " << written.message();
          }
        }
        ForgetRemoved(tree.RemoveTiers(name, kv::kTierDisk));
      }
      EvictDisk();
      if (queue.empty() && delayed.empty()) idle.SignalAll();
    }
  }
}

}  // namespace kvault::store
