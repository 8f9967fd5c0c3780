#include "kvault/memory/hit_merge.h"

#include <algorithm>
#include <limits>
#include <unordered_map>
#include <unordered_set>

namespace kvault::memory {

std::vector<ChunkHit> AddWeighted(std::span<const ChunkHit> main, std::span<const ChunkHit> extra,
                                  double weight) {
  std::vector<ChunkHit> merged(main.begin(), main.end());
  std::unordered_map<int64_t, size_t> at;
  for (size_t i = 0; i < merged.size(); ++i) at.emplace(merged[i].chunk_id, i);
  for (const ChunkHit& hit : extra) {
    auto it = at.find(hit.chunk_id);
    if (it != at.end()) {
      merged[it->second].score += weight * hit.score;
      continue;
    }
    at.emplace(hit.chunk_id, merged.size());
    merged.push_back(hit);
    merged.back().score = weight * hit.score;
  }
  std::stable_sort(merged.begin(), merged.end(),
                   [](const ChunkHit& a, const ChunkHit& b) { return a.score > b.score; });
  return merged;
}

std::vector<ChunkHit> Interleave(std::span<const ChunkHit> first, std::span<const ChunkHit> second,
                                 size_t n) {
  std::vector<ChunkHit> out;
  std::unordered_set<int64_t> taken;
  size_t i = 0, j = 0;
  auto next = [&](std::span<const ChunkHit> from, size_t& pos) -> const ChunkHit* {
    while (pos < from.size() && taken.contains(from[pos].chunk_id)) ++pos;
    return pos < from.size() ? &from[pos++] : nullptr;
  };
  bool from_second = false;
  while (out.size() < n) {
    const ChunkHit* hit = from_second ? next(second, j) : next(first, i);
    if (hit == nullptr) hit = from_second ? next(first, i) : next(second, j);
    if (hit == nullptr) break;
    ChunkHit taken_hit = *hit;
    if (!out.empty()) taken_hit.score = std::min(taken_hit.score, out.back().score);
    taken.insert(taken_hit.chunk_id);
    out.push_back(taken_hit);
    from_second = !out.empty() && !from_second;
  }
  return out;
}

std::vector<ChunkHit> PreferFirst(std::span<const ChunkHit> preferred,
                                  std::span<const ChunkHit> rest, size_t n) {
  std::vector<ChunkHit> out;
  std::unordered_set<int64_t> taken;
  for (const ChunkHit& hit : preferred) taken.insert(hit.chunk_id);
  double floor = -std::numeric_limits<double>::infinity();
  for (const ChunkHit& hit : rest) {
    if (!taken.contains(hit.chunk_id)) floor = std::max(floor, hit.score);
  }
  taken.clear();
  for (const std::span<const ChunkHit> from : {preferred, rest}) {
    for (const ChunkHit& hit : from) {
      if (out.size() >= n) return out;
      if (!taken.insert(hit.chunk_id).second) continue;
      out.push_back(hit);
      if (from.data() == preferred.data()) out.back().score = std::max(out.back().score, floor);
      if (out.size() > 1) out.back().score = std::min(out.back().score, out[out.size() - 2].score);
    }
  }
  return out;
}

}  // namespace kvault::memory
