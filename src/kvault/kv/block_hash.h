// kv/block_hash.h: block names. A block of B tokens at depth d is named by the chained hash
// hash(name of block d-1, model fingerprint, cache type, its B token ids), so equal prefixes
// give equal names across conversations (they share blocks), and a name also pins the model
// and cache type the KV was computed with [vLLM's hashed blocks].
//
// Partitions. The first block of a prefix hangs under a partition root instead of under
// nothing: the shared partition's root is {} (all zero), every other partition's root is a
// digest of its name with a zero high half. Equal prompts in different partitions thus have
// different block names and never share KV (tenants, vLLM's cache_salt); a root is told from
// a real block name by its zero high half.
//
// Thread-safety: pure functions.
#pragma once

#include <span>
#include <string_view>
#include <vector>

#include <llama.h>

#include "kvault/base/hash.h"

namespace kvault::kv {

using BlockName = Hash128;

// The root of partition `name` ("" = the shared partition, root {}).
BlockName PartitionRoot(std::string_view name);
// Whether `parent` is a partition root (the block under it is a first block).
inline bool IsPartitionRoot(const BlockName& parent) { return parent.high == 0; }

// What every block name of one engine configuration shares.
struct BlockNamespace {
  Hash128 model_fingerprint;
  int32_t cache_type = 1;  // ggml type of the K and V cache
  bool rotated = false;    // llama.cpp's Hadamard rotation of quantized caches
  bool v_trans = false;    // V stored transposed (flash attention off)
  uint32_t block_size = 256;
  friend bool operator==(const BlockNamespace&, const BlockNamespace&) = default;
};

// The name of the first block has parent {} (all zero). A partial block (fewer than
// block_size tokens: the tail of a sequence) is named the same way; its length is in the hash.
BlockName ComputeBlockName(const BlockName& parent, const BlockNamespace& space,
                           std::span<const llama_token> tokens);

// Names of every full block of `tokens` (floor(size / block_size) of them) under `root`.
std::vector<BlockName> ComputeBlockNames(const BlockNamespace& space,
                                         std::span<const llama_token> tokens,
                                         const BlockName& root = {});

}  // namespace kvault::kv
