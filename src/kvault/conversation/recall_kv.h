// conversation/recall_kv.h: recalled history comes back as KV, not as re-prefill (the
// "materialization event").
//
// Keeping. After a checkpoint, the KV of each span of kSpanTokens (128) history tokens that
// the window held contiguously (its clear zone) is kept as well, as it was computed there:
// spans are aligned to absolute history positions, named by the conversation, the span's
// first position and its tokens (so a rewritten history never matches), encoded at rest with
// RecallKvParams::codec (q8 by default: bench/RESULTS.md "Recall KV" has the fidelity figures
// that chose it), under the block store's tiers, budgets, eviction and TTL
// (store::BlockStore::StoreDetached). A span is encoded once; later windows only touch it.
//
// Materialization. When the window recalls a chunk as its own tokens (memory/window_builder.h,
// token recall), the spans covering it are read back, each is imported into a scratch
// sequence at the positions it was computed at, moved to the chunk's place in the prompt
// with llama.cpp's own position shift (llama_memory_seq_add, which re-rotates K at the next
// decode; V does not depend on the position) and copied into the request's sequence (shared
// cells: no bytes move). The scheduler then skips those tokens (engine::HeldRange). Blend
// prefills the leading `blend_fraction` of each chunk instead: those tokens see the chunk's
// new left context, and what follows attends to them.
//
// Safe mode: a span not kept, one that fails to read (corrupt, evicted meanwhile, another
// shape) and an import llama.cpp refuses make their chunk prefilled, counted; the request
// goes on. Refused outright (prefilled, counted): models llama.cpp cannot shift (M-RoPE,
// per-layer RoPE) and caches of one stream per sequence, across which llama.cpp copies only
// whole sequences (--kv-unified is needed).
//
// Thread-safety: all methods may be called from any thread; the puts run on the scheduler's
// engine thread.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <llama.h>

#include "kvault/base/mutex.h"
#include "kvault/base/result.h"
#include "kvault/engine/scheduler.h"
#include "kvault/kv/block_hash.h"
#include "kvault/kv/snapshot_codec.h"
#include "kvault/kv/snapshot_layout.h"
#include "kvault/memory/token_store.h"
#include "kvault/memory/window_builder.h"
#include "kvault/store/block_store.h"

namespace kvault::conversation {

enum class RecallKvMode { kOff, kReuse, kBlend };
Result<RecallKvMode> ParseRecallKvMode(std::string_view name);  // "off", "reuse", "blend"
std::string_view RecallKvModeName(RecallKvMode mode);

struct RecallKvParams {
  RecallKvMode mode = RecallKvMode::kOff;
  // Blend: the share of each recalled chunk, from its start, that is prefilled.
  double blend_fraction = 0.25;
  kv::CodecOptions codec{.encoding = kv::BlockEncoding::kQ8};
};

// What one prompt's recall did with its chunks' KV.
struct RecallKvCounts {
  int64_t chunks_materialized = 0;  // at least part of the chunk put back as KV
  int64_t chunks_prefilled = 0;     // wholly prefilled (not kept, failed, or refused)
  int64_t tokens_materialized = 0;
  int64_t tokens_prefilled = 0;  // recalled tokens decoded (blend's share included)
  int64_t tokens_reused = 0;     // already in the sequence from the previous turn's prompt
  int64_t spans_missing = 0;     // not kept, or evicted
  int64_t spans_failed = 0;      // corrupt, unreadable or refused by llama.cpp
  std::string refused;           // why nothing was materialized ("" if it was tried)
  double materialize_ms = 0;     // reading, decoding, importing and shifting

  void Add(const RecallKvCounts& other);
};

struct RecallKvStats {
  std::string mode;
  double blend_fraction = 0;
  std::string encoding;  // at rest
  RecallKvCounts totals;
  int64_t requests = 0;     // prompts that recalled chunks
  int64_t refusals = 0;     // prompts whose recall could not be materialized at all
  int64_t kept_spans = 0;   // spans encoded and stored
  int64_t kept_bytes = 0;   // their encoded size
  int64_t kept_tokens = 0;  // tokens they cover
  int64_t keep_errors = 0;
  double keep_seconds = 0;
};

// A part of a kept history span ready to import: its cells at the positions they were
// computed at, [from, from + n), bound for prompt position `to`.
struct KvPiece {
  std::vector<uint8_t> state;  // llama_state_seq_set_data bytes for the scratch sequence
  llama_pos from = 0;
  llama_pos to = 0;
  uint32_t n = 0;
};
KvPiece MakeKvPiece(const kv::KvBlock& part, llama_pos to, llama_seq_id scratch, uint32_t n_stream);

// On the engine thread: puts `pieces` into `seq` at their `to` positions through `scratch`
// (imported where computed, llama_memory_seq_add to the new place, shared by seq_cp; K is
// re-rotated at the next decode). REQUIRES: context.CanShift(), one stream, `seq` holds
// exactly the positions before the first piece. On an import llama.cpp refuses, the pieces
// already put are removed again and the error is returned. `scratch` is left empty.
Status PutKvPieces(engine::Context& context, llama_seq_id scratch, llama_seq_id seq,
                   std::span<const KvPiece> pieces);

class RecallKv {
 public:
  static constexpr int64_t kSpanTokens = 128;

