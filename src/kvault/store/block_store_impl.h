// store/block_store_impl.h: BlockStore's private state, shared by block_store.cc (lookups,
// reads, writes of blocks), block_placement.cc (eviction, the disk writer) and
// block_recovery.cc (start-up). Not part of the store's interface.
#pragma once

#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "kvault/base/buffer_pool.h"
#include "kvault/base/mutex.h"
#include "kvault/kv/eviction_policy.h"
#include "kvault/kv/radix_tree.h"
#include "kvault/store/block_store.h"
#include "kvault/store/remote_tier.h"
#include "kvault/store/tier.h"

namespace kvault::store {

// Before anything is measured: conservative rates of this class of machine.
inline constexpr double kDefaultRamBandwidth = 4e9;   // bytes/s, decode included
inline constexpr double kDefaultDiskBandwidth = 5e8;  // bytes/s
inline constexpr double kDefaultPrefillSecondsPerToken = 3e-3;
// A Redis on another machine of the same network, round trip included.
inline constexpr double kDefaultRemoteBandwidth = 2e8;  // bytes/s
// Blocks waiting for the remote tier beyond this are dropped (counted): a remote that is
// down or slow must not grow the replica's memory.
inline constexpr uint64_t kMaxRemoteQueueBytes = uint64_t{256} << 20;

struct BlockStore::Impl {
  BlockStoreParams params;
  std::unique_ptr<kv::EvictionPolicy> policy;
  std::unique_ptr<Tier> ram;
  // FetchEach decodes into these (one per fetch in flight; see base/buffer_pool.h).
  BufferPool decode_buffers{4, size_t{256} << 20};
  std::unique_ptr<DiskTier> disk;      // null without a disk tier
  std::shared_ptr<RemoteTier> remote;  // null without a remote tier
  const std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();

  mutable Mutex mu;
  kv::RadixTree tree KV_GUARDED_BY(mu);
  // Blocks queued for the disk; served from here until written.
  std::unordered_map<BlockName, BlockBytes, kv::BlockNameHash> pending KV_GUARDED_BY(mu);
  std::deque<BlockName> queue KV_GUARDED_BY(mu);
  // Partial (tail) blocks wait before their write: a conversation's next turn usually
  // replaces its tail, which then never costs a disk write. (due time, name), in due order.
  std::deque<std::pair<double, BlockName>> delayed KV_GUARDED_BY(mu);
  int flushing KV_GUARDED_BY(mu) = 0;  // Flush() calls waiting: delayed writes are due now
  uint64_t pending_bytes KV_GUARDED_BY(mu) = 0;
  bool writing KV_GUARDED_BY(mu) = false;
  bool stopping KV_GUARDED_BY(mu) = false;
  CondVar work;  // the writer waits for blocks
  CondVar idle;  // Flush waits for an empty queue
  CondVar stop;  // the expirer sleeps on it between sweeps
  BlockStoreStats counters KV_GUARDED_BY(mu);
  double prefill_seconds_per_token KV_GUARDED_BY(mu) = kDefaultPrefillSecondsPerToken;
  int64_t prefill_tokens KV_GUARDED_BY(mu) = 0;
  double prefill_seconds KV_GUARDED_BY(mu) = 0;
  std::thread writer;
  // Drops idle blocks every sweep period (only with params.ttl_s > 0).
  std::thread expirer;
  // Blocks to write to the remote tier, oldest first, by their own thread (remote_writer).
  std::deque<std::pair<BlockName, BlockBytes>> remote_queue KV_GUARDED_BY(mu);
  std::unordered_set<BlockName, kv::BlockNameHash> remote_queued KV_GUARDED_BY(mu);
  uint64_t remote_queue_bytes KV_GUARDED_BY(mu) = 0;
  bool remote_writing KV_GUARDED_BY(mu) = false;
  CondVar remote_work;
  CondVar remote_idle;  // Flush waits for an empty remote queue
  std::thread remote_writer;

  explicit Impl(const BlockStoreParams& p) : params(p), tree(p.space, p.frequency_half_life_s) {}

  double Now() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  }
  // While the disk is full nothing is queued for it, but every kRetryFullDiskSeconds a
  // write is tried again, so writes resume once space is back.
  bool DiskWritable() const KV_REQUIRES(mu) {
    return disk && (!counters.disk_full || Now() - disk_full_since_s > kRetryFullDiskSeconds);
  }
  static constexpr double kRetryFullDiskSeconds = 10;
  double disk_full_since_s KV_GUARDED_BY(mu) = 0;

  // --- block_placement.cc ---------------------------------------------------------------
  void StartWriter();
  void StopWriter();
  void WriterLoop();
  // Queues `bytes` for the disk tier, to be written after `delay_s`. REQUIRES: DiskWritable().
  void EnqueueWrite(const BlockName& name, const BlockBytes& bytes, double delay_s = 0)
      KV_REQUIRES(mu);
  // The next block the writer should write now, if any; else how long to wait (< 0: until
  // signalled).
  bool NextWrite(BlockName* name, double* wait_s) KV_REQUIRES(mu);
  // Evicts RAM blocks until RAM is within budget.
  void EvictRam() KV_REQUIRES(mu);
  // Evicts disk blocks until the disk tier is within budget.
  void EvictDisk() KV_REQUIRES(mu);
  // Removes, leaves first, every unpinned block `wanted` selects and every block of which
  // all the blocks hanging below were removed and that `wanted` selects too. Counts the
  // pinned leaves it left.
  Removed RemoveLeavesWhile(
      const std::function<bool(const kv::RadixNode&, const kv::RadixTree&)>& wanted)
      KV_REQUIRES(mu);
  // The TTL: removes the unpinned blocks idle for longer than params.ttl_s, counted.
  Removed ExpireIdle() KV_REQUIRES(mu);
  void ExpirerLoop();
  // Queues a block for the remote tier unless it is there or queued already.
  void EnqueueRemote(const BlockName& name, const BlockBytes& bytes) KV_REQUIRES(mu);
  void RemoteWriterLoop();
  // Deletes the bytes of removed tree nodes from every tier.
  void ForgetRemoved(const std::vector<BlockName>& removed) KV_REQUIRES(mu);
  kv::NodeStats RankStats(const kv::RadixNode& node, uint8_t tier) const KV_REQUIRES(mu);
  double ReadBandwidth(const TierStats& tier, double fallback) const;

  // --- block_recovery.cc ----------------------------------------------------------------
  void Recover() KV_EXCLUDES(mu);
};

}  // namespace kvault::store
