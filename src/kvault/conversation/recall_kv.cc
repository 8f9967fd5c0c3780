#include "kvault/conversation/recall_kv.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "kvault/base/log.h"
#include "kvault/base/status_macros.h"
#include "kvault/engine/context.h"

namespace kvault::conversation {
namespace {

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

int64_t FloorTo(int64_t pos, int64_t step) { return pos / step * step; }

}  // namespace

Result<RecallKvMode> ParseRecallKvMode(std::string_view name) {
  if (name == "off") return RecallKvMode::kOff;
  if (name == "reuse") return RecallKvMode::kReuse;
  if (name == "blend") return RecallKvMode::kBlend;
  return InvalidArgumentError("recall KV mode must be off, reuse or blend, not '" +
                              std::string(name) + "'");
}

std::string_view RecallKvModeName(RecallKvMode mode) {
  switch (mode) {
    case RecallKvMode::kOff: return "off";
    case RecallKvMode::kReuse: return "reuse";
    case RecallKvMode::kBlend: return "blend";
  }
  return "off";
}

void RecallKvCounts::Add(const RecallKvCounts& other) {
  chunks_materialized += other.chunks_materialized;
  chunks_prefilled += other.chunks_prefilled;
  tokens_materialized += other.tokens_materialized;
  tokens_prefilled += other.tokens_prefilled;
  tokens_reused += other.tokens_reused;
  spans_missing += other.spans_missing;
  spans_failed += other.spans_failed;
  materialize_ms += other.materialize_ms;
}

KvPiece MakeKvPiece(const kv::KvBlock& part, llama_pos to, llama_seq_id scratch,
                    uint32_t n_stream) {
  return {kv::SerializeSnapshot(part, scratch, n_stream), part.first_pos, to, part.n_tokens};
}

Status PutKvPieces(engine::Context& context, llama_seq_id scratch, llama_seq_id seq,
                   std::span<const KvPiece> pieces) {
  Status status;
  for (const KvPiece& piece : pieces) {
    context.ClearSequence(scratch);
    status = context.ImportSequence(scratch, piece.state);
    if (!status.ok()) break;
    const auto n = static_cast<llama_pos>(piece.n);
    context.ShiftPositions(scratch, piece.from, piece.from + n, piece.to - piece.from);
    context.CopySequence(scratch, seq, piece.to, piece.to + n);
  }
  context.ClearSequence(scratch);
  // A part put back would leave a hole: what was copied goes again.
  if (!status.ok() && !pieces.empty()) {
    context.RemoveTokens(seq, pieces.front().to, -1).IgnoreError();
  }
  return status;
}

RecallKv::RecallKv(store::BlockStore* store, RecallKvParams params, llama_seq_id scratch_seq,
                   uint32_t n_stream, std::vector<llama_seq_id> accumulators)
    : store_(store),
      params_(params),
      scratch_seq_(scratch_seq),
      n_stream_(n_stream),
      free_accumulators_(std::move(accumulators)) {
  stats_.mode = std::string(RecallKvModeName(params_.mode));
  stats_.blend_fraction = params_.mode == RecallKvMode::kBlend ? params_.blend_fraction : 0;
  stats_.encoding = std::string(kv::BlockEncodingName(params_.codec.encoding));
}

kv::BlockName RecallKv::SpanRoot(const kv::BlockName& partition, std::string_view key,
                                 int64_t first_pos) const {
  // A partition root of its own per span: no prefix lookup (of any scope) ever reaches it,
  // and the store's recovery takes it as a root.
  return kv::PartitionRoot("recall-kv\x1f" + partition.ToHex() + "\x1f" + std::string(key) +
                           "\x1f" + std::to_string(first_pos));
}

void RecallKv::Keep(const kv::KvBlock& kv, std::span<const llama_token> held,
                    const memory::HistoryRun& run, const kv::BlockName& partition,
                    std::string_view conversation_key) {
  if (!active() || run.n_tokens <= 0) return;
  const Clock::time_point start = Clock::now();
  int64_t kept = 0;
  int64_t bytes = 0;
  int64_t errors = 0;
  // Whole spans only: a span is kept as one piece of KV computed in one window.
  for (int64_t pos = FloorTo(run.first_pos + kSpanTokens - 1, kSpanTokens);
       pos + kSpanTokens <= run.first_pos + run.n_tokens; pos += kSpanTokens) {
    const int64_t at = run.offset + (pos - run.first_pos);
    if (at < 0 || at + kSpanTokens > static_cast<int64_t>(held.size()) ||
        at + kSpanTokens > static_cast<int64_t>(kv.n_tokens)) {
      break;
    }
    const std::span<const llama_token> tokens = held.subspan(static_cast<size_t>(at), kSpanTokens);
    const kv::BlockName root = SpanRoot(partition, conversation_key, pos);
    if (store_->Has(tokens, root)) continue;
    Result<kv::KvBlock> slice = kv::SliceBlock(kv, static_cast<llama_pos>(kv.first_pos + at),
                                               static_cast<uint32_t>(kSpanTokens));
    Result<store::StoreResult> stored =
        slice.ok() ? store_->StoreDetached(tokens, *slice, root, params_.codec)
                   : Result<store::StoreResult>(slice.status());
    if (!stored.ok()) {
      ++errors;
      KV_LOG(kWarning) << "recall-kv: keeping history span " << pos
                       << " failed: " << stored.status().ToString();
      continue;
    }
    if (stored->n_new_blocks > 0) {
      ++kept;
      bytes += static_cast<int64_t>(store_->Find(tokens, root).bytes);
    }
  }
  MutexLock lock(&mu_);
  stats_.kept_spans += kept;
  stats_.kept_tokens += kept * kSpanTokens;
  stats_.kept_bytes += bytes;
  stats_.keep_errors += errors;
  stats_.keep_seconds += SecondsSince(start);
}

// One request's chunks, shared by their puts (which the scheduler runs in prompt order).
struct RecallKv::Group {
  struct Item {
    std::vector<KvPiece> pieces;
    llama_pos begin = 0;
    llama_pos end = 0;
    bool ready = false;  // rotated into place in the accumulator
  };
  RecallKv* owner = nullptr;
  llama_seq_id scratch = -1;
  llama_seq_id seq = -1;
  llama_seq_id accumulator = -1;  // -1: none was free, each chunk is put on its own
  std::vector<Item> chunks;
  size_t remaining = 0;
  bool prepared = false;
  std::shared_ptr<RecallKvCounts> counts;

