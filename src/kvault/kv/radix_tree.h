// kv/radix_tree.h: the cached prefixes. A radix tree whose edges are blocks of B tokens:
// every node is one block (named by kv/block_hash.h), its parent is the block before it, so
// the path from the root spells a token prefix and prompts that share a prefix share its
// nodes. Each node records where its bytes live and the numbers the eviction policies rank
// by (hits, last use, decayed frequency, depth, size).
//
// Design note: full blocks (B tokens) are found by hashing, one lookup per block. A sequence
// usually ends inside a block; that tail is cached as a *partial* node (fewer than B tokens,
// always a leaf, since the next full block would start mid-way). Matching is exact at token
// level: after the last whole block that matches, the child (full or partial) sharing the
// most leading tokens with the rest of the prompt is used for as many tokens as agree, so a
// prompt that diverges inside a block still reuses the block's first tokens (the KV of
// position p depends only on tokens 0..p). Token ids are always compared, never only hashes.
//
// The tree stores names and metadata, not KV bytes (the tiers do), so it is tested without
// a model [sglang RadixCache.create_simulated()].
//
// Invariant: a node's parent is in the tree (or it is a root block). Removing a node removes
// its whole subtree, since those blocks can no longer be reached from a prompt.
//
// Thread-safety: not thread-safe; store/block_store.h serializes access.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <llama.h>

#include "kvault/base/status.h"
#include "kvault/kv/block_hash.h"

namespace kvault::kv {

// Where a block's bytes are, as bits; a block can be in several tiers at once.
// kTierRemote: known to be in the shared remote tier (store/remote_tier.h).
enum TierBit : uint8_t { kTierRam = 1, kTierDisk = 2, kTierRemote = 4 };

struct NodeStats {
  uint32_t depth = 0;  // 1 for a first block
  uint64_t bytes = 0;  // encoded size
  uint64_t hits = 0;
  double last_use_s = 0;   // seconds on the caller's clock
  double frequency = 0;    // decayed hit count (see Touch)
  double now_s = 0;        // the caller's clock when ranking
  double recompute_s = 0;  // estimated seconds to prefill the block's prefix again
  double restore_s = 0;    // estimated seconds to restore the block from the next tier down
};

struct BlockNameHash {
  size_t operator()(const BlockName& name) const { return static_cast<size_t>(name.low); }
};

struct RadixNode {
  BlockName name;
  BlockName parent;
  std::vector<llama_token> tokens;  // B tokens, fewer for a partial (tail) node
  uint8_t tiers = 0;
  uint32_t depth = 0;
  uint64_t bytes = 0;
  uint64_t hits = 0;
  double last_use_s = 0;
  double frequency = 0;
  uint32_t pins = 0;  // named sessions that reference the block: never evicted while > 0
  std::unordered_set<BlockName, BlockNameHash> children;

  bool partial(uint32_t block_size) const { return tokens.size() < block_size; }
};

// One block of a match: its first `n_tokens` tokens agree with the prompt (all of them
// except, possibly, for the last block of a match).
struct MatchedBlock {
  BlockName name;
  uint32_t n_tokens = 0;
};

struct PrefixMatch {
  std::vector<MatchedBlock> blocks;
  size_t n_tokens = 0;  // prompt tokens covered
};

class RadixTree {
 public:
  explicit RadixTree(BlockNamespace space, double frequency_half_life_s = 600);

  const BlockNamespace& space() const { return space_; }

  // The longest cached prefix of `tokens` in the partition of `root` (block_hash.h),
  // token-exact (see the design note).
  PrefixMatch Match(std::span<const llama_token> tokens, const BlockName& root = {}) const;

  // Adds a block of 1..B tokens under `parent` (a partition root for a first block).
  // InvalidArgument if the parent is not in the tree or is partial, or the name does not
  // match parent and tokens.
  // An existing node only gains tiers (and its size if `bytes` > 0).
  Status Insert(const BlockName& name, const BlockName& parent, std::span<const llama_token> tokens,
                uint8_t tiers, uint64_t bytes);

  const RadixNode* Find(const BlockName& name) const;
  void AddTiers(const BlockName& name, uint8_t tiers);
  // Drops tiers; a node left in no tier is removed with its subtree. Returns removed names.
  std::vector<BlockName> RemoveTiers(const BlockName& name, uint8_t tiers);
  // Removes the node and its subtree; returns every removed name.
  std::vector<BlockName> Remove(const BlockName& name);
  // Records a use: hits, last use, and frequency decayed with the half-life.
  void Touch(const BlockName& name, double now_s);
  void Pin(const BlockName& name, int delta);

  // Nodes in `tier`, not pinned, with no child in `tier` or any faster tier (`faster_mask`):
  // the only ones eviction may take from that tier.
  std::vector<const RadixNode*> EvictableIn(uint8_t tier, uint8_t faster_mask) const;
  // Whether no child of `node` is in any tier of `mask` (and `node` is not pinned).
  bool EvictableFrom(const RadixNode& node, uint8_t mask) const;

  size_t size() const { return nodes_.size(); }
  void ForEach(const std::function<void(const RadixNode&)>& fn) const;
  // Tokens from the root to `name` (its whole prefix).
  std::vector<llama_token> PrefixTokens(const BlockName& name) const;
  // The partition root `name` hangs under ({} if it is not in the tree).
  BlockName PartitionOf(const BlockName& name) const;

 private:
  double Decay(double frequency, double elapsed_s) const;
  // The child of `parent` (a partition root: its first blocks) sharing the most leading
  // tokens with `rest`.
  MatchedBlock BestPartialChild(const BlockName& parent, std::span<const llama_token> rest) const;

  BlockNamespace space_;
  double half_life_s_;
  std::unordered_map<BlockName, RadixNode, BlockNameHash> nodes_;
  // First blocks, by partition root.
  std::unordered_map<BlockName, std::unordered_set<BlockName, BlockNameHash>, BlockNameHash> roots_;
};

}  // namespace kvault::kv
