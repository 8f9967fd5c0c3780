#include "kvault/memory/token_store.h"

#include <algorithm>
#include <array>
#include <limits>
#include <string>

#include "kvault/base/check.h"
#include "kvault/base/hash.h"
#include "kvault/base/status_macros.h"

namespace kvault::memory {
namespace {

// Encoding (version 2), all integers little-endian:
//
//   size        field
//   4           magic "KVTS" (0x5354564b)
//   4           version (u32) = 2 (1: turns without their time, read as time 0)
//   varint      capacity in tokens (>= 1)
//   varint      dropped tokens = the first retained position
//   varint      dropped turns = the first retained turn number
//   varint      retained turns T
//   T x         role (u8), n_tokens (varint, >= 1), text_hash (u64), time (varint)
//   3 x N       token ids, 3 bytes each, N = the sum of the turns' n_tokens
//   8           XXH3-64 of every byte above
constexpr uint32_t kMagic = 0x5354564b;
constexpr uint32_t kVersion = 2;
constexpr uint32_t kVersionWithoutTimes = 1;
constexpr uint64_t kMinTurnBytes = 1 + 1 + 8;
constexpr int64_t kBlockBytes = TokenStore::kBlockTokens * 3;
// Positions stay far from overflow even for a corrupt header.
constexpr uint64_t kMaxPosition = uint64_t{1} << 56;
constexpr int64_t kMaxTurnTokens = std::numeric_limits<int32_t>::max();

struct RoleNameEntry {
  Role role;
  std::string_view name;
};
constexpr std::array<RoleNameEntry, 4> kRoleNames = {{{Role::kSystem, "system"},
                                                      {Role::kUser, "user"},
                                                      {Role::kAssistant, "assistant"},
                                                      {Role::kTool, "tool"}}};

// A sink that hashes what passes through it, for the trailing checksum.
class ChecksumSink final : public ByteSink {
 public:
  explicit ChecksumSink(ByteSink* inner) : inner_(inner) {}
  void Append(std::span<const uint8_t> bytes) override {
    hasher_.Update(bytes);
    inner_->Append(bytes);
  }
  uint64_t size() const override { return inner_->size(); }
  uint64_t digest() const { return hasher_.Digest64(); }

 private:
  ByteSink* inner_;
  Hasher hasher_;
};

class ChecksumSource final : public ByteSource {
 public:
  explicit ChecksumSource(ByteSource* inner) : inner_(inner) {}
  Status Read(std::span<uint8_t> out) override {
    KV_RETURN_IF_ERROR(inner_->Read(out));
    hasher_.Update(out);
    return Status::Ok();
  }
  Status Skip(uint64_t) override { return InternalError("memory: skip on a checksummed read"); }
  uint64_t remaining() const override { return inner_->remaining(); }
  uint64_t digest() const { return hasher_.Digest64(); }

