#include "kvault/memory/chunker.h"

#include <algorithm>

#include "kvault/base/check.h"

namespace kvault::memory {

Chunker::Chunker(int32_t chunk_tokens, int64_t next_pos)
    : chunk_tokens_(chunk_tokens), next_pos_(next_pos) {
  KV_CHECK(chunk_tokens >= 2, "Chunker needs chunks of at least 2 tokens");
}

std::vector<Chunk> Chunker::Add(const IndexTurn& turn) {
  std::vector<Chunk> done;
  const int64_t end_pos = turn.first_pos + static_cast<int64_t>(turn.tokens.size());
  if (end_pos <= next_pos_) return done;
  const int64_t start = std::max(turn.first_pos, next_pos_);
  std::span<const int32_t> rest = turn.tokens.subspan(static_cast<size_t>(start - turn.first_pos));
  if (start > next_pos_) {
    if (std::optional<Chunk> chunk = Close()) done.push_back(std::move(*chunk));
  }
  // Close at this turn boundary if the chunk is big enough and the turn would overflow it.
  const auto size = static_cast<int64_t>(open_.tokens.size());
  if (size >= chunk_tokens_ / 2 && size + static_cast<int64_t>(rest.size()) > chunk_tokens_) {
    if (std::optional<Chunk> chunk = Close()) done.push_back(std::move(*chunk));
  }
  int64_t pos = start;
  while (!rest.empty()) {
    if (open_.tokens.empty()) {
      open_.first_pos = pos;
      open_.first_turn = turn.number;
    }
    const size_t take = std::min(rest.size(), chunk_tokens_ - open_.tokens.size());
    open_.tokens.insert(open_.tokens.end(), rest.begin(), rest.begin() + take);
    open_.last_turn = turn.number;
    rest = rest.subspan(take);
    pos += static_cast<int64_t>(take);
    if (static_cast<int64_t>(open_.tokens.size()) == chunk_tokens_) {
      done.push_back(std::move(open_));
      open_ = Chunk();
    }
  }
  next_pos_ = end_pos;
  return done;
}

std::optional<Chunk> Chunker::Close() {
  if (open_.tokens.empty()) return std::nullopt;
  Chunk chunk = std::move(open_);
  open_ = Chunk();
  return chunk;
}

void Chunker::DropBefore(int64_t pos) {
  if (!open_.tokens.empty() && open_.first_pos < pos) open_ = Chunk();
  next_pos_ = std::max(next_pos_, pos);
}

}  // namespace kvault::memory
