// conversation/prompt_trie.h: the prompts kvault sent to its engine (or upstream), as a trie
// of 16-token chunks with a count on each node (the KVern seed's token trie): how much of a
// new prompt was seen before (its prefix reuse, in both modes, whatever the engine's cache
// did), and which prefixes are hot (GET /v1/cache/tree).
//
// A node is one chunk after its parent's; chunks are named by a chained hash, so a node is
// found in one lookup per chunk. Each API key scope has a trie of its own (its root is the
// scope's hash): one key's prompts are never another's hits, nor in its tree view. Bounded: past
// `max_nodes`, nodes seen once are dropped first, then the least seen, down to nine tenths
// of the bound (the hot ones stay).
//
// Thread-safety: all methods may be called from any thread.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include <llama.h>

#include "kvault/base/mutex.h"

namespace kvault::conversation {

struct HotPrefix {
  int64_t depth = 0;              // tokens from the prompt's start to this node's end
  int64_t count = 0;              // prompts that went through it
  std::vector<llama_token> head;  // the prefix's first chunk
  std::vector<llama_token> tail;  // its last chunk (== head for a one-chunk prefix)
  int64_t children = 0;           // distinct continuations seen
};

class PromptTrie {
 public:
  static constexpr size_t kChunk = 16;
  explicit PromptTrie(size_t max_nodes = 200000) : max_nodes_(max_nodes) {}

  // Counts `prompt` in and returns how many of its leading tokens (whole chunks) an earlier
  // prompt had.
  int64_t Record(const std::string& scope, std::span<const llama_token> prompt);
  // The deepest node of each shared run (seen at least twice, and more often than any of its
  // children), by count x depth, at most `limit`.
  std::vector<HotPrefix> Hot(const std::string& scope, size_t limit) const;
  size_t nodes() const;

 private:
  struct Node {
    uint64_t root = 0;    // the scope's
    uint64_t parent = 0;  // 0 for a first chunk
    int64_t depth = 0;
    int64_t count = 0;
    int64_t children = 0;
    int64_t max_child_count = 0;
    std::vector<llama_token> chunk;
  };
  void PruneLocked() KV_REQUIRES(mu_);

  const size_t max_nodes_;
  mutable Mutex mu_;
  std::unordered_map<uint64_t, Node> nodes_ KV_GUARDED_BY(mu_);
};

}  // namespace kvault::conversation
