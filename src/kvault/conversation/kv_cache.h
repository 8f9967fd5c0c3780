// conversation/kv_cache.h: where a request's prompt prefix comes from. Before a generation,
// the conversation's sequence is made to hold the longest prefix of the prompt that can be
// had more cheaply than by prefill: its own cells, another parked sequence's, or blocks of
// the store (RAM or disk). kv_source.h makes that choice, once, on the engine thread and
// before any block is read; only a chosen restore is then fetched (on the request's thread)
// and imported.
//
// After a generation the sequence's KV is checkpointed into the block store (new blocks
// only; a conversation's partial tail replaces its previous one), so the conversation
// survives losing its sequence, and a restart.
//
// Isolation: with API keys, a request reuses only its own scope's KV: blocks of the scope's
// partition (kv/block_hash.h) and parked sequences of its scope's conversations, plus what
// the operator declared shared (the shared partition and scope "": --preload prefixes, which
// run without a key). `share_across_scopes` (--shared-cache) turns that off: every scope then
// reuses every prefix, and can tell from the speed of a reply what another scope sent.
//
// Safe mode: any restore failure (corrupt or missing block, other model, format drift, import
// refused) falls back to recomputing; the request goes on; a counter and one log line record
// it.
//
// Thread-safety: all methods may be called from any thread; KV operations run on the
// scheduler's engine thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <span>
#include <string_view>

#include <llama.h>

#include "kvault/base/buffer_pool.h"
#include "kvault/base/result.h"
#include "kvault/conversation/kv_source.h"
#include "kvault/conversation/sequence_pool.h"
#include "kvault/engine/context.h"
#include "kvault/engine/scheduler.h"
#include "kvault/kv/block_hash.h"
#include "kvault/kv/snapshot_layout.h"
#include "kvault/store/block_store.h"

namespace kvault::conversation {

struct PreparedPrefix {
  size_t n_tokens = 0;  // prompt tokens whose KV the sequence now holds
  PrefixSource source = PrefixSource::kNone;
  double restore_ms = 0;   // reading, decoding and importing (restore only)
  bool fell_back = false;  // safe mode: a restore failed and the prompt is recomputed
};

// What a checkpoint left in the store for the conversation.
struct CheckpointBlocks {
  kv::BlockName tail;  // the partial last block, its own ({} if it ended on a boundary)
  kv::BlockName last;  // the last block, full or partial: where its branch ends
};

struct KvCacheStats {
  int64_t own = 0;  // requests by where their prefix came from
  int64_t shared = 0;
  int64_t restored_ram = 0;
  int64_t restored_disk = 0;
  int64_t restored_remote = 0;
  int64_t cold = 0;
  int64_t restored_tokens = 0;
  int64_t shared_tokens = 0;
  int64_t recompute_chosen = 0;  // the store had more, but prefill was estimated faster
  int64_t safe_mode_fallbacks = 0;
  int64_t checkpoints = 0;
  int64_t checkpoint_errors = 0;
  double restore_seconds = 0;
  double checkpoint_seconds = 0;
};

class KvCache {
 public:
  // `store` may be null: then only device sequences are reused. REQUIRES: the pointees
  // outlive the KvCache.
  // `n_stream`: the streams of the context's KV cache (engine::Context::n_stream()).
  KvCache(engine::Scheduler* scheduler, SequencePool* pool, store::BlockStore* store,
          RestorePolicy policy, uint32_t n_stream, bool share_across_scopes = false);

  // Makes `lease.seq_id` hold the cheapest longest prefix of prompt[0, size - 1) (the last
  // token is always decoded: its logits start the reply) that `scope` may reuse. Errors only
  // if the engine stopped.
  // `tail_hint`: the conversation's journaled tail block, worth asking the remote tier for.
  Result<PreparedPrefix> Prepare(const SequenceLease& lease, std::span<const llama_token> prompt,
                                 const std::string& scope = "",
                                 const kv::BlockName& tail_hint = {});

