// store/block_store.h: the KV blocks kvault keeps off the device. A facade over the radix
// tree of cached prefixes (kv/radix_tree.h), the RAM and disk tiers (store/tier.h), their
// budgets, the eviction policy (kv/eviction_policy.h) and a background disk writer.
//
// Design note: placement and promotion.
//  - Every stored block goes to RAM and is queued for the disk (write-through), so a
//    restarted server finds every conversation's blocks; until its write completes a block
//    counts as on disk and is served from the write queue. A partial (tail) block is written
//    after a delay, since the conversation's next turn usually replaces it; the tails of
//    stateless requests stay in RAM only.
//  - RAM over budget: the policy ranks the RAM blocks none of whose children are in RAM
//    (leaves of the RAM part of the tree) and the lowest go; a block not yet on disk is
//    written first (demotion), unless there is no disk tier, when it is simply dropped.
//  - Disk over budget: the same, among disk blocks with no child on disk or in RAM.
//  - A block read from disk is put back in RAM (promotion).
//  - Pinned blocks (named sessions) are never evicted.
//  - Disk full (the file system, not the budget): writes stop, a log line says so once, and
//    serving goes on from RAM; they resume when space is back.
//  - Start-up: the block files of this namespace are indexed back into the tree (headers
//    only); unreadable files are deleted and counted, orphans (parent gone) too.
//
// Blocks are content-addressed (kv/block_hash.h), so conversations that share a prefix share
// its blocks and storing an existing block only records a hit.
//
// Thread-safety: all methods may be called from any thread. One mutex guards the tree and
// the bookkeeping; encoding, decoding and file I/O run outside it.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <llama.h>

#include "kvault/base/result.h"
#include "kvault/base/storage_health.h"
#include "kvault/kv/radix_tree.h"
#include "kvault/kv/snapshot_codec.h"
#include "kvault/kv/snapshot_layout.h"
#include "kvault/store/tier.h"