  // `store` may be null (nothing is kept; every chunk is prefilled). `scratch_seq`: a
  // sequence of the context no request uses. `n_stream`: engine::Context::n_stream().
  // `accumulators`: more unused sequences, one per request recalling at once (see
  // Materialize); without a free one a request's chunks are shifted one by one.
  // `accumulators`: more unused sequences, one per request recalling at once (see
  // Materialize); without a free one a request's chunks are shifted one by one.
  RecallKv(store::BlockStore* store, RecallKvParams params, llama_seq_id scratch_seq,
           uint32_t n_stream, std::vector<llama_seq_id> accumulators = {});

  // Materialization can run (a mode other than off, a store, a scratch sequence and one
  // cell pool): windows should then recall chunks as their tokens
  // (memory::WindowParams::token_recall), and spans are kept.
  bool active() const {
    return params_.mode != RecallKvMode::kOff && store_ != nullptr && scratch_seq_ >= 0 &&
           n_stream_ == 1;
  }
  const RecallKvParams& params() const { return params_; }

  // After a checkpoint: keeps the spans of `run` (its offset a position in the sequence)
  // that `kv`, the sequence's state for `held` (positions [0, held.size())), holds and the
  // store does not have yet. Failures are logged and counted, never fatal.
  void Keep(const kv::KvBlock& kv, std::span<const llama_token> held, const memory::HistoryRun& run,
            const kv::BlockName& partition, std::string_view conversation_key);

  struct Materialized {
    // Prompt-relative from `reused`; each puts its chunk's KV in place when the scheduler
    // reaches it (engine::HeldRange::put) and moves the chunk from prefilled to materialized
    // in `counts`.
    std::vector<engine::HeldRange> held;
    // Final once the generation has ended; then hand it to Record.
    std::shared_ptr<RecallKvCounts> counts;
  };
  // llama.cpp re-rotates K in one pass over every cell of the cache at the next decode after
  // a shift, whatever was shifted: putting each chunk when the prompt reaches it would cost
  // one such pass per chunk. So at the first chunk, all of them are imported, shifted to
  // their final positions in an accumulator sequence (one pass for all, at the next decode),
  // and each later chunk is only shared from there.
  //
  // Before a generation: reads the kept KV of `runs` (recalled chunks, their offsets prompt
  // positions) for a sequence that holds prompt positions [0, reused), and returns what puts
  // it in place. Chunks without kept KV, and all of them where materialization is refused
  // (counts->refused says why), are left to prefill. Never fails a request: every failure
  // means prefill.
  Result<Materialized> Materialize(llama_seq_id seq_id, size_t reused,
                                   std::span<const memory::HistoryRun> runs,
                                   const memory::TokenStore& history,
                                   const kv::BlockName& partition,
                                   std::string_view conversation_key);
  // Adds a request's final counts to the totals.
  void Record(const RecallKvCounts& counts);

  // Counts chunks a window recalled as text (--recall-kv off, or a template that cannot be
  // split around a chunk): all prefilled. Returns them with the reason.
  RecallKvCounts CountText(int64_t chunks, int64_t tokens);

  RecallKvStats stats() const;

 private:
  struct Group;
  void ReleaseAccumulator(llama_seq_id seq);
  kv::BlockName SpanRoot(const kv::BlockName& partition, std::string_view key,
                         int64_t first_pos) const;
  void Count(const RecallKvCounts& counts);

  store::BlockStore* const store_;
  const RecallKvParams params_;
  const llama_seq_id scratch_seq_;
  const uint32_t n_stream_;
  mutable Mutex mu_;
  RecallKvStats stats_ KV_GUARDED_BY(mu_);
  std::vector<llama_seq_id> free_accumulators_ KV_GUARDED_BY(mu_);
};

}  // namespace kvault::conversation