  // Stores the blocks of what `seq_id` holds (`held`, from position 0) in `scope`'s
  // partition and returns the new partial tail block ({} if none) and the last block. Failures
  // are logged and counted, never fatal: the previous tail is returned and `last` is {}.
  // Without `persist_tail` the partial tail stays in RAM (stateless requests).
  // `also`, if set, is handed the sequence's parsed state once stored (recall_kv.h keeps
  // spans of it), on the calling thread.
  CheckpointBlocks Checkpoint(llama_seq_id seq_id, std::span<const llama_token> held,
                              const kv::BlockName& previous_tail, bool persist_tail = true,
                              const std::string& scope = "",
                              const std::function<void(const kv::KvBlock&)>& also = {});

  // Feeds the measured prefill rate to the restore-or-recompute decision.
  void RecordPrefill(int64_t n_tokens, double seconds);

  // --- Pins and drops: the only code that keeps blocks from eviction or removes them ------
  struct Pinned {
    std::vector<kv::BlockName> blocks;  // to unpin later
    int64_t tokens = 0;                 // tokens they cover
    int64_t bytes = 0;                  // their encoded size
  };
  // Pins the blocks of the longest cached prefix of `tokens` in `scope`'s partition
  // (sessions, preloaded prefixes). Nothing without a store.
  Pinned Pin(std::span<const llama_token> tokens, const std::string& scope = "");
  // The partition root of `scope`'s blocks ({} = shared).
  kv::BlockName PartitionOf(const std::string& scope) const;
  // The partitions whose blocks `scope` may see (GET /v1/cache/tree); empty = all.
  std::vector<kv::BlockName> VisiblePartitions(const std::string& scope) const;
  // Whether a request of `scope` may reuse a parked sequence of conversation key `owner`.
  bool MayShare(const std::string& scope, std::string_view owner) const;
  void Unpin(std::span<const kv::BlockName> blocks);
  // Pins again what was pinned before a restart (the store's pins live in memory).
  void Repin(std::span<const kv::BlockName> blocks);
  // Drops an ended conversation's own partial tail block; shared blocks age out.
  void DropTail(const kv::BlockName& tail);
  // POST /v1/cache/clear. Drops every stored block `scope` owns, pinned ones excepted: all
  // blocks without API keys (scope ""), the key's own partition with them (the shared,
  // preloaded prefixes stay). FailedPrecondition for a key under --shared-cache, where no
  // block is a key's own.
  Result<store::Removed> ClearScope(const std::string& scope);
  // Drops a conversation's own blocks: the branch ending at `last` up to the prefix it
  // shares with other prompts (store::BlockStore::ClearBranch).
  store::Removed ClearBranch(const kv::BlockName& last);

  store::BlockStore* store() const { return store_; }
  RestorePolicy policy() const { return policy_; }
  KvCacheStats stats() const;

 private:
  struct Restore;
  Restore FetchFromStore(const store::Lookup& lookup, size_t own, llama_seq_id seq_id);
  // On the engine thread: makes the sequence hold a device source's prefix (own or shared).
  static Status UseDevice(engine::Context& context, llama_seq_id seq_id,
                          const KvSourceChoice& choice, llama_seq_id shared_seq,
                          PreparedPrefix* prepared);
  // On the engine thread: imports a fetched prefix, or keeps the own cells if it fell short.
  static Status Import(engine::Context& context, llama_seq_id seq_id, size_t own,
                       const Restore& restore, PreparedPrefix* prepared);
  void CountSource(const PreparedPrefix& prepared);

  engine::Scheduler* const scheduler_;
  SequencePool* const pool_;
  store::BlockStore* const store_;
  const RestorePolicy policy_;
  const uint32_t n_stream_;
  const bool share_across_scopes_;
  // Restored states are assembled in these (see base/buffer_pool.h): two, for restores of
  // requests that overlap.
  BufferPool state_buffers_{2, size_t{1} << 30};
  mutable Mutex mu_;
  KvCacheStats stats_ KV_GUARDED_BY(mu_);
};

}  // namespace kvault::conversation