  ~Group() {
    if (accumulator >= 0) owner->ReleaseAccumulator(accumulator);
  }

  bool Put(engine::Context& context, size_t index) {
    const Clock::time_point started = Clock::now();
    Item& item = chunks[index];
    bool ok = context.CanShift();
    if (!ok && counts->refused.empty()) {
      counts->refused = "llama.cpp cannot shift this model's positions";
    }
    if (ok && accumulator < 0) {
      ok = Placed(PutKvPieces(context, scratch, seq, item.pieces));
    } else if (ok) {
      if (!prepared) {
        // All chunks at once, each at its final position: one K re-rotation pass for them all
        // at the next decode. A leftover of a request that ended early goes first.
        prepared = true;
        context.ClearSequence(accumulator);
        for (Item& other : chunks) {
          other.ready = Placed(PutKvPieces(context, scratch, accumulator, other.pieces));
          other.pieces = {};
        }
      }
      ok = item.ready;
      if (ok) context.CopySequence(accumulator, seq, item.begin, item.end);
      if (--remaining == 0) context.ClearSequence(accumulator);
    }
    if (ok) {
      const int64_t n = item.end - item.begin;
      --counts->chunks_prefilled;
      ++counts->chunks_materialized;
      counts->tokens_prefilled -= n;
      counts->tokens_materialized += n;
    }
    counts->materialize_ms += SecondsSince(started) * 1000.0;
    return ok;
  }

