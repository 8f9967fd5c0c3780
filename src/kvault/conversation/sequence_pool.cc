#include "kvault/conversation/sequence_pool.h"

#include <algorithm>

#include "kvault/base/check.h"
#include "kvault/base/status_macros.h"

namespace kvault::conversation {

SequencePool::SequencePool(int n_sequences, int max_reserved,
                           std::function<Status(llama_seq_id)> clear_sequence)
    : max_reserved_(max_reserved), clear_sequence_(std::move(clear_sequence)) {
  KV_CHECK(max_reserved >= 0 && max_reserved <= n_sequences, "sequence pool: bad max_reserved");
  MutexLock lock(&mu_);
  slots_.resize(static_cast<size_t>(n_sequences));
  stats_.n_sequences = n_sequences;
}

Result<SequenceLease> SequencePool::Acquire(const std::string& owner) {
  llama_seq_id chosen = -1;
  bool needs_clear = false;
  {
    MutexLock lock(&mu_);
    auto it = by_owner_.find(owner);
    if (it != by_owner_.end()) {
      Slot& slot = slots_[static_cast<size_t>(it->second)];
      if (slot.pinned) return FailedPreconditionError("conversation already has a running request");
      slot.pinned = true;
      slot.last_use = ++clock_;
      ++stats_.hits;
      return SequenceLease{it->second, slot.tokens};
    }
    // A free slot, else the least recently used parked one.
    for (size_t i = 0; i < slots_.size(); ++i) {
      const Slot& slot = slots_[i];
      if (slot.pinned || slot.reserved) continue;
      if (slot.owner.empty()) {
        chosen = static_cast<llama_seq_id>(i);
        break;
      }
      if (chosen < 0 || slot.last_use < slots_[static_cast<size_t>(chosen)].last_use) {
        chosen = static_cast<llama_seq_id>(i);
      }
    }
    if (chosen < 0) return ResourceExhaustedError("every sequence is in use");
    Slot& slot = slots_[static_cast<size_t>(chosen)];
    if (!slot.owner.empty()) {
      by_owner_.erase(slot.owner);
      ++stats_.evictions;
      needs_clear = true;
    } else {
      needs_clear = !slot.tokens.empty();
    }
    slot.owner = owner;
    slot.pinned = true;
    slot.last_use = ++clock_;
    slot.tokens.clear();
    by_owner_[owner] = chosen;
    ++stats_.misses;
  }
  if (needs_clear) {
    Status status = clear_sequence_(chosen);
    if (!status.ok()) {
      Release(owner, {});
      return status;
    }
  }
  return SequenceLease{chosen, {}};
}

void SequencePool::Release(const std::string& owner, std::vector<llama_token> tokens) {
  MutexLock lock(&mu_);
  auto it = by_owner_.find(owner);
  if (it == by_owner_.end()) return;
  Slot& slot = slots_[static_cast<size_t>(it->second)];
  slot.pinned = false;
  slot.last_use = ++clock_;
  slot.tokens = std::move(tokens);
}

Status SequencePool::SetReserved(const std::string& owner, bool reserved) {
  MutexLock lock(&mu_);
  auto it = by_owner_.find(owner);
  if (it == by_owner_.end()) return FailedPreconditionError("conversation holds no sequence");
  // The manager checked before committing (CheckReservable), but two new pins may have passed
  // that check at once; the cap holds here, where it is decided under the lock.
  if (reserved) KV_RETURN_IF_ERROR(CheckReservableLocked(owner));
  slots_[static_cast<size_t>(it->second)].reserved = reserved;
  return Status::Ok();
}

Status SequencePool::CheckReservable(const std::string& owner) const {
  MutexLock lock(&mu_);
  return CheckReservableLocked(owner);
}

int64_t SequencePool::CountReservedLocked() const {
  return std::count_if(slots_.begin(), slots_.end(), [](const Slot& s) { return s.reserved; });
}

Status SequencePool::CheckReservableLocked(const std::string& owner) const {
  auto it = by_owner_.find(owner);
  if (it != by_owner_.end() && slots_[static_cast<size_t>(it->second)].reserved) {
    return Status::Ok();
  }
  if (CountReservedLocked() < max_reserved_) return Status::Ok();
  return FailedPreconditionError("pin: all " + std::to_string(max_reserved_) +
                                 " pinned sequences are taken; end a pinned conversation or "
                                 "raise --pinned-sequences")
      .WithDetail(ErrorDetail::kPinsExhausted);
}

bool SequencePool::IsReserved(const std::string& owner) const {
  MutexLock lock(&mu_);
  auto it = by_owner_.find(owner);
  return it != by_owner_.end() && slots_[static_cast<size_t>(it->second)].reserved;
}

Status SequencePool::Forget(const std::string& owner) {
  llama_seq_id seq_id = -1;
  {
    MutexLock lock(&mu_);
    auto it = by_owner_.find(owner);
    if (it == by_owner_.end()) return Status::Ok();
    seq_id = it->second;
    Slot& slot = slots_[static_cast<size_t>(seq_id)];
    if (slot.pinned) return FailedPreconditionError("conversation has a running request");
    slot = Slot{};
    by_owner_.erase(it);
  }
  return clear_sequence_(seq_id);
}

Result<int64_t> SequencePool::ForgetParked(
    const std::function<bool(std::string_view owner)>& selected) {
  std::vector<llama_seq_id> forgotten;
  {
    MutexLock lock(&mu_);
    for (size_t i = 0; i < slots_.size(); ++i) {
      Slot& slot = slots_[i];
      if (slot.pinned || slot.owner.empty() || !selected(slot.owner)) continue;
      by_owner_.erase(slot.owner);
      // Ownerless but pinned while its cells are cleared (unlocked): no Acquire can take it
      // and fill it before the clear lands.
      slot = Slot{};
      slot.pinned = true;
      forgotten.push_back(static_cast<llama_seq_id>(i));
    }
  }
  Status cleared = Status::Ok();
  for (llama_seq_id seq_id : forgotten) {
    if (cleared.ok()) cleared = clear_sequence_(seq_id);
  }
  MutexLock lock(&mu_);
  for (llama_seq_id seq_id : forgotten) {
    Slot& slot = slots_[static_cast<size_t>(seq_id)];
    slot.pinned = false;
    // A sequence whose clear failed or never ran may hold cells: its next owner clears it.
    if (!cleared.ok()) slot.tokens.assign(1, 0);
  }
  if (!cleared.ok()) return cleared;
  return static_cast<int64_t>(forgotten.size());
}

SequencePool::SharedPrefix SequencePool::LongestParkedPrefix(
    std::span<const llama_token> tokens, llama_seq_id except,
    const std::function<bool(std::string_view owner)>& may_share) const {
  MutexLock lock(&mu_);
  SharedPrefix best;
  for (size_t i = 0; i < slots_.size(); ++i) {
    const Slot& slot = slots_[i];
    if (slot.pinned || slot.owner.empty() || static_cast<llama_seq_id>(i) == except) continue;
    if (may_share && !may_share(slot.owner)) continue;
    const size_t n = std::min(slot.tokens.size(), tokens.size());
    size_t common = 0;
    while (common < n && slot.tokens[common] == tokens[common]) ++common;
    if (common > best.n_tokens) best = {static_cast<llama_seq_id>(i), common};
  }
  return best;
}

SequencePoolStats SequencePool::stats() const {
  MutexLock lock(&mu_);
  SequencePoolStats stats = stats_;
  stats.n_reserved = CountReservedLocked();
  stats.max_reserved = max_reserved_;
  for (const Slot& slot : slots_) {
    if (slot.pinned)
      ++stats.n_pinned;
    else if (!slot.owner.empty())
      ++stats.n_parked;
  }
  return stats;
}

int64_t SequencePool::DeviceTokens(const std::string& owner) const {
  MutexLock lock(&mu_);
  auto it = by_owner_.find(owner);
  if (it == by_owner_.end()) return 0;
  return static_cast<int64_t>(slots_[static_cast<size_t>(it->second)].tokens.size());
}

}  // namespace kvault::conversation
