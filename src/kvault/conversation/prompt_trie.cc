#include "kvault/conversation/prompt_trie.h"

#include <algorithm>

#include "kvault/base/hash.h"

namespace kvault::conversation {
namespace {

// Chained: the parent's name seeds the chunk's hash, so a name stands for the whole prefix.
uint64_t ChunkName(uint64_t parent, std::span<const llama_token> chunk) {
  const uint64_t name = Hash64(
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(chunk.data()), chunk.size_bytes()),
      parent);
  return name == 0 ? 1 : name;  // 0 names "no parent"
}

}  // namespace

static uint64_t RootOf(const std::string& scope) { return Hash64(scope, 0x6b7661756c74ull) | 1; }

int64_t PromptTrie::Record(const std::string& scope, std::span<const llama_token> prompt) {
  MutexLock lock(&mu_);
  int64_t matched = 0;
  bool matching = true;
  const uint64_t root = RootOf(scope);
  uint64_t parent = 0;
  for (size_t at = 0; at + kChunk <= prompt.size(); at += kChunk) {
    const std::span<const llama_token> chunk = prompt.subspan(at, kChunk);
    const uint64_t name = ChunkName(parent == 0 ? root : parent, chunk);
    auto it = nodes_.find(name);
    if (it == nodes_.end()) {
      matching = false;
      if (nodes_.size() >= max_nodes_) PruneLocked();
      if (nodes_.size() >= max_nodes_) break;  // all hot: the rest is not counted
      Node node;
      node.root = root;
      node.parent = parent;
      node.depth = static_cast<int64_t>(at + kChunk);
      node.chunk.assign(chunk.begin(), chunk.end());
      it = nodes_.emplace(name, std::move(node)).first;
      if (parent != 0) {
        auto up = nodes_.find(parent);
        if (up != nodes_.end()) ++up->second.children;
      }
    } else if (matching) {
      matched += static_cast<int64_t>(kChunk);
    }
    const int64_t count = ++it->second.count;
    if (parent != 0) {
      auto up = nodes_.find(parent);
      if (up != nodes_.end())
        up->second.max_child_count = std::max(up->second.max_child_count, count);
    }
    parent = name;
  }
  return matched;
}

void PromptTrie::PruneLocked() {
  // Nodes seen once are the tails of single prompts: dropping them keeps every shared run.
  // If that frees less than a tenth, the least seen go too (twice, then more), so a trie
  // full of shared runs is not scanned again at every new chunk.
  const size_t target = max_nodes_ - max_nodes_ / 10;
  for (int64_t threshold = 1; nodes_.size() > target; threshold *= 2) {
    for (auto it = nodes_.begin(); it != nodes_.end();) {
      if (it->second.count <= threshold) {
        it = nodes_.erase(it);
      } else {
        ++it;
      }
    }
  }
}

std::vector<HotPrefix> PromptTrie::Hot(const std::string& scope, size_t limit) const {
  MutexLock lock(&mu_);
  const uint64_t root = RootOf(scope);
  std::vector<HotPrefix> hot;
  for (const auto& [name, node] : nodes_) {
    if (node.root != root || node.count < 2 || node.max_child_count >= node.count) continue;
    HotPrefix prefix;
    prefix.depth = node.depth;
    prefix.count = node.count;
    prefix.children = node.children;
    prefix.tail = node.chunk;
    const Node* first = &node;
    while (first->parent != 0) {
      auto up = nodes_.find(first->parent);
      if (up == nodes_.end()) break;
      first = &up->second;
    }
    prefix.head = first->chunk;
    hot.push_back(std::move(prefix));
  }
  std::sort(hot.begin(), hot.end(), [](const HotPrefix& a, const HotPrefix& b) {
    return a.count * a.depth != b.count * b.depth ? a.count * a.depth > b.count * b.depth
                                                  : a.depth > b.depth;
  });
  if (hot.size() > limit) hot.resize(limit);
  return hot;
}

size_t PromptTrie::nodes() const {
  MutexLock lock(&mu_);
  return nodes_.size();
}

}  // namespace kvault::conversation
