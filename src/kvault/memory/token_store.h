// memory/token_store.h: one conversation's full history as token ids, append-only, with turn
// boundaries and the time each was said. The conversation layer appends each message's
// rendered tokens (chat template included) as one turn; the window builder reads turns back to
// build prompts; the chunk index and the recall path read token ranges to show recalled text.
// Persisted with the conversation through Serialize/Parse.
//
// Positions are absolute: position 0 is the conversation's first token ever, and positions
// keep counting after old turns drop. Turn numbers count the conversation's messages from 0
// in append order and are never reused.
//
// Capacity (the server's --cache-size, in tokens): when an append would exceed it, the oldest
// whole turns drop first, leading system turns included (the client resends its system prompt
// with every request). Drops are counted.
//
// Memory: token ids are packed at 3 bytes each (vocabularies up to 2^24 entries) in blocks of
// kBlockTokens, so a long history costs 3 bytes per token plus sizeof(Turn) = 32 bytes per turn
// (0.3 to 0.7 bytes per token at turns of 100 to 45 tokens, plus at most 25% growth slack):
// under 4 bytes per token in RAM.
//
// Thread-safety: not thread-safe; the owning conversation serializes access.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

#include "kvault/base/coding.h"
#include "kvault/base/result.h"

namespace kvault::memory {

enum class Role : uint8_t { kSystem = 0, kUser = 1, kAssistant = 2, kTool = 3 };

// "system", "user", "assistant", "tool".
std::string_view RoleName(Role role);
// The inverse of RoleName; InvalidArgument for any other name.
Result<Role> RoleFromName(std::string_view name);

// 32 bytes: the digest and the role share a word so that the time fits without growing the
// record (turns are a tenth of a long history's RAM).
struct Turn {
  int64_t number = 0;     // the message's index in the conversation, from 0
  int64_t first_pos = 0;  // absolute position of its first token
  // The caller's digest of the message, its low 56 bits (0 = none), for reconnects.
  uint64_t text_hash : 56 = 0;
  Role role : 8 = Role::kUser;
  int32_t n_tokens = 0;  // >= 1
  uint32_t time = 0;     // Unix seconds (UTC) when it was said; 0 = unknown

  int64_t end_pos() const { return first_pos + n_tokens; }
  // Whether `digest` is the one this turn was appended with (compared on the bits kept).
  bool SameDigest(uint64_t digest) const;
};
static_assert(sizeof(Turn) == 32, "Turn grew: update the RAM figures in token_store.h");

// A message as a client resends it, compared by tokens (CountMatchingTurns).
struct TurnContent {
  Role role = Role::kUser;
  std::span<const int32_t> tokens;
};

// A message compared by the digest given to Append, so that a resent history can be matched
// without tokenizing it again (CountMatchingDigests).
struct TurnDigest {
  Role role = Role::kUser;
  uint64_t text_hash = 0;
};

class TokenStore {
 public:
  static constexpr int32_t kMaxTokenId = (1 << 24) - 1;
  static constexpr int64_t kBlockTokens = 1 << 14;  // 48 KiB per block
  // What Turn::text_hash keeps of a digest: digests are compared through it.
  static constexpr uint64_t kDigestMask = (uint64_t{1} << 56) - 1;
  static constexpr int64_t kMaxTime = UINT32_MAX;  // what Turn::time holds (2106)

  // REQUIRES: capacity_tokens >= 1.
  explicit TokenStore(int64_t capacity_tokens);
  TokenStore(TokenStore&&) = default;
  TokenStore& operator=(TokenStore&&) = default;

  // Appends one turn after dropping the oldest whole turns the capacity requires. Returns the
  // new turn. InvalidArgument (and nothing changes) for an empty turn, one longer than the
  // capacity, or a token id outside [0, kMaxTokenId]. `text_hash` is kept to kDigestMask;
  // `time`: Unix seconds, 0 (unknown) to kMaxTime, clamped into that range.
  Result<Turn> Append(Role role, std::span<const int32_t> tokens, uint64_t text_hash = 0,
                      int64_t time = 0);
  // OK if Append(role, tokens) would succeed; the InvalidArgument it would return otherwise.
  Status CheckTurn(std::span<const int32_t> tokens) const;
  // Removes the retained turns numbered `n_turns` and above, and their tokens; the next
  // Append numbers its turn `n_turns` and places it where the first removed turn was.
  // InvalidArgument (nothing changes) if n_turns < n_dropped_turns(): dropped turns cannot
  // come back.
  Status TruncateTurns(int64_t n_turns);
  // The first position the store would keep if a turn of n_tokens were appended now (its
  // current begin_pos() when nothing would drop). Lets a caller remove index entries of
  // turns about to drop while their tokens are still readable.
  int64_t BeginPosAfterAppend(int64_t n_tokens) const;

