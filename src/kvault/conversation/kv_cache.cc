#include "kvault/conversation/kv_cache.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <optional>
#include <string>

#include "kvault/base/log.h"
#include "kvault/base/status_macros.h"
#include "kvault/engine/batch_decoder.h"
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

Result<RestorePolicy> ParseRestorePolicy(std::string_view name) {
  if (name == "auto") return RestorePolicy::kAuto;
  if (name == "always") return RestorePolicy::kAlways;
  if (name == "never") return RestorePolicy::kNever;
  return InvalidArgumentError("unknown restore policy '" + std::string(name) +
                              "' (expected auto, always or never)");
}

std::string_view PrefixSourceName(PrefixSource source) {
  switch (source) {
    case PrefixSource::kNone: return "none";
    case PrefixSource::kOwn: return "own";
    case PrefixSource::kShared: return "shared";
    case PrefixSource::kRam: return "ram";
    case PrefixSource::kDisk: return "disk";
  }
  return "none";
}

// A prefix read from the store, ready to import.
struct KvCache::Restore {
  size_t n_tokens = 0;
  PrefixSource source = PrefixSource::kNone;
  std::vector<uint8_t> state;  // llama.cpp's sequence state bytes
  double seconds = 0;
  bool failed = false;
};

KvCache::KvCache(engine::Scheduler* scheduler, SequencePool* pool, store::BlockStore* store,
                 RestorePolicy policy, uint32_t n_stream)
    : scheduler_(scheduler), pool_(pool), store_(store), policy_(policy), n_stream_(n_stream) {}

KvCache::Restore KvCache::FetchFromStore(std::span<const llama_token> prefix, size_t own,
                                         llama_seq_id seq_id) {
  Restore restore;
  if (store_ == nullptr) return restore;
  const store::Lookup lookup = store_->Find(prefix);
  if (lookup.n_tokens <= own) return restore;
  const double recompute_s =
      static_cast<double>(lookup.n_tokens - own) * store_->prefill_seconds_per_token();
  if (policy_ == RestorePolicy::kAuto && lookup.restore_seconds >= recompute_s) {
    MutexLock lock(&mu_);
    ++stats_.recompute_chosen;
    return restore;
  }
  const Clock::time_point start = Clock::now();
  // Each block is copied straight into the bytes llama.cpp imports, in a buffer kept from
  // an earlier restore: no joined block in between, and no fresh pages to fault in.
  std::optional<kv::SnapshotWriter> writer;
  size_t n_blocks = 0;
  const store::FetchProgress fetched =
      store_->FetchEach(lookup, [&](const kv::KvBlock& block, uint32_t n_tokens) {
        if (!writer) {
          writer.emplace(block.shape, 0, static_cast<uint32_t>(lookup.n_tokens), seq_id, n_stream_,
                         state_buffers_.Take());
        }
        KV_RETURN_IF_ERROR(writer->Append(block, n_tokens));
        ++n_blocks;
        return Status::Ok();
      });
  const Status& status = fetched.error;
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
  bool all_in_ram = true;
  for (size_t i = 0; i < n_blocks; ++i) {
    all_in_ram = all_in_ram && (lookup.blocks[i].tiers & kv::kTierRam) != 0;
  }
  restore.source = all_in_ram ? PrefixSource::kRam : PrefixSource::kDisk;
  restore.seconds = SecondsSince(start);
  return restore;
}

Result<PreparedPrefix> KvCache::Prepare(const SequenceLease& lease,
                                        std::span<const llama_token> prompt) {
  const llama_seq_id seq_id = lease.seq_id;
  const std::span<const llama_token> prefix = prompt.first(prompt.empty() ? 0 : prompt.size() - 1);
  PreparedPrefix prepared;
  if (policy_ == RestorePolicy::kNever) {
    KV_RETURN_IF_ERROR(scheduler_->RunOnEngineThread([seq_id](engine::Context& context) {
      context.ClearSequence(seq_id);
      return Status::Ok();
    }));
    CountSource(prepared);
    return prepared;
  }
  const size_t own = CommonPrefix(lease.tokens, prefix);
  Restore restore = FetchFromStore(prefix, own, seq_id);
  prepared.fell_back = restore.failed;
  const Status ran = scheduler_->RunOnEngineThread([&](engine::Context& context) {
    const Clock::time_point start = Clock::now();
    const SequencePool::SharedPrefix shared = pool_->LongestParkedPrefix(prefix, seq_id);
    const size_t best = std::max({own, shared.n_tokens, restore.n_tokens});
    if (best == own) {
      prepared = {own, own > 0 ? PrefixSource::kOwn : PrefixSource::kNone, 0, prepared.fell_back};
      return context.RemoveTokens(seq_id, static_cast<llama_pos>(own), -1);
    }
    context.ClearSequence(seq_id);
    if (best == shared.n_tokens) {
      if (context.n_stream() == 1) {
        context.CopySequence(shared.seq_id, seq_id, 0, static_cast<llama_pos>(best));
      } else {  // across streams only whole sequences copy: copy, then cut to the prefix
        context.CopySequence(shared.seq_id, seq_id);
        KV_RETURN_IF_ERROR(context.RemoveTokens(seq_id, static_cast<llama_pos>(best), -1));
      }
      prepared.n_tokens = best;
      prepared.source = PrefixSource::kShared;
      return Status::Ok();
    }
    Status imported = context.ImportSequence(seq_id, restore.state);
    if (!imported.ok()) {
      context.ClearSequence(seq_id);
      prepared.fell_back = true;
      KV_LOG(kWarning) << "kv: llama.cpp refused a restored prefix of " << restore.n_tokens
                       << " tokens (" << imported.message() << "); recomputing (safe mode)";
      return Status::Ok();
    }
    prepared.n_tokens = restore.n_tokens;
    prepared.source = restore.source;
    prepared.restore_ms = (restore.seconds + SecondsSince(start)) * 1000.0;
    return Status::Ok();
  });
  state_buffers_.Give(std::move(restore.state));
  KV_RETURN_IF_ERROR(ran);
  CountSource(prepared);
  return prepared;
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
      ++(prepared.source == PrefixSource::kRam ? stats_.restored_ram : stats_.restored_disk);
      stats_.restored_tokens += static_cast<int64_t>(prepared.n_tokens);
      stats_.restore_seconds += prepared.restore_ms / 1000.0;
      break;
  }
}

