#include "kvault/conversation/kv_cache.h"

#include <algorithm>
#include <chrono>
#include <optional>
#include <string>

#include "kvault/base/log.h"
#include "kvault/base/status_macros.h"
#include "kvault/conversation/conversation.h"
#include "kvault/engine/model.h"

namespace kvault::conversation {
namespace {

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

size_t CommonPrefix(std::span<const llama_token> a, std::span<const llama_token> b) {
  const size_t n = std::min(a.size(), b.size());
  size_t i = 0;
  while (i < n && a[i] == b[i]) ++i;
  return i;
}

}  // namespace

// A prefix read from the store, ready to import.
struct KvCache::Restore {
  size_t n_tokens = 0;
  PrefixSource source = PrefixSource::kNone;
  std::vector<uint8_t> state;  // llama.cpp's sequence state bytes
  double seconds = 0;
  bool failed = false;
};

KvCache::KvCache(engine::Scheduler* scheduler, SequencePool* pool, store::BlockStore* store,
                 RestorePolicy policy, uint32_t n_stream, bool share_across_scopes)
    : scheduler_(scheduler),
      pool_(pool),
      store_(store),
      policy_(policy),
      n_stream_(n_stream),
      share_across_scopes_(share_across_scopes) {}

kv::BlockName KvCache::PartitionOf(const std::string& scope) const {
  return share_across_scopes_ ? kv::BlockName{} : kv::PartitionRoot(scope);
}

std::vector<kv::BlockName> KvCache::VisiblePartitions(const std::string& scope) const {
  if (share_across_scopes_) return {};
  return {PartitionOf(scope), kv::BlockName{}};
}

bool KvCache::MayShare(const std::string& scope, std::string_view owner) const {
  if (share_across_scopes_) return true;
  // Conversation keys are "<scope>\x1f<id>" (conversation.h); scope "" is the operator's.
  return owner.starts_with(ConversationKey(scope, "")) ||
         owner.starts_with(ConversationKey("", ""));
}

KvCache::Restore KvCache::FetchFromStore(const store::Lookup& lookup, size_t own,
                                         llama_seq_id seq_id) {
  Restore restore;
  const Clock::time_point start = Clock::now();
  // Each block is copied straight into the bytes llama.cpp imports, in a buffer kept from
  // an earlier restore: no joined block in between, and no fresh pages to fault in.
  std::optional<kv::SnapshotWriter> writer;
  size_t n_blocks = 0;
  const store::FetchProgress fetched =
      store_->FetchEach(lookup, [&](const kv::KvBlock& block, uint32_t n_tokens) {
        // The writer needs the blocks' shape, known only once the first block is decoded.
        if (!writer) {
          writer.emplace(block.shape, 0, static_cast<uint32_t>(lookup.n_tokens), seq_id, n_stream_,
                         state_buffers_.Take());
        }
        KV_RETURN_IF_ERROR(writer->Append(block, n_tokens));
        ++n_blocks;
        return Status::Ok();
      });
  const Status& status = fetched.error;
  // A fetch that stopped short is still worth importing if it beats the own cells.
  if (writer && fetched.n_tokens > own) {
    restore.state = std::move(*writer).Finish();
    restore.n_tokens = fetched.n_tokens;
  }
  if (!status.ok()) {
    restore.failed = true;
    KV_LOG(kWarning) << "kv: restoring " << lookup.n_tokens << " tokens failed at "
                     << fetched.n_tokens << " (" << status.ToString()
                     << "); recomputing the rest (safe mode)";
  }
  // Only the blocks actually fetched count: one with no RAM copy at Find makes it a disk
  // restore.
  // restore; one with neither a RAM nor a disk copy, a remote restore.
  bool all_in_ram = true;
  bool any_remote_only = false;
  for (size_t i = 0; i < n_blocks; ++i) {
    const uint8_t tiers = lookup.blocks[i].tiers;
    all_in_ram = all_in_ram && (tiers & kv::kTierRam) != 0;
    any_remote_only = any_remote_only || (tiers & (kv::kTierRam | kv::kTierDisk)) == 0;
  }
  restore.source = any_remote_only ? PrefixSource::kRemote
                   : all_in_ram    ? PrefixSource::kRam
                                   : PrefixSource::kDisk;
  restore.seconds = SecondsSince(start);
  return restore;
}

Result<PreparedPrefix> KvCache::Prepare(const SequenceLease& lease,
                                        std::span<const llama_token> prompt,
                                        const std::string& scope, const kv::BlockName& tail_hint) {
  const llama_seq_id seq_id = lease.seq_id;
  // The last token is decoded even when its KV is cached: its logits start the reply.
  const std::span<const llama_token> prefix = prompt.first(prompt.empty() ? 0 : prompt.size() - 1);
  const size_t own = CommonPrefix(lease.tokens, prefix);
  // 0. Blocks other replicas stored: asked for here, on the request's thread (a network
  //    round trip), so the decision below sees them like local ones.
  if (store_ != nullptr && store_->has_remote() && policy_ != RestorePolicy::kNever &&
      own < prefix.size()) {
    store_->Discover(prefix, PartitionOf(scope), tail_hint);
  }
  PreparedPrefix prepared;
  KvSourceChoice choice;
  store::Lookup lookup;
  // 1. Decide, on the engine thread, where every candidate is seen at one instant: what
  //    parked sequences hold cannot change under the decision, and a device source is
  //    carried out in the same step. Nothing is fetched unless a restore is chosen.
  KV_RETURN_IF_ERROR(scheduler_->RunOnEngineThread([&](engine::Context& context) {
    const SequencePool::SharedPrefix shared =
        policy_ == RestorePolicy::kNever
            ? SequencePool::SharedPrefix{}
            : pool_->LongestParkedPrefix(
                  prefix, seq_id, [&](std::string_view owner) { return MayShare(scope, owner); });
    if (store_ != nullptr && policy_ != RestorePolicy::kNever) {
      const kv::BlockName root = PartitionOf(scope);
      lookup = store_->Find(prefix, root);
      if (!(root == kv::BlockName{})) {  // the shared partition: what the operator preloaded
        store::Lookup shared_lookup = store_->Find(prefix);
        if (shared_lookup.n_tokens > lookup.n_tokens) lookup = std::move(shared_lookup);
      }
    }
    choice = ChooseKvSource(
        {.policy = policy_,
         .own = own,
         .shared = shared.n_tokens,
         .stored = lookup.n_tokens,
         .restore_seconds = lookup.restore_seconds,
         .prefill_seconds_per_token = store_ != nullptr ? store_->prefill_seconds_per_token() : 0});
    if (choice.source == KvSource::kRestore) return Status::Ok();  // own cells kept till import
    return UseDevice(context, seq_id, choice, shared.seq_id, &prepared);
  }));
  if (choice.recompute_chosen) {
    MutexLock lock(&mu_);
    ++stats_.recompute_chosen;
  }
  if (choice.source == KvSource::kRestore) {
    // 2. Read and decode on the request's thread, so the engine keeps decoding meanwhile;
    //    the sequence is this request's alone, so its own cells stay valid as a fallback.
    Restore restore = FetchFromStore(lookup, own, seq_id);
    prepared.fell_back = restore.failed;
    const Status ran = scheduler_->RunOnEngineThread(
        [&](engine::Context& context) { return Import(context, seq_id, own, restore, &prepared); });
    state_buffers_.Give(std::move(restore.state));
    KV_RETURN_IF_ERROR(ran);
  }
  CountSource(prepared);
  return prepared;
}

Status KvCache::UseDevice(engine::Context& context, llama_seq_id seq_id,
                          const KvSourceChoice& choice, llama_seq_id shared_seq,
                          PreparedPrefix* prepared) {
  if (choice.source != KvSource::kShared) {  // own cells (or none): cut to the prefix
    prepared->n_tokens = choice.n_tokens;
    prepared->source = choice.n_tokens > 0 ? PrefixSource::kOwn : PrefixSource::kNone;
    // Cells past the prefix hold another continuation; they must go before the rest of the
    // prompt is decoded at their positions.
    return context.RemoveTokens(seq_id, static_cast<llama_pos>(choice.n_tokens), -1);
  }
  // Copying adds the source's cells to what the sequence holds, so it is emptied first.
  context.ClearSequence(seq_id);
  if (context.n_stream() == 1) {
    context.CopySequence(shared_seq, seq_id, 0, static_cast<llama_pos>(choice.n_tokens));
  } else {  // across streams only whole sequences copy: copy, then cut to the prefix
    context.CopySequence(shared_seq, seq_id);
    KV_RETURN_IF_ERROR(context.RemoveTokens(seq_id, static_cast<llama_pos>(choice.n_tokens), -1));
  }
  prepared->n_tokens = choice.n_tokens;
  prepared->source = PrefixSource::kShared;
  return Status::Ok();
}

Status KvCache::Import(engine::Context& context, llama_seq_id seq_id, size_t own,
                       const Restore& restore, PreparedPrefix* prepared) {
  const Clock::time_point start = Clock::now();
  const KvSourceChoice keep_own{own > 0 ? KvSource::kOwn : KvSource::kNone, own, false};
  if (restore.n_tokens <= own) {  // the fetch failed before it beat the own cells
    return UseDevice(context, seq_id, keep_own, -1, prepared);
  }
  // The own cells go only now that the fetch has beaten them; the import needs an empty
  // sequence.
  context.ClearSequence(seq_id);
  Status imported = context.ImportSequence(seq_id, restore.state);
  if (!imported.ok()) {
    // A refused import may leave cells behind, and the own cells are gone already: the
    // prompt is recomputed from position 0.
    context.ClearSequence(seq_id);
    prepared->fell_back = true;
    KV_LOG(kWarning) << "kv: llama.cpp refused a restored prefix of " << restore.n_tokens
                     << " tokens (" << imported.message() << "); recomputing (safe mode)";
    return UseDevice(context, seq_id, {}, -1, prepared);
  }
  prepared->n_tokens = restore.n_tokens;
  prepared->source = restore.source;
  prepared->restore_ms = (restore.seconds + SecondsSince(start)) * 1000.0;
  return Status::Ok();
}

void KvCache::CountSource(const PreparedPrefix& prepared) {
  MutexLock lock(&mu_);
  if (prepared.fell_back) ++stats_.safe_mode_fallbacks;
  switch (prepared.source) {
    case PrefixSource::kNone: ++stats_.cold; break;
    case PrefixSource::kOwn: ++stats_.own; break;
    case PrefixSource::kShared:
      ++stats_.shared;
      stats_.shared_tokens += static_cast<int64_t>(prepared.n_tokens);
      break;
    case PrefixSource::kRam:
    case PrefixSource::kDisk:
    case PrefixSource::kRemote:
      ++(prepared.source == PrefixSource::kRam    ? stats_.restored_ram
         : prepared.source == PrefixSource::kDisk ? stats_.restored_disk
                                                  : stats_.restored_remote);
      stats_.restored_tokens += static_cast<int64_t>(prepared.n_tokens);
      stats_.restore_seconds += prepared.restore_ms / 1000.0;
      break;
    case PrefixSource::kUpstream: break;  // reported by the upstream, never prepared here
  }
}

CheckpointBlocks KvCache::Checkpoint(llama_seq_id seq_id, std::span<const llama_token> held,
                                     const kv::BlockName& previous_tail, bool persist_tail,
                                     const std::string& scope,
                                     const std::function<void(const kv::KvBlock&)>& also) {
  if (store_ == nullptr || held.empty() || policy_ == RestorePolicy::kNever) {
    return {previous_tail, {}};
  }
  const Clock::time_point start = Clock::now();
  std::vector<uint8_t> state;
  Status status = scheduler_->RunOnEngineThread([&](engine::Context& context) {
    KV_ASSIGN_OR_RETURN(state, context.ExportSequence(seq_id));
    return Status::Ok();
  });
  Result<kv::KvBlock> kv = status.ok() ? kv::ParseSnapshot(state) : Result<kv::KvBlock>(status);
  // Blocks are named by `held`: KV stored under tokens it was not computed from would later
  // be restored for any prompt that matches them.
  if (kv.ok() && (kv->first_pos != 0 || kv->n_tokens != held.size())) {
    kv = InternalError("sequence holds " + std::to_string(kv->n_tokens) + " cells from " +
                       std::to_string(kv->first_pos) + ", expected " + std::to_string(held.size()) +
                       " from 0");
  }
  Result<store::StoreResult> stored =
      kv.ok() ? store_->Store(held, *kv, previous_tail, persist_tail, PartitionOf(scope))
              : Result<store::StoreResult>(kv.status());
  if (stored.ok() && persist_tail && store_->has_remote()) {
    // A conversation's new blocks reach the shared tier before its reply is acknowledged,
    // so a replica killed right after answering leaves them to the next one (bounded: a
    // slow Redis costs this reply at most the wait, never the blocks' local copies).
    store_->AwaitRemote(std::chrono::milliseconds(250));
  }
  if (stored.ok() && also) also(*kv);
  MutexLock lock(&mu_);
  stats_.checkpoint_seconds += SecondsSince(start);
  if (!stored.ok()) {
    ++stats_.checkpoint_errors;
    KV_LOG(kWarning) << "kv: checkpoint of sequence " << seq_id
                     << " failed: " << stored.status().ToString();
    // The old tail is still in the store and still this conversation's.
    return {previous_tail, {}};
  }
  ++stats_.checkpoints;
  return {stored->tail, stored->last};
}

void KvCache::RecordPrefill(int64_t n_tokens, double seconds) {
  if (store_ != nullptr) store_->RecordPrefill(n_tokens, seconds);
}

KvCache::Pinned KvCache::Pin(std::span<const llama_token> tokens, const std::string& scope) {
  Pinned pinned;
  if (store_ == nullptr) return pinned;
  const kv::BlockName root = PartitionOf(scope);
  pinned.blocks = store_->Pin(tokens, +1, root);
  const store::Lookup lookup = store_->Find(tokens, root);
  // Pin and Find each take the store's lock on their own; the tree may change in between,
  // hence both bounds.
  for (size_t i = 0; i < pinned.blocks.size() && i < lookup.blocks.size(); ++i) {
    pinned.tokens += lookup.blocks[i].n_tokens;
    pinned.bytes += static_cast<int64_t>(lookup.blocks[i].bytes);
  }
  return pinned;
}

void KvCache::Unpin(std::span<const kv::BlockName> blocks) {
  if (store_ != nullptr) store_->PinNames(blocks, -1);
}

void KvCache::Repin(std::span<const kv::BlockName> blocks) {
  if (store_ != nullptr) store_->PinNames(blocks, +1);
}

void KvCache::DropTail(const kv::BlockName& tail) {
  if (store_ != nullptr && !(tail == kv::BlockName{})) store_->Drop(tail);
}

Result<store::Removed> KvCache::ClearScope(const std::string& scope) {
  if (store_ == nullptr) return store::Removed{};
  if (scope.empty()) return store_->Clear();
  if (share_across_scopes_) {
    return FailedPreconditionError(
        "with --shared-cache every stored block is shared between API keys, so none is this "
        "key's alone to clear; clear one conversation with {\"conversation_id\"}");
  }
  const kv::BlockName own[] = {PartitionOf(scope)};
  return store_->Clear(own);
}

store::Removed KvCache::ClearBranch(const kv::BlockName& last) {
  if (store_ == nullptr || last == kv::BlockName{}) return {};
  return store_->ClearBranch(last);
}

KvCacheStats KvCache::stats() const {
  MutexLock lock(&mu_);
  return stats_;
}

}  // namespace kvault::conversation
