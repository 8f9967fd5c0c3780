// memory/chunker.h: cuts one conversation's turns, as they are appended, into the chunks the
// chunk index searches (about 128 tokens each), aligned to turn boundaries where it can:
//
//   - Short turns share a chunk. A chunk that holds at least half the target closes at the
//     end of a turn when the next turn would not fit in it.
//   - A long turn is split at target-sized boundaries; a chunk holding less than half the
//     target is topped up with the start of the next turn instead of being closed small.
//   - A chunk closes as soon as it holds the target; the last, partial one stays open for
//     later turns (Close() ends it on demand).
//
// Used by ChunkIndex, which keeps one Chunker per conversation; pure logic, no I/O.
//
// Thread-safety: not thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

namespace kvault::memory {

// One turn of a conversation as the index sees it. `tokens` is only read during the call.
struct IndexTurn {
  int64_t number = 0;     // the turn's number in the conversation
  int64_t first_pos = 0;  // absolute position of tokens[0]
  std::span<const int32_t> tokens;
};

struct Chunk {
  int64_t first_pos = 0;
  int64_t first_turn = 0;  // turn of the first token
  int64_t last_turn = 0;   // turn of the last token
  std::vector<int32_t> tokens;

  int64_t end_pos() const { return first_pos + static_cast<int64_t>(tokens.size()); }
};

class Chunker {
 public:
  // Starts empty at position `next_pos`: tokens before it count as chunked already.
  // REQUIRES: chunk_tokens >= 2.
  explicit Chunker(int32_t chunk_tokens, int64_t next_pos = 0);

  // Takes the tokens of `turn` at positions >= next_pos() (earlier ones were chunked before,
  // so feeding a turn twice is harmless) and returns the chunks that became complete, in
  // order. A turn starting after next_pos() (a gap) first closes the open chunk.
  std::vector<Chunk> Add(const IndexTurn& turn);
  // Closes the open chunk and returns it (nullopt if it is empty).
  std::optional<Chunk> Close();
  // Forgets every position before `pos`: an open chunk starting before it is discarded.
  void DropBefore(int64_t pos);

  // Position after the last token taken.
  int64_t next_pos() const { return next_pos_; }
  // Tokens in the open chunk.
  int64_t open_tokens() const { return static_cast<int64_t>(open_.tokens.size()); }
  int32_t chunk_tokens() const { return chunk_tokens_; }

 private:
  int32_t chunk_tokens_;
  int64_t next_pos_;
  Chunk open_;  // tokens.empty() when no chunk is open
};

}  // namespace kvault::memory