  // Retained tokens: positions [begin_pos(), end_pos()).
  int64_t n_tokens() const { return end_pos_ - begin_pos_; }
  int64_t begin_pos() const { return begin_pos_; }
  int64_t end_pos() const { return end_pos_; }
  int64_t capacity() const { return capacity_; }
  int64_t n_dropped_turns() const { return n_dropped_turns_; }
  int64_t n_dropped_tokens() const { return begin_pos_; }

  // Retained turns, oldest first; valid until the next Append or move.
  std::span<const Turn> turns() const {
    return std::span<const Turn>(turns_).subspan(static_cast<size_t>(turn_head_));
  }
  // The retained turn with this number, or nullptr (dropped or not yet appended).
  const Turn* FindTurn(int64_t number) const;
  // Index into turns() of the turn holding `pos`; REQUIRES: begin_pos() <= pos < end_pos().
  size_t TurnIndexAt(int64_t pos) const;

  // The positions [first, end) from the first to the last retained turn said in
  // [begin_time, end_time) (Unix seconds; turns of unknown time are not); {0, 0} if none.
  // Times need not grow with positions: turns between the two, said at other times, are
  // inside the range too.
  std::pair<int64_t, int64_t> PositionsSaidIn(int64_t begin_time, int64_t end_time) const;

  // Tokens at positions [first_pos, first_pos + n). InvalidArgument unless the range is
  // retained.
  Result<std::vector<int32_t>> Tokens(int64_t first_pos, int64_t n) const;
  // REQUIRES: `turn` is one of turns().
  std::vector<int32_t> TurnTokens(const Turn& turn) const;

  // Heap bytes held (token blocks and turn records at their allocated sizes) plus the object.
  size_t MemoryBytes() const;

  // Number of leading entries of `history` equal (role and tokens) to the retained turns
  // taken in order. history[j] stands for turn number j: entries for dropped turns are not
  // compared and count as matching (their content is beyond the cache).
  size_t CountMatchingTurns(std::span<const TurnContent> history) const;
  // The same, comparing roles and the text_hash given to Append.
  size_t CountMatchingDigests(std::span<const TurnDigest> history) const;

  // Versioned, checksummed encoding of the whole store (see token_store.cc for the layout).
  void Serialize(ByteSink* sink) const;
  // Corruption for bytes that are not a valid encoding (truncated, altered, wrong version),
  // without reading past what the source holds or allocating more than it could describe.
  static Result<TokenStore> Parse(ByteSource* source);

 private:
  void DropOldestTurn();
  void PutToken(int32_t token);
  int32_t TokenAt(int64_t pos) const;
  void CompactTurns();
  Status ParseTurns(ByteSource* in, bool with_times);
  void NoteTime(uint32_t time);
  Status ParseTokens(ByteSource* in);

  int64_t capacity_;
  int64_t begin_pos_ = 0;  // first retained position (= tokens dropped so far)
  int64_t end_pos_ = 0;    // one past the last position (= tokens appended so far)
  int64_t n_dropped_turns_ = 0;
  // Token ids, 3 bytes each, little-endian. Every block but the last holds kBlockTokens
  // tokens; the first `block_head_` tokens of blocks_[0] are dropped ones.
  std::vector<std::vector<uint8_t>> blocks_;
  int64_t block_head_ = 0;
  // Turn records; the first turn_head_ are dropped ones, compacted away in bulk.
  std::vector<Turn> turns_;
  int64_t turn_head_ = 0;
  // Whether turn times never decrease in position order (unknown times count as 0), so that
  // PositionsSaidIn can binary-search them; and the latest time seen.
  bool times_ordered_ = true;
  uint32_t last_time_ = 0;
};

}  // namespace kvault::memory