 private:
  ByteSource* inner_;
  Hasher hasher_;
};

Status GetBoundedVarint(ByteSource* source, uint64_t max, std::string_view what, uint64_t* out) {
  KV_RETURN_IF_ERROR(GetVarint64(source, out));
  if (*out > max) {
    return CorruptionError("memory: token store " + std::string(what) + " " + std::to_string(*out) +
                           " exceeds " + std::to_string(max));
  }
  return Status::Ok();
}

}  // namespace

std::string_view RoleName(Role role) {
  for (const RoleNameEntry& entry : kRoleNames) {
    if (entry.role == role) return entry.name;
  }
  return "unknown";
}

Result<Role> RoleFromName(std::string_view name) {
  for (const RoleNameEntry& entry : kRoleNames) {
    if (entry.name == name) return entry.role;
  }
  return InvalidArgumentError("memory: unknown role '" + std::string(name) +
                              "' (expected system, user, assistant or tool)");
}

TokenStore::TokenStore(int64_t capacity_tokens) : capacity_(capacity_tokens) {
  KV_CHECK(capacity_tokens >= 1, "TokenStore capacity must be at least one token");
}

Status TokenStore::CheckTurn(std::span<const int32_t> tokens) const {
  const int64_t n = static_cast<int64_t>(tokens.size());
  if (n == 0) return InvalidArgumentError("memory: a turn needs at least one token");
  if (n > capacity_ || n > kMaxTurnTokens) {
    return InvalidArgumentError("memory: a turn of " + std::to_string(n) +
                                " tokens exceeds the cache size of " + std::to_string(capacity_) +
                                " tokens");
  }
  for (int32_t token : tokens) {
    if (token < 0 || token > kMaxTokenId) {
      return InvalidArgumentError("memory: token id " + std::to_string(token) +
                                  " is outside [0, 2^24)");
    }
  }
  return Status::Ok();
}

Status TokenStore::TruncateTurns(int64_t n_turns) {
  if (n_turns < n_dropped_turns_) {
    return InvalidArgumentError("memory: cannot keep " + std::to_string(n_turns) + " turns, " +
                                std::to_string(n_dropped_turns_) + " were dropped already");
  }
  const auto keep = static_cast<size_t>(n_turns - n_dropped_turns_);
  if (keep >= turns().size()) return Status::Ok();
  const int64_t new_end = turns()[keep].first_pos;
  turns_.resize(static_cast<size_t>(turn_head_) + keep);
  // Token storage: blocks_[0] starts block_head_ tokens before begin_pos_.
  const int64_t kept_tokens = new_end - begin_pos_ + block_head_;
  if (new_end == begin_pos_) {
    blocks_.clear();
    block_head_ = 0;
  } else {
    const int64_t n_blocks = (kept_tokens + kBlockTokens - 1) / kBlockTokens;
    blocks_.resize(static_cast<size_t>(n_blocks));
    blocks_.back().resize(static_cast<size_t>((kept_tokens - (n_blocks - 1) * kBlockTokens) * 3));
  }
  end_pos_ = new_end;
  return Status::Ok();
}

bool Turn::SameDigest(uint64_t digest) const {
  return text_hash == (digest & TokenStore::kDigestMask);
}

Result<Turn> TokenStore::Append(Role role, std::span<const int32_t> tokens, uint64_t text_hash,
                                int64_t time) {
  KV_RETURN_IF_ERROR(CheckTurn(tokens));
  const int64_t n = static_cast<int64_t>(tokens.size());
  while (n_tokens() + n > capacity_) DropOldestTurn();
  Turn turn;
  turn.number = n_dropped_turns_ + static_cast<int64_t>(turns().size());
  turn.first_pos = end_pos_;
  turn.text_hash = text_hash & kDigestMask;
  turn.time = static_cast<uint32_t>(std::clamp<int64_t>(time, 0, kMaxTime));
  NoteTime(turn.time);
  turn.n_tokens = static_cast<int32_t>(n);
  turn.role = role;
  for (int32_t token : tokens) PutToken(token);
  end_pos_ += n;
  if (turns_.size() == turns_.capacity()) {
    turns_.reserve(turns_.size() + turns_.size() / 4 + 16);  // 25% slack at most, not 100%
  }
  turns_.push_back(turn);
  return turn;
}

int64_t TokenStore::BeginPosAfterAppend(int64_t n_tokens_to_add) const {
  int64_t begin = begin_pos_;
  for (const Turn& turn : turns()) {
    if (end_pos_ - begin + n_tokens_to_add <= capacity_) break;
    begin = turn.end_pos();
  }
  return begin;
}

void TokenStore::PutToken(int32_t token) {
  if (blocks_.empty() || static_cast<int64_t>(blocks_.back().size()) == kBlockBytes) {
    blocks_.emplace_back();
  }
  std::vector<uint8_t>& block = blocks_.back();
  if (block.size() == block.capacity()) {
    // Grow by doubling up to one block, so a short conversation stays small and a long one
    // wastes at most the unused tail of its last block.
    block.reserve(static_cast<size_t>(
        std::min<int64_t>(kBlockBytes, std::max<int64_t>(768, 2 * block.capacity()))));
  }
  const auto value = static_cast<uint32_t>(token);
  block.push_back(static_cast<uint8_t>(value));
  block.push_back(static_cast<uint8_t>(value >> 8));
  block.push_back(static_cast<uint8_t>(value >> 16));
}

int32_t TokenStore::TokenAt(int64_t pos) const {
  const int64_t index = pos - begin_pos_ + block_head_;
  const std::vector<uint8_t>& block = blocks_[static_cast<size_t>(index / kBlockTokens)];
  const uint8_t* bytes = block.data() + (index % kBlockTokens) * 3;
  return static_cast<int32_t>(bytes[0] | (bytes[1] << 8) | (bytes[2] << 16));
}

void TokenStore::DropOldestTurn() {
  const Turn& oldest = turns_[static_cast<size_t>(turn_head_)];
  begin_pos_ += oldest.n_tokens;
  block_head_ += oldest.n_tokens;
  ++turn_head_;
  ++n_dropped_turns_;
  if (n_tokens() == 0) {
    blocks_.clear();
    block_head_ = 0;
  }
  while (block_head_ >= kBlockTokens) {
    blocks_.erase(blocks_.begin());
    block_head_ -= kBlockTokens;
  }
  CompactTurns();
}

void TokenStore::CompactTurns() {
  // Erase dropped records in bulk once they are half the vector: amortized O(1) per drop.
  if (turn_head_ < 64 || turn_head_ * 2 < static_cast<int64_t>(turns_.size())) return;
  turns_.erase(turns_.begin(), turns_.begin() + turn_head_);
  turn_head_ = 0;
}

const Turn* TokenStore::FindTurn(int64_t number) const {
  const int64_t index = number - n_dropped_turns_;
  if (index < 0 || index >= static_cast<int64_t>(turns().size())) return nullptr;
  return &turns()[static_cast<size_t>(index)];
}

size_t TokenStore::TurnIndexAt(int64_t pos) const {
  KV_CHECK(pos >= begin_pos_ && pos < end_pos_, "TurnIndexAt: position not retained");
  const std::span<const Turn> all = turns();
  auto it = std::upper_bound(all.begin(), all.end(), pos,
                             [](int64_t p, const Turn& turn) { return p < turn.first_pos; });
  return static_cast<size_t>(it - all.begin()) - 1;
}

std::pair<int64_t, int64_t> TokenStore::PositionsSaidIn(int64_t begin_time,
                                                        int64_t end_time) const {
  begin_time = std::max<int64_t>(begin_time, 1);  // unknown times are never in a range
  if (begin_time >= end_time) return {0, 0};
  const std::span<const Turn> all = turns();
  if (times_ordered_) {  // the usual case: a log in time order, two binary searches
    auto before = [](const Turn& turn, int64_t time) { return turn.time < time; };
    const auto first = std::lower_bound(all.begin(), all.end(), begin_time, before);
    const auto last = std::lower_bound(first, all.end(), end_time, before);
    if (first == last) return {0, 0};
    return {first->first_pos, std::prev(last)->end_pos()};
  }
  int64_t first = -1, end = 0;
  for (const Turn& turn : all) {
    if (turn.time < begin_time || turn.time >= end_time) continue;
    if (first < 0) first = turn.first_pos;
    end = turn.end_pos();
  }
  return first < 0 ? std::pair<int64_t, int64_t>{0, 0} : std::pair{first, end};
}

void TokenStore::NoteTime(uint32_t time) {
  if (time < last_time_) times_ordered_ = false;
  last_time_ = std::max(last_time_, time);
}

Result<std::vector<int32_t>> TokenStore::Tokens(int64_t first_pos, int64_t n) const {
  if (n < 0 || first_pos < begin_pos_ || first_pos > end_pos_ - n) {
    return InvalidArgumentError("memory: positions [" + std::to_string(first_pos) + ", " +
                                std::to_string(first_pos + n) + ") are not retained (have [" +
                                std::to_string(begin_pos_) + ", " + std::to_string(end_pos_) +
                                "))");
  }
  std::vector<int32_t> tokens(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) tokens[static_cast<size_t>(i)] = TokenAt(first_pos + i);
  return tokens;
}

std::vector<int32_t> TokenStore::TurnTokens(const Turn& turn) const {
  Result<std::vector<int32_t>> tokens = Tokens(turn.first_pos, turn.n_tokens);
  KV_CHECK(tokens.ok(), "TurnTokens: not a retained turn");
  return std::move(tokens).value();
}

size_t TokenStore::MemoryBytes() const {
  size_t bytes =
      sizeof(*this) + blocks_.capacity() * sizeof(blocks_[0]) + turns_.capacity() * sizeof(Turn);
  for (const std::vector<uint8_t>& block : blocks_) bytes += block.capacity();
  return bytes;
}

size_t TokenStore::CountMatchingTurns(std::span<const TurnContent> history) const {
  size_t matched = 0;
  for (const TurnContent& entry : history) {
    const auto number = static_cast<int64_t>(matched);
    if (number >= n_dropped_turns_) {
      const Turn* turn = FindTurn(number);
      if (turn == nullptr || turn->role != entry.role ||
          turn->n_tokens != static_cast<int64_t>(entry.tokens.size())) {
        break;
      }
      bool equal = true;
      for (int32_t i = 0; i < turn->n_tokens && equal; ++i) {
        equal = TokenAt(turn->first_pos + i) == entry.tokens[static_cast<size_t>(i)];
      }
      if (!equal) break;
    }
    ++matched;
  }
  return matched;
}

size_t TokenStore::CountMatchingDigests(std::span<const TurnDigest> history) const {
  size_t matched = 0;
  for (const TurnDigest& entry : history) {
    const auto number = static_cast<int64_t>(matched);
    if (number >= n_dropped_turns_) {
      const Turn* turn = FindTurn(number);
      if (turn == nullptr || turn->role != entry.role || !turn->SameDigest(entry.text_hash)) {
        break;
      }
    }
    ++matched;
  }
  return matched;
}

void TokenStore::Serialize(ByteSink* sink) const {
  ChecksumSink out(sink);
  PutFixed<uint32_t>(&out, kMagic);
  PutFixed<uint32_t>(&out, kVersion);
  PutVarint64(&out, static_cast<uint64_t>(capacity_));
  PutVarint64(&out, static_cast<uint64_t>(begin_pos_));
  PutVarint64(&out, static_cast<uint64_t>(n_dropped_turns_));
  PutVarint64(&out, turns().size());
  for (const Turn& turn : turns()) {
    PutFixed<uint8_t>(&out, static_cast<uint8_t>(turn.role));
    PutVarint64(&out, static_cast<uint64_t>(turn.n_tokens));
    PutFixed<uint64_t>(&out, turn.text_hash);
    PutVarint64(&out, turn.time);
  }
  // Blocks hold the packed ids already: copy them, skipping the dropped head.
  for (size_t b = 0; b < blocks_.size(); ++b) {
    std::span<const uint8_t> bytes(blocks_[b]);
    if (b == 0) bytes = bytes.subspan(static_cast<size_t>(block_head_ * 3));
    out.Append(bytes);
  }
  PutFixed<uint64_t>(sink, out.digest());
}

Result<TokenStore> TokenStore::Parse(ByteSource* source) {
  ChecksumSource in(source);
  uint32_t magic = 0, version = 0;
  KV_RETURN_IF_ERROR(GetFixed(&in, &magic));
  if (magic != kMagic) return CorruptionError("memory: not a token store (bad magic)");
  KV_RETURN_IF_ERROR(GetFixed(&in, &version));
  if (version != kVersion && version != kVersionWithoutTimes) {
    return CorruptionError("memory: token store version " + std::to_string(version) +
                           ", this build reads version " + std::to_string(kVersion));
  }
  uint64_t capacity = 0, begin_pos = 0, dropped_turns = 0;
  KV_RETURN_IF_ERROR(GetBoundedVarint(&in, kMaxPosition, "capacity", &capacity));
  if (capacity == 0) return CorruptionError("memory: token store capacity is 0");
  KV_RETURN_IF_ERROR(GetBoundedVarint(&in, kMaxPosition, "first position", &begin_pos));
  KV_RETURN_IF_ERROR(GetBoundedVarint(&in, kMaxPosition, "dropped turns", &dropped_turns));

  TokenStore store(static_cast<int64_t>(capacity));
  store.begin_pos_ = store.end_pos_ = static_cast<int64_t>(begin_pos);
  store.n_dropped_turns_ = static_cast<int64_t>(dropped_turns);
  KV_RETURN_IF_ERROR(store.ParseTurns(&in, version == kVersion));
  KV_RETURN_IF_ERROR(store.ParseTokens(&in));
  uint64_t checksum = 0;
  KV_RETURN_IF_ERROR(GetFixed(source, &checksum));
  if (checksum != in.digest()) return CorruptionError("memory: token store checksum mismatch");
  return store;
}

Status TokenStore::ParseTurns(ByteSource* in, bool with_times) {
  uint64_t n_turns = 0;
  KV_RETURN_IF_ERROR(GetBoundedVarint(in, in->remaining() / kMinTurnBytes, "turns", &n_turns));
  turns_.reserve(n_turns);
  for (uint64_t i = 0; i < n_turns; ++i) {
    uint8_t role = 0;
    uint64_t turn_tokens = 0;
    Turn turn;
    KV_RETURN_IF_ERROR(GetFixed(in, &role));
    if (role > static_cast<uint8_t>(Role::kTool)) {
      return CorruptionError("memory: token store turn has role " + std::to_string(role));
    }
    const uint64_t max_turn_tokens =
        std::min<uint64_t>(static_cast<uint64_t>(capacity_ - n_tokens()), kMaxTurnTokens);
    KV_RETURN_IF_ERROR(GetBoundedVarint(in, max_turn_tokens, "turn size", &turn_tokens));
    if (turn_tokens == 0) return CorruptionError("memory: token store has an empty turn");
    uint64_t text_hash = 0;
    KV_RETURN_IF_ERROR(GetFixed(in, &text_hash));
    turn.text_hash = text_hash & kDigestMask;
    if (with_times) {
      uint64_t time = 0;
      KV_RETURN_IF_ERROR(GetBoundedVarint(in, kMaxTime, "turn time", &time));
      turn.time = static_cast<uint32_t>(time);
    }
    NoteTime(turn.time);
    turn.number = n_dropped_turns_ + static_cast<int64_t>(i);
    turn.first_pos = end_pos_;
    turn.n_tokens = static_cast<int32_t>(turn_tokens);
    turn.role = static_cast<Role>(role);
    end_pos_ += turn.n_tokens;
    turns_.push_back(turn);
  }
  return Status::Ok();
}

Status TokenStore::ParseTokens(ByteSource* in) {
  uint64_t token_bytes = static_cast<uint64_t>(n_tokens()) * 3;
  if (token_bytes + sizeof(uint64_t) > in->remaining()) {
    return CorruptionError("memory: token store truncated: " + std::to_string(token_bytes) +
                           " token bytes announced, " + std::to_string(in->remaining()) + " left");
  }
  while (token_bytes > 0) {
    const auto n = static_cast<size_t>(std::min<uint64_t>(token_bytes, kBlockBytes));
    std::vector<uint8_t>& block = blocks_.emplace_back(n);
    KV_RETURN_IF_ERROR(in->Read(block));
    token_bytes -= n;
  }
  return Status::Ok();
}

}  // namespace kvault::memory