namespace kvault::store {

using kv::BlockName;

struct BlockStoreParams {
  kv::BlockNamespace space;
  // The K/V shape of the context blocks are restored into: blocks of any other shape are
  // refused (safe mode recomputes). Empty layers = not checked (unit tests).
  kv::SnapshotShape shape;
  uint64_t ram_budget_bytes = 2048ull << 20;
  uint64_t disk_budget_bytes = 20ull << 30;
  std::string disk_dir;  // "" = no disk tier
  std::string eviction = "cost";
  kv::CodecOptions codec;
  double frequency_half_life_s = 600;
  // Free space the disk tier leaves on its file system.
  uint64_t disk_reserve_bytes = 64ull << 20;
  // Seconds a partial (tail) block waits before its disk write; a tail replaced meanwhile is
  // never written. Flush() and closing write everything still waiting.
  double tail_write_delay_s = 5;
  // Hears of every disk-tier write (may be null): a full or read-only disk is logged once
  // and shown by /health, and the blocks stay in RAM.
  StorageHealth* health = nullptr;
  // Seconds a block may go unused before it is dropped from every tier (pinned ones
  // excepted); 0 = never (only budgets evict). A background sweep runs every ttl_s / 4,
  // at most 1 s apart.
  double ttl_s = 0;
  // The shared remote tier (store/remote_tier.h), or null. Blocks are written to it behind
  // RAM, by a thread of their own; read from it on a RAM and disk miss.
  std::shared_ptr<class RemoteTier> remote;
};

struct TierStats {
  int64_t blocks = 0;
  int64_t bytes = 0;
  int64_t budget_bytes = 0;
  int64_t hits = 0;       // blocks served from this tier
  int64_t misses = 0;     // blocks asked of this tier that it did not have
  int64_t evictions = 0;  // blocks the policy removed from this tier
  int64_t read_bytes = 0;
  double read_seconds = 0;  // reading and decoding
  int64_t write_bytes = 0;
  double write_seconds = 0;
  // Measured bytes per second (a default until something was measured).
  double read_bandwidth = 0;
  double write_bandwidth = 0;
};

struct BlockStoreStats {
  TierStats ram;
  TierStats disk;
  TierStats remote;  // blocks/bytes: what this replica wrote
  bool has_disk = false;
  bool has_remote = false;
  int64_t remote_writes_dropped = 0;  // not written: the remote was down or its queue full
  int64_t tree_nodes = 0;
  int64_t stored_blocks = 0;     // blocks encoded and added
  int64_t stored_bytes = 0;      // their encoded bytes
  int64_t stored_raw_bytes = 0;  // their bytes before encoding
  int64_t corrupt_blocks = 0;    // failed their checksum or could not be read (deleted)
  int64_t incompatible_blocks = 0;
  int64_t recovered_blocks = 0;  // indexed from disk at start-up
  int64_t pending_writes = 0;
  int64_t write_errors = 0;
  int64_t writes_skipped = 0;  // not written: disk full
  int64_t expired_blocks = 0;  // dropped by the TTL (BlockStoreParams::ttl_s)
  int64_t cleared_blocks = 0;  // dropped by Clear / ClearBranch
  bool disk_full = false;
  std::string eviction;
  std::string encoding;
};

// A match with where each block is.
struct LocatedBlock {
  BlockName name;
  uint32_t n_tokens = 0;  // tokens of the block used (the last one may be partial)
  uint8_t tiers = 0;      // kv::TierBit
  uint64_t bytes = 0;     // encoded size
};

struct Lookup {
  std::vector<LocatedBlock> blocks;
  size_t n_tokens = 0;
  // A chain stored by StoreDetached: its first block starts wherever its KV was computed
  // (the others follow it); a prefix's starts at 0.
  bool detached = false;
  uint64_t bytes = 0;
  double restore_seconds = 0;  // estimated from the measured tier bandwidths
};

// Blocks read back: the longest good prefix of a lookup, each sliced to what it covers.
struct Fetched {
  std::vector<kv::KvBlock> blocks;
  size_t n_tokens = 0;
  Status error;  // why it stopped short of the lookup (OK if it did not)
};

// How far FetchEach got: tokens handed over, and why it stopped short (OK if it did not).
struct FetchProgress {
  size_t n_tokens = 0;
  Status error;
};

// Receives a decoded block and how many of its leading tokens the lookup uses; the block is
// valid only during the call. An error ends the fetch.
using BlockVisitor = std::function<Status(const kv::KvBlock& block, uint32_t n_tokens)>;

struct StoreResult {
  int n_new_blocks = 0;  // encoded and added now
  int n_known_blocks = 0;
  BlockName tail;       // the partial last block ({} if the sequence ends on a boundary)
  BlockName last;       // the last block, full or partial ({} if none was stored)
  size_t n_tokens = 0;  // tokens now cached for the sequence
};

// What Clear, ClearBranch or Expire dropped.
struct Removed {
  int64_t blocks = 0;
  int64_t bytes = 0;   // their encoded size
  int64_t pinned = 0;  // blocks left in place because a session pins them
};

// One node for /v1/cache/tree.
struct NodeView {
  BlockName name;
  BlockName parent;
  uint32_t depth = 0;
  uint8_t tiers = 0;
  uint64_t hits = 0;
  uint64_t bytes = 0;
  uint32_t pins = 0;
  double idle_seconds = 0;
  std::vector<llama_token> tokens;  // the block's own tokens
};

class BlockStore {
 public:
  // Opens the tiers and recovers the disk tier's blocks. InvalidArgument for a bad policy
  // name; IOError if the disk folder is unusable.
  static Result<std::unique_ptr<BlockStore>> Open(const BlockStoreParams& params);
  ~BlockStore();  // finishes queued disk writes
  BlockStore(const BlockStore&) = delete;
  BlockStore& operator=(const BlockStore&) = delete;

  const BlockStoreParams& params() const;

  // With a remote tier: asks it for the blocks of `tokens` past what the tree already holds
  // (their names follow from the tokens) and adds those it has to the tree, so Find sees
  // them. `tail_hint` names a partial last block worth asking for (a conversation's journaled
  // tail; when the tree already has it, nothing is asked). One round trip; network I/O, so
  // never on the engine thread. Returns the tokens added.
  size_t Discover(std::span<const llama_token> tokens, const BlockName& root = {},
                  const BlockName& tail_hint = {});
  bool has_remote() const;
  // Waits (at most `max_wait`) until the blocks queued for the remote tier so far are
  // written or have failed.
  void AwaitRemote(std::chrono::milliseconds max_wait);
  // The longest cached prefix of `tokens` in the partition of `root` (kv/block_hash.h: {} is
  // the shared one) and where its blocks are.
  Lookup Find(std::span<const llama_token> tokens, const BlockName& root = {}) const;
  // Reads, checks and decodes the blocks of `lookup` in order, promoting disk blocks to RAM
  // and recording hits. A block that fails (corrupt, gone, incompatible) ends the fetch:
  // corrupt files are deleted and the block leaves the tree.
  Fetched Fetch(const Lookup& lookup);
  // The same, handing each block to `visit` as it is decoded instead of keeping them all:
  // the restore path, which copies each block straight into the bytes llama.cpp imports.
  FetchProgress FetchEach(const Lookup& lookup, const BlockVisitor& visit);
  // Stores the blocks of a sequence: `kv` holds positions [0, tokens.size()) and `tokens`
  // their ids. Blocks already cached only record a use. `previous_tail` (the partial block
  // this sequence stored last time, if any) is dropped when the new blocks supersede it.
  // Without `persist_tail` the partial last block stays in RAM only (stateless requests: a
  // restart need not find it), and is dropped rather than demoted under pressure.
  // The blocks go into the partition of `root`.
  Result<StoreResult> Store(std::span<const llama_token> tokens, const kv::KvBlock& kv,
                            const BlockName& previous_tail, bool persist_tail = true,
                            const BlockName& root = {});

