// conversation/sequence_pool.h: which conversation owns which sequence of the llama context.
// A conversation keeps its sequence (and the KV cells in it) after its request ends
// ("parked"), so its next turn only decodes what is new. When a request needs a sequence
// and none is free, the least recently used parked conversation loses its own: its cells are
// cleared and its next request starts from a cold sequence.
//
// A sequence is pinned while a request runs on it and is never taken from a pinned owner.
// The pool holds `threads + spare` sequences, so a running request always finds one.
//
// A reserved sequence (a pinned conversation's, the TSCM seed's dedicated slot) is not taken
// even while parked. At most `max_reserved` are reserved at once, and the stack sizes the pool
// so that `n_sequences - max_reserved` is still at least the threads: reservations never
// starve running requests (conversation/stack.cc: --pinned-sequences).
//
// Thread-safety: all methods may be called from any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <llama.h>

#include "kvault/base/mutex.h"
#include "kvault/base/result.h"

namespace kvault::conversation {

struct SequenceLease {
  llama_seq_id seq_id = -1;
  // Tokens whose KV the sequence holds, from position 0 (empty for a fresh sequence).
  std::vector<llama_token> tokens;
};

struct SequencePoolStats {
  int64_t n_sequences = 0;
  int64_t n_pinned = 0;
  int64_t n_parked = 0;
  int64_t n_reserved = 0;    // sequences of pinned conversations (SetReserved)
  int64_t max_reserved = 0;  // how many may be reserved at once
  int64_t hits = 0;          // a request found its conversation's sequence still there
  int64_t misses = 0;        // it had to start from a fresh sequence
  int64_t evictions = 0;     // a parked conversation lost its sequence
};

class SequencePool {
 public:
  // `clear_sequence` empties a sequence's cells; it runs without the pool's lock held.
  // REQUIRES: 0 <= max_reserved <= n_sequences.
  SequencePool(int n_sequences, int max_reserved,
               std::function<Status(llama_seq_id)> clear_sequence);

  // Pins a sequence for `owner`: its own if it still has one, otherwise a free one or the
  // least recently used parked one. ResourceExhausted if every sequence is pinned.
  Result<SequenceLease> Acquire(const std::string& owner);
  // Unpins and records what the sequence now holds.
  void Release(const std::string& owner, std::vector<llama_token> tokens);
  // Keeps `owner`'s sequence on the device while parked: it is never taken by another
  // owner (a dedicated slot). FailedPrecondition if `owner` has no sequence, or (detail
  // kPinsExhausted) if `max_reserved` others are reserved already.
  Status SetReserved(const std::string& owner, bool reserved);
  // OK if `owner` is reserved or could be now; otherwise SetReserved's kPinsExhausted error.
  // Changes nothing: the manager asks before it commits a pinned request's turns.
  Status CheckReservable(const std::string& owner) const;
  bool IsReserved(const std::string& owner) const;
  // Drops `owner`'s sequence (its cells are cleared). OK if it has none.
  Status Forget(const std::string& owner);
  // Drops every parked sequence whose owner `selected` accepts (running ones stay); how
  // many. The first error of clearing one ends it.
  Result<int64_t> ForgetParked(const std::function<bool(std::string_view owner)>& selected);

  // The parked sequence (other than `except`) whose tokens share the longest prefix with
  // `tokens`: its cells can be shared (Context::CopySequence) instead of recomputed. Only
  // parked sequences qualify: a running one may be trimming or growing. Call it on the engine
  // thread, where no other KV operation can interleave. {-1, 0} if none shares anything.
  struct SharedPrefix {
    llama_seq_id seq_id = -1;
    size_t n_tokens = 0;
  };
  // Only sequences whose owner `may_share` accepts are considered (all without it).
  SharedPrefix LongestParkedPrefix(
      std::span<const llama_token> tokens, llama_seq_id except,
      const std::function<bool(std::string_view owner)>& may_share = nullptr) const;

  SequencePoolStats stats() const;
  // Tokens held on the device by `owner` (0 if none).
  int64_t DeviceTokens(const std::string& owner) const;

 private:
  struct Slot {
    std::string owner;  // "" when free
    bool pinned = false;
    bool reserved = false;  // never taken from its owner (SetReserved)
    uint64_t last_use = 0;
    std::vector<llama_token> tokens;
  };

  int64_t CountReservedLocked() const KV_REQUIRES(mu_);
  Status CheckReservableLocked(const std::string& owner) const KV_REQUIRES(mu_);

  const int max_reserved_;
  const std::function<Status(llama_seq_id)> clear_sequence_;
  mutable Mutex mu_;
  std::vector<Slot> slots_ KV_GUARDED_BY(mu_);
  std::map<std::string, llama_seq_id> by_owner_ KV_GUARDED_BY(mu_);
  uint64_t clock_ KV_GUARDED_BY(mu_) = 0;
  SequencePoolStats stats_ KV_GUARDED_BY(mu_);
};

}  // namespace kvault::conversation