kv::BlockName KvCache::Checkpoint(llama_seq_id seq_id, std::span<const llama_token> held,
                                  const kv::BlockName& previous_tail, bool persist_tail) {
  if (store_ == nullptr || held.empty() || policy_ == RestorePolicy::kNever) return previous_tail;
  const Clock::time_point start = Clock::now();
  std::vector<uint8_t> state;
  Status status = scheduler_->RunOnEngineThread([&](engine::Context& context) {
    KV_ASSIGN_OR_RETURN(state, context.ExportSequence(seq_id));
    return Status::Ok();
  });
  Result<kv::KvBlock> kv = status.ok() ? kv::ParseSnapshot(state) : Result<kv::KvBlock>(status);
  if (kv.ok() && (kv->first_pos != 0 || kv->n_tokens != held.size())) {
    kv = InternalError("sequence holds " + std::to_string(kv->n_tokens) + " cells from " +
                       std::to_string(kv->first_pos) + ", expected " + std::to_string(held.size()) +
                       " from 0");
  }
  Result<store::StoreResult> stored = kv.ok()
                                          ? store_->Store(held, *kv, previous_tail, persist_tail)
                                          : Result<store::StoreResult>(kv.status());
  MutexLock lock(&mu_);
  stats_.checkpoint_seconds += SecondsSince(start);
  if (!stored.ok()) {
    ++stats_.checkpoint_errors;
    KV_LOG(kWarning) << "kv: checkpoint of sequence " << seq_id
                     << " failed: " << stored.status().ToString();
    return previous_tail;
  }
  ++stats_.checkpoints;
  return stored->tail;
}

void KvCache::RecordPrefill(int64_t n_tokens, double seconds) {
  if (store_ != nullptr) store_->RecordPrefill(n_tokens, seconds);
}

KvCache::Pinned KvCache::Pin(std::span<const llama_token> tokens) {
  Pinned pinned;
  if (store_ == nullptr) return pinned;
  pinned.blocks = store_->Pin(tokens, +1);
  const store::Lookup lookup = store_->Find(tokens);
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

KvCacheStats KvCache::stats() const {
  MutexLock lock(&mu_);
  return stats_;
}

Result<kv::SnapshotShape> ProbeKvShape(engine::Context& context, llama_seq_id scratch) {
  const llama_token token = 0;
  engine::BatchDecoder decoder(&context);
  const engine::SequenceChunk chunk{scratch, 0, {&token, 1}, false};
  KV_RETURN_IF_ERROR(decoder.Decode({&chunk, 1}));
  Result<std::vector<uint8_t>> state = context.ExportSequence(scratch);
  context.ClearSequence(scratch);
  if (!state.ok()) return state.status();
  KV_ASSIGN_OR_RETURN(kv::KvBlock block, kv::ParseSnapshot(*state));
  return block.shape;
}

kv::BlockNamespace BlockNamespaceOf(const engine::Context& context, const kv::SnapshotShape& shape,
                                    uint32_t block_size) {
  kv::BlockNamespace space;
  space.model_fingerprint = context.model().fingerprint();
  space.cache_type = shape.layers.empty() ? 1 : shape.layers[0].k_type;
  // llama.cpp Hadamard-rotates quantized caches unless told not to (llama-kv-cache.cpp).
  const char* disabled = std::getenv("LLAMA_ATTN_ROT_DISABLE");
  const bool quantized = context.params().cache_type == engine::KvCacheType::kQ8_0 ||
                         context.params().cache_type == engine::KvCacheType::kQ4_0;
  space.rotated = quantized && !(disabled != nullptr && std::atoi(disabled) != 0);
  space.v_trans = shape.v_trans;
  space.block_size = block_size;
  return space;
}

}  // namespace kvault::conversation