  bool Placed(const Status& status) {
    if (status.ok()) return true;
    KV_LOG(kWarning) << "recall-kv: llama.cpp refused a history span (" << status.message()
                     << "); its chunk is prefilled";
    ++counts->spans_failed;
    return false;
  }
};

Result<RecallKv::Materialized> RecallKv::Materialize(llama_seq_id seq_id, size_t reused,
                                                     std::span<const memory::HistoryRun> runs,
                                                     const memory::TokenStore& history,
                                                     const kv::BlockName& partition,
                                                     std::string_view conversation_key) {
  Materialized result;
  result.counts = std::make_shared<RecallKvCounts>();
  RecallKvCounts& counts = *result.counts;
  if (runs.empty()) return result;
  const Clock::time_point start = Clock::now();
  // Until it is put in place, every chunk counts as prefilled: one the prompt never reaches
  // (a cancelled request) was not materialized.
  struct Chunk {
    const memory::HistoryRun* run = nullptr;
    llama_pos begin = 0;  // prompt positions to materialize
    llama_pos end = 0;
    std::vector<KvPiece> pieces;
    bool usable = true;
  };
  std::vector<Chunk> chunks;
  const auto done = static_cast<llama_pos>(reused);
  for (const memory::HistoryRun& run : runs) {
    const auto run_begin = static_cast<llama_pos>(run.offset);
    const auto run_end = static_cast<llama_pos>(run.offset + run.n_tokens);
    counts.tokens_reused += std::max(0, std::min(run_end, done) - run_begin);
    if (run_end <= done) continue;
    ++counts.chunks_prefilled;
    counts.tokens_prefilled += run_end - std::max(run_begin, done);
    // Blend recomputes each chunk's first tokens: they are the ones whose left context
    // changed (the recall header or the chunk before, instead of the history before them).
    const auto blended =
        params_.mode == RecallKvMode::kBlend
            ? static_cast<llama_pos>(std::ceil(params_.blend_fraction * run.n_tokens))
            : 0;
    const llama_pos begin = std::max(run_begin + blended, done);
    if (begin < run_end) chunks.push_back({&run, begin, run_end, {}, true});
  }
  if (chunks.empty()) return result;
  if (params_.mode == RecallKvMode::kOff)
    counts.refused = "--recall-kv off";
  else if (store_ == nullptr)
    counts.refused = "no block store";
  else if (scratch_seq_ < 0)
    counts.refused = "no spare sequence for the imports";
  else if (n_stream_ != 1) {
    counts.refused =
        "the KV cache has one stream per sequence (materialization needs --kv-unified)";
  }
  if (!counts.refused.empty()) return result;
  // 1. Read the kept spans now, on the request's thread (disk reads, decoding).
  for (Chunk& chunk : chunks) {
    // Prompt position `begin` holds history position first_pos + (begin - offset).
    const memory::HistoryRun* run = chunk.run;
    const int64_t lo = run->first_pos + (chunk.begin - run->offset);
    const int64_t hi = run->first_pos + run->n_tokens;
    for (int64_t span = FloorTo(lo, kSpanTokens); span < hi; span += kSpanTokens) {
      Result<std::vector<int32_t>> tokens = history.Tokens(span, kSpanTokens);
      store::Lookup lookup;
      if (tokens.ok()) lookup = store_->Find(*tokens, SpanRoot(partition, conversation_key, span));
      if (!tokens.ok() || lookup.n_tokens != static_cast<size_t>(kSpanTokens)) {
        ++counts.spans_missing;
        chunk.usable = false;
        break;
      }
      lookup.detached = true;
      store::Fetched fetched = store_->Fetch(lookup);
      Result<kv::KvBlock> block = !fetched.error.ok()          ? Result<kv::KvBlock>(fetched.error)
                                  : fetched.blocks.size() == 1 ? std::move(fetched.blocks[0])
                                                               : kv::JoinBlocks(fetched.blocks);
      const int64_t from = std::max(lo, span);
      const int64_t to = std::min(hi, span + kSpanTokens);
      Result<kv::KvBlock> part =
          block.ok()
              ? kv::SliceBlock(*block, block->first_pos + static_cast<llama_pos>(from - span),
                               static_cast<uint32_t>(to - from))
              : block;
      if (!part.ok()) {
        ++counts.spans_failed;
        chunk.usable = false;
        KV_LOG(kWarning) << "recall-kv: history span " << span << " of '" << conversation_key
                         << "' could not be read (" << part.status().ToString()
                         << "); its chunk is prefilled";
        break;
      }
      chunk.pieces.push_back(MakeKvPiece(*part, static_cast<llama_pos>(chunk.begin + (from - lo)),
                                         scratch_seq_, n_stream_));
    }
  }
  counts.materialize_ms = SecondsSince(start) * 1000.0;
  // 2. Put in place on the engine thread when the prompt reaches them: llama.cpp appends to a
  //    sequence only after its last position, so a chunk can go in only once what precedes it
  //    in the prompt is decoded. Imported at the positions they were computed at into the
  //    scratch sequence (an import empties its target), shifted, shared into the request's,
  //    all at the first chunk through the accumulator where there is one (see the header).
  auto group = std::make_shared<Group>();
  group->owner = this;
  group->scratch = scratch_seq_;
  group->seq = seq_id;
  group->counts = result.counts;
  {
    MutexLock lock(&mu_);
    if (!free_accumulators_.empty()) {
      group->accumulator = free_accumulators_.back();
      free_accumulators_.pop_back();
    }
  }
  for (Chunk& chunk : chunks) {
    if (!chunk.usable) continue;
    const size_t index = group->chunks.size();
    group->chunks.push_back({std::move(chunk.pieces), chunk.begin, chunk.end, false});
    result.held.push_back(
        {static_cast<size_t>(chunk.begin) - reused, static_cast<size_t>(chunk.end - chunk.begin),
         [group, index](engine::Context& context) { return group->Put(context, index); }});
  }
  group->remaining = group->chunks.size();
  return result;
}

void RecallKv::ReleaseAccumulator(llama_seq_id seq) {
  MutexLock lock(&mu_);
  free_accumulators_.push_back(seq);
}

void RecallKv::Record(const RecallKvCounts& counts) { Count(counts); }

RecallKvCounts RecallKv::CountText(int64_t chunks, int64_t tokens) {
  RecallKvCounts counts;
  counts.chunks_prefilled = chunks;
  counts.tokens_prefilled = tokens;
  counts.refused = params_.mode == RecallKvMode::kOff ? "--recall-kv off"
                   : !active() ? "materialization needs a block store and --kv-unified"
                               : "the chat template could not be split around a chunk";
  Count(counts);
  return counts;
}

void RecallKv::Count(const RecallKvCounts& counts) {
  MutexLock lock(&mu_);
  ++stats_.requests;
  if (!counts.refused.empty()) ++stats_.refusals;
  stats_.totals.Add(counts);
}

RecallKvStats RecallKv::stats() const {
  MutexLock lock(&mu_);
  return stats_;
}

}  // namespace kvault::conversation