  // --- History KV (conversation/recall_kv.h) ---------------------------------------------
  // Stores `kv`, which holds `tokens` at the positions they were computed at (any, not
  // necessarily from 0), as a chain under `root` (a partition root of its own, so no prefix
  // lookup of another root meets it), encoded with `codec` rather than the store's own. Same
  // tiers, budgets, eviction and TTL as prefix blocks; blocks already cached only record a
  // use. Read back with Find(tokens, root), then Fetch/FetchEach of the lookup with
  // `detached` set.
  Result<StoreResult> StoreDetached(std::span<const llama_token> tokens, const kv::KvBlock& kv,
                                    const BlockName& root, const kv::CodecOptions& codec);
  // Whether the chain of `tokens` under `root` is wholly in the tree (no read, no use).
  bool Has(std::span<const llama_token> tokens, const BlockName& root) const;

  // Pins (delta > 0) or unpins the blocks of the longest cached prefix of `tokens` (the last
  // may be used only in part). Returns their names.
  std::vector<BlockName> Pin(std::span<const llama_token> tokens, int delta,
                             const BlockName& root = {});
  void PinNames(std::span<const BlockName> names, int delta);
  // Drops a block (and what hangs below it) from every tier, unless it is pinned; for a
  // conversation's own tail.
  void Drop(const BlockName& name);
  // Drops every unpinned block of `partitions` (all if empty) from every tier: POST
  // /v1/cache/clear. Blocks that pinned blocks hang below stay too (the tree's invariant).
  Removed Clear(std::span<const BlockName> partitions = {});
  // Drops the branch that ends at `last`: `last`, then each parent left with no other child,
  // up to the first pinned or shared block. A conversation's own blocks: the prefix it shares
  // with other prompts stays.
  Removed ClearBranch(const BlockName& last);
  // Drops the unpinned blocks unused for longer than params().ttl_s (nothing if it is 0);
  // also run by the store's own sweep.
  Removed Expire();

  // --- Encoded blocks as they are: session files (conversation/session_file.h) ----------
  // The encoded bytes of `names`, in order, from RAM, the write queue or the disk; stops
  // before the first block it does not have, so the result is a prefix of `names`. Records
  // no use and promotes nothing (an export must not reorder the cache).
  std::vector<BlockBytes> ReadEncoded(std::span<const BlockName> names);
  // Adds encoded blocks (kv/snapshot_codec.h) as they are: a chain whose first block hangs
  // under `root` and each next one under the block before it. All of them are decoded and
  // checked first (checksum, positions, each name against its parent and tokens), and any
  // failure returns before anything is added: Corruption for a bad block,
  // FailedPrecondition for a block of another namespace (model, cache type, block size) or
  // shape. Blocks already cached only record a use; new ones go to RAM and the disk.
  // Returns the tokens the chain covers.
  Result<size_t> InsertEncoded(std::span<const BlockBytes> blocks, const BlockName& root = {});

  // The measured cost of prefill, for the cost policy and restore-or-recompute decisions.
  void RecordPrefill(int64_t n_tokens, double seconds);
  double prefill_seconds_per_token() const;

  // Waits until queued disk writes are done (tests, shutdown, session saves).
  void Flush();

  BlockStoreStats stats() const;
  // The `limit` nodes with the most hits, most first; only those of `partitions` (their
  // roots) unless it is empty.
  std::vector<NodeView> TopNodes(size_t limit, std::span<const BlockName> partitions = {}) const;
  // Nodes of `partitions` (all if empty).
  size_t CountNodes(std::span<const BlockName> partitions = {}) const;

 private:
  struct Impl;
  explicit BlockStore(std::unique_ptr<Impl> impl);
  Result<StoreResult> StoreChain(std::span<const llama_token> tokens, const kv::KvBlock& kv,
                                 const BlockName& previous_tail, bool persist_tail,
                                 const BlockName& root, const kv::CodecOptions& codec);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvault::store
