#include "kvault/kv/radix_tree.h"

#include <algorithm>
#include <cmath>

namespace kvault::kv {

RadixTree::RadixTree(BlockNamespace space, double frequency_half_life_s)
    : space_(space), half_life_s_(frequency_half_life_s) {}

PrefixMatch RadixTree::Match(std::span<const llama_token> tokens, const BlockName& root) const {
  PrefixMatch match;
  BlockName parent = root;
  const size_t b = space_.block_size;
  size_t start = 0;
  for (; start + b <= tokens.size(); start += b) {
    const std::span<const llama_token> block = tokens.subspan(start, b);
    const BlockName name = ComputeBlockName(parent, space_, block);
    auto it = nodes_.find(name);
    if (it == nodes_.end() || !std::equal(block.begin(), block.end(), it->second.tokens.begin(),
                                          it->second.tokens.end())) {
      break;
    }
    match.blocks.push_back({name, static_cast<uint32_t>(b)});
    parent = name;
  }
  match.n_tokens = start;
  if (start < tokens.size()) {
    const MatchedBlock tail = BestPartialChild(parent, tokens.subspan(start));
    if (tail.n_tokens > 0) {
      match.blocks.push_back(tail);
      match.n_tokens += tail.n_tokens;
    }
  }
  return match;
}

MatchedBlock RadixTree::BestPartialChild(const BlockName& parent,
                                         std::span<const llama_token> rest) const {
  const std::unordered_set<BlockName, BlockNameHash>* candidates = nullptr;
  if (IsPartitionRoot(parent)) {
    auto it = roots_.find(parent);
    if (it == roots_.end()) return {};
    candidates = &it->second;
  } else {
    auto it = nodes_.find(parent);
    if (it == nodes_.end()) return {};
    candidates = &it->second.children;
  }
  MatchedBlock best;
  for (const BlockName& child : *candidates) {
    const std::vector<llama_token>& tokens = nodes_.at(child).tokens;
    const size_t n = std::min(tokens.size(), rest.size());
    uint32_t common = 0;
    while (common < n && tokens[common] == rest[common]) ++common;
    if (common > best.n_tokens) best = {child, common};
  }
  return best;
}

Status RadixTree::Insert(const BlockName& name, const BlockName& parent,
                         std::span<const llama_token> tokens, uint8_t tiers, uint64_t bytes) {
  if (tokens.empty() || tokens.size() > space_.block_size) {
    return InvalidArgumentError("a block holds 1 to " + std::to_string(space_.block_size) +
                                " tokens, not " + std::to_string(tokens.size()));
  }
  if (!(ComputeBlockName(parent, space_, tokens) == name)) {
    return InvalidArgumentError("block name does not match its parent and tokens");
  }
  const bool is_root = IsPartitionRoot(parent);
  auto parent_it = nodes_.find(parent);
  if (!is_root && parent_it == nodes_.end()) {
    return InvalidArgumentError("block parent " + parent.ToHex() + " is not cached");
  }
  if (!is_root && parent_it->second.partial(space_.block_size)) {
    return InvalidArgumentError("a partial block cannot have children");
  }
  auto [it, inserted] = nodes_.try_emplace(name);
  RadixNode& node = it->second;
  if (inserted) {
    node.name = name;
    node.parent = parent;
    node.tokens.assign(tokens.begin(), tokens.end());
    node.depth = is_root ? 1 : parent_it->second.depth + 1;
    if (is_root)
      roots_[parent].insert(name);
    else
      parent_it->second.children.insert(name);
  }
  node.tiers |= tiers;
  if (bytes > 0) node.bytes = bytes;
  return Status::Ok();
}

const RadixNode* RadixTree::Find(const BlockName& name) const {
  auto it = nodes_.find(name);
  return it == nodes_.end() ? nullptr : &it->second;
}

void RadixTree::AddTiers(const BlockName& name, uint8_t tiers) {
  auto it = nodes_.find(name);
  if (it != nodes_.end()) it->second.tiers |= tiers;
}

std::vector<BlockName> RadixTree::RemoveTiers(const BlockName& name, uint8_t tiers) {
  auto it = nodes_.find(name);
  if (it == nodes_.end()) return {};
  it->second.tiers &= static_cast<uint8_t>(~tiers);
  if (it->second.tiers != 0) return {};
  return Remove(name);
}

std::vector<BlockName> RadixTree::Remove(const BlockName& name) {
  std::vector<BlockName> removed;
  auto it = nodes_.find(name);
  if (it == nodes_.end()) return removed;
  if (auto parent = nodes_.find(it->second.parent); parent != nodes_.end()) {
    parent->second.children.erase(name);
  }
  if (auto root = roots_.find(it->second.parent); root != roots_.end()) {
    root->second.erase(name);
    if (root->second.empty()) roots_.erase(root);
  }
  std::vector<BlockName> stack = {name};
  while (!stack.empty()) {
    const BlockName current = stack.back();
    stack.pop_back();
    auto node = nodes_.find(current);
    if (node == nodes_.end()) continue;
    for (const BlockName& child : node->second.children) stack.push_back(child);
    removed.push_back(current);
    nodes_.erase(node);
  }
  return removed;
}

double RadixTree::Decay(double frequency, double elapsed_s) const {
  return frequency * std::exp2(-std::max(0.0, elapsed_s) / half_life_s_);
}

void RadixTree::Touch(const BlockName& name, double now_s) {
  auto it = nodes_.find(name);
  if (it == nodes_.end()) return;
  RadixNode& node = it->second;
  node.frequency = Decay(node.frequency, now_s - node.last_use_s) + 1.0;
  node.last_use_s = now_s;
  ++node.hits;
}

void RadixTree::Pin(const BlockName& name, int delta) {
  auto it = nodes_.find(name);
  if (it == nodes_.end()) return;
  const int64_t pins = static_cast<int64_t>(it->second.pins) + delta;
  it->second.pins = static_cast<uint32_t>(std::max<int64_t>(0, pins));
}

std::vector<const RadixNode*> RadixTree::EvictableIn(uint8_t tier, uint8_t faster_mask) const {
  std::vector<const RadixNode*> out;
  for (const auto& [name, node] : nodes_) {
    if ((node.tiers & tier) != 0 && EvictableFrom(node, tier | faster_mask)) out.push_back(&node);
  }
  return out;
}

bool RadixTree::EvictableFrom(const RadixNode& node, uint8_t mask) const {
  if (node.pins > 0) return false;
  for (const BlockName& child : node.children) {
    auto it = nodes_.find(child);
    if (it != nodes_.end() && (it->second.tiers & mask) != 0) return false;
  }
  return true;
}

void RadixTree::ForEach(const std::function<void(const RadixNode&)>& fn) const {
  for (const auto& [name, node] : nodes_) fn(node);
}

std::vector<llama_token> RadixTree::PrefixTokens(const BlockName& name) const {
  std::vector<const RadixNode*> chain;
  for (auto it = nodes_.find(name); it != nodes_.end(); it = nodes_.find(it->second.parent)) {
    chain.push_back(&it->second);
    if (IsPartitionRoot(it->second.parent)) break;
  }
  std::vector<llama_token> tokens;
  for (auto node = chain.rbegin(); node != chain.rend(); ++node) {
    tokens.insert(tokens.end(), (*node)->tokens.begin(), (*node)->tokens.end());
  }
  return tokens;
}

BlockName RadixTree::PartitionOf(const BlockName& name) const {
  for (auto it = nodes_.find(name); it != nodes_.end(); it = nodes_.find(it->second.parent)) {
    if (IsPartitionRoot(it->second.parent)) return it->second.parent;
  }
  return {};
}

}  // namespace kvault::kv
