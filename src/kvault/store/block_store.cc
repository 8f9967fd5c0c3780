#include "kvault/store/block_store.h"

#include <algorithm>
#include <chrono>
#include <string>

#include <ggml.h>

#include "kvault/base/log.h"
#include "kvault/base/status_macros.h"
#include "kvault/store/block_store_impl.h"

namespace kvault::store {
namespace {

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// One block of a sequence to store: its place and whether it must be encoded.
struct Planned {
  BlockName name;
  BlockName parent;
  size_t first = 0;
  size_t n = 0;
  BlockBytes bytes;  // set once encoded (new blocks only)
};

// What blocks are actually stored as. The q8/q4 encodings apply to f16 caches only
// (kv/snapshot_codec.h); a quantized compute cache's rows (q8_0, ...) are kept as computed,
// so the stats name that type rather than an encoding that was never applied.
std::string AppliedEncoding(const BlockStoreParams& params) {
  const bool f16_cache = params.space.cache_type == GGML_TYPE_F16;
  const std::string rows =
      f16_cache ? std::string(kv::BlockEncodingName(params.codec.encoding))
                : std::string(ggml_type_name(static_cast<ggml_type>(params.space.cache_type)));
  return rows + (params.codec.zstd ? "+zstd" : "");
}

}  // namespace

Result<std::unique_ptr<BlockStore>> BlockStore::Open(const BlockStoreParams& params) {
  if (params.space.block_size == 0) return InvalidArgumentError("--block-size must be positive");
  if (params.space.cache_type < 0 || params.space.cache_type >= GGML_TYPE_COUNT) {
    return InvalidArgumentError("store: unknown cache type " +
                                std::to_string(params.space.cache_type));
  }
  if (params.space.cache_type != GGML_TYPE_F16 &&
      params.codec.encoding != kv::BlockEncoding::kF16) {
    KV_LOG(kWarning) << "store: --cache-encoding " << kv::BlockEncodingName(params.codec.encoding)
                     << " applies to f16 caches only; blocks of this "
                     << ggml_type_name(static_cast<ggml_type>(params.space.cache_type))
                     << " cache are stored as computed (" << AppliedEncoding(params) << ")";
  }
  auto impl = std::make_unique<Impl>(params);
  KV_ASSIGN_OR_RETURN(impl->policy, kv::NewEvictionPolicy(params.eviction));
  impl->ram = NewRamTier();
  impl->remote = params.remote;
  if (!params.disk_dir.empty()) {
    KV_ASSIGN_OR_RETURN(impl->disk, DiskTier::Open(params.disk_dir));
    impl->Recover();
  }
  impl->StartWriter();
  return std::unique_ptr<BlockStore>(new BlockStore(std::move(impl)));
}

BlockStore::BlockStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

BlockStore::~BlockStore() { impl_->StopWriter(); }

const BlockStoreParams& BlockStore::params() const { return impl_->params; }

Lookup BlockStore::Find(std::span<const llama_token> tokens, const BlockName& root) const {
  Impl& s = *impl_;
  MutexLock lock(&s.mu);
  const kv::PrefixMatch match = s.tree.Match(tokens, root);
  Lookup lookup;
  lookup.n_tokens = match.n_tokens;
  const double ram_bw = s.ReadBandwidth(s.counters.ram, kDefaultRamBandwidth);
  const double disk_bw = s.ReadBandwidth(s.counters.disk, kDefaultDiskBandwidth);
  // Measured over whole GETs, so the remote's rate includes its round trips.
  const double remote_bw = s.ReadBandwidth(s.counters.remote, kDefaultRemoteBandwidth);
  for (const kv::MatchedBlock& matched : match.blocks) {
    const kv::RadixNode* node = s.tree.Find(matched.name);
    lookup.blocks.push_back({matched.name, matched.n_tokens, node->tiers, node->bytes});
    lookup.bytes += node->bytes;
    // For restore-or-recompute: a block with no RAM copy is charged at disk speed, even one
    // still waiting in the write queue; one only in the remote tier at the remote's.
    const double bandwidth = (node->tiers & kv::kTierRam)    ? ram_bw
                             : (node->tiers & kv::kTierDisk) ? disk_bw
                                                             : remote_bw;
    lookup.restore_seconds += node->bytes / bandwidth;
  }
  return lookup;
}

bool BlockStore::has_remote() const { return impl_->remote != nullptr; }

void BlockStore::AwaitRemote(std::chrono::milliseconds max_wait) {
  Impl& s = *impl_;
  if (!s.remote) return;
  const auto deadline = std::chrono::steady_clock::now() + max_wait;
  MutexLock lock(&s.mu);
  while ((!s.remote_queue.empty() || s.remote_writing) &&
         std::chrono::steady_clock::now() < deadline) {
    s.remote_idle.WaitFor(&s.mu, std::chrono::duration_cast<std::chrono::milliseconds>(
                                     deadline - std::chrono::steady_clock::now()) +
                                     std::chrono::milliseconds(1));
  }
}

size_t BlockStore::Discover(std::span<const llama_token> tokens, const BlockName& root,
                            const BlockName& tail_hint) {
  Impl& s = *impl_;
  if (!s.remote) return 0;
  // At most this many blocks are asked for at once (a 2M-token conversation at 256 per
  // block); the rest is found by the next request's discovery.
  constexpr size_t kMaxProbe = 8192;
  const size_t b = s.params.space.block_size;
  const size_t n_full = tokens.size() / b;
  // Names follow from the tokens alone (content addressing): no lock needed to compute them.
  std::vector<BlockName> chain(n_full);
  BlockName parent = root;
  for (size_t i = 0; i < n_full; ++i) {
    chain[i] = kv::ComputeBlockName(parent, s.params.space, tokens.subspan(i * b, b));
    parent = chain[i];
  }
  size_t known = 0;
  {
    MutexLock lock(&s.mu);
    // The conversation's latest tail is here: this replica wrote its latest turn, so no
    // other replica holds more of it (one writer per conversation), and asking costs a round
    // trip for nothing.
    if (!(tail_hint == BlockName{}) && s.tree.Find(tail_hint) != nullptr) return 0;
    while (known < n_full && s.tree.Find(chain[known]) != nullptr) ++known;
  }
  const size_t end = std::min(n_full, known + kMaxProbe);
  std::vector<uint64_t> sizes;
  if (end > known) {
    Result<std::vector<uint64_t>> probed =
        s.remote->Sizes(std::span<const BlockName>(chain).subspan(known, end - known));
    if (!probed.ok()) return 0;  // down: the local tiers serve (the client logged it)
    sizes = std::move(probed).value();
  }
  size_t found = 0;
  while (found < sizes.size() && sizes[found] > 0) ++found;
  // The conversation's partial tail hangs under the last full block found. Its tokens are
  // read from its header rather than guessed: the prompt may agree with only the first of
  // them (a reply that re-tokenizes differently), and the tree's token-exact match then still
  // reuses those.
  const size_t tail_at = known + found;
  std::vector<llama_token> tail_tokens;
  uint64_t tail_bytes = 0;
  const BlockName tail_parent = tail_at == 0 ? root : chain[tail_at - 1];
  if (!(tail_hint == BlockName{}) && tail_at * b < tokens.size()) {
    constexpr size_t kHeaderBytes = 256 << 10;  // as the disk tier's recovery reads
    Result<RemoteTier::Head> head = s.remote->ReadHead(tail_hint, kHeaderBytes);
    Result<kv::BlockMeta> meta = head.ok() ? kv::PeekBlockMeta(head->prefix) : head.status();
    if (meta.ok() && meta->name == tail_hint && meta->parent == tail_parent &&
        !meta->tokens.empty() && meta->tokens.size() < b &&
        meta->tokens.front() == tokens[tail_at * b]) {
      tail_tokens = meta->tokens;
      tail_bytes = head->size;
    }
  }
  MutexLock lock(&s.mu);
  size_t added = 0;
  for (size_t i = 0; i < found; ++i) {
    const size_t at = known + i;
    const BlockName& block_parent = at == 0 ? root : chain[at - 1];
    // Fails only if the parent left the tree meanwhile: the rest cannot hang anywhere.
    if (!s.tree
             .Insert(chain[at], block_parent, tokens.subspan(at * b, b), kv::kTierRemote, sizes[i])
             .ok()) {
      return added;
    }
    added += b;
  }
  if (!tail_tokens.empty() &&
      s.tree.Insert(tail_hint, tail_parent, tail_tokens, kv::kTierRemote, tail_bytes).ok()) {
    const size_t rest = tokens.size() - tail_at * b;
    size_t agree = 0;
    while (agree < tail_tokens.size() && agree < rest &&
           tail_tokens[agree] == tokens[tail_at * b + agree]) {
      ++agree;
    }
    added += agree;
  }
  return added;
}

Fetched BlockStore::Fetch(const Lookup& lookup) {
  Fetched fetched;
  const FetchProgress progress =
      FetchEach(lookup, [&](const kv::KvBlock& block, uint32_t n_tokens) -> Status {
        // Only the last block of a match can be used in part (a prompt diverging mid-block):
        // slice it so the prefix ends where the match does.
        if (n_tokens == block.n_tokens) {
          fetched.blocks.push_back(block);
        } else {
          KV_ASSIGN_OR_RETURN(kv::KvBlock sliced, kv::SliceBlock(block, block.first_pos, n_tokens));
          fetched.blocks.push_back(std::move(sliced));
        }
        return Status::Ok();
      });
  fetched.n_tokens = progress.n_tokens;
  fetched.error = progress.error;
  return fetched;
}

FetchProgress BlockStore::FetchEach(const Lookup& lookup, const BlockVisitor& visit) {
  Impl& s = *impl_;
  FetchProgress fetched;
  kv::DecodedBlock decoded;  // one buffer for every block of the lookup, from the pool
  decoded.block.data = s.decode_buffers.Take();
  struct GiveBack {
    Impl& s;
    kv::DecodedBlock& decoded;
    ~GiveBack() { s.decode_buffers.Give(std::move(decoded.block.data)); }
  } give_back{s, decoded};
  llama_pos chain_first_pos = 0;
  for (const LocatedBlock& located : lookup.blocks) {
    const auto start = std::chrono::steady_clock::now();
    BlockBytes bytes;
    bool from_disk = false;
    bool from_remote = false;
    // The lock covers only the in-memory lookups; the disk read and the decode below run
    // outside it, so other requests' fetches and stores are not held up.
    {
      MutexLock lock(&s.mu);
      if (Result<BlockBytes> in_ram = s.ram->Get(located.name); in_ram.ok()) {
        bytes = *in_ram;
      } else if (auto it = s.pending.find(located.name); it != s.pending.end()) {
        // Demoted but not yet written: the write queue holds the bytes. It counts as a disk
        // hit, so the block is promoted back to RAM below.
        bytes = it->second;
        from_disk = true;
      }
      if (!bytes) ++s.counters.ram.misses;
    }
    if (!bytes && s.disk) {
      Result<BlockBytes> on_disk = s.disk->Get(located.name);
      if (on_disk.ok()) {
        bytes = *on_disk;
        from_disk = true;
      } else if (on_disk.status().code() != StatusCode::kNotFound) {
        fetched.error = on_disk.status();
      }
    }
    if (!bytes && s.remote && (located.tiers & kv::kTierRemote) != 0) {
      Result<BlockBytes> remote = s.remote->Get(located.name);
      MutexLock lock(&s.mu);
      if (remote.ok()) {
        bytes = *remote;
        from_remote = true;
        fetched.error = Status::Ok();
      } else {
        ++s.counters.remote.misses;
        fetched.error = remote.status();
        // Gone from Redis (evicted, expired, flushed): the tree stops promising it.
        if (remote.status().code() == StatusCode::kNotFound &&
            s.tree.Find(located.name) != nullptr) {
          s.ForgetRemoved(s.tree.RemoveTiers(located.name, kv::kTierRemote));
        }
      }
    }
    // Gone (evicted since Find, which held the lock only while it looked) or unreadable: the
    // fetch ends here, since later blocks are useless without this one; the caller recomputes.
    if (!bytes) {
      MutexLock lock(&s.mu);
      if (s.disk) ++s.counters.disk.misses;
      if (fetched.error.ok())
        fetched.error = NotFoundError("block " + located.name.ToHex() + " is gone");
      return fetched;
    }
    // A block that decodes cleanly can still be the wrong one (a renamed file, a tree/file
    // mismatch, another model's shape): its KV could be imported without error, wrong.
    Status checked = kv::DecodeBlockInto(*bytes, &decoded);
    if (checked.ok() && !(decoded.meta.name == located.name)) {
      checked = CorruptionError("block file " + located.name.ToHex() + " holds another block");
    }
    // A detached chain (history KV) starts where its KV was computed; blocks then follow on.
    if (lookup.detached && fetched.n_tokens == 0) chain_first_pos = decoded.block.first_pos;
    if (checked.ok() &&
        decoded.block.first_pos != chain_first_pos + static_cast<llama_pos>(fetched.n_tokens)) {
      checked = CorruptionError("block " + located.name.ToHex() + " starts at the wrong position");
    }
    if (checked.ok() && located.n_tokens > decoded.block.n_tokens) {
      checked = CorruptionError("block " + located.name.ToHex() + " is shorter than the tree says");
    }
    if (checked.ok() && !s.params.shape.layers.empty()) {
      checked =
          kv::CheckCompatible(decoded.meta, decoded.block.shape, s.params.space, s.params.shape);
    }
    const double seconds = SecondsSince(start);
    {
      MutexLock lock(&s.mu);
      if (!checked.ok()) {
        if (checked.code() == StatusCode::kCorruption) {
          ++s.counters.corrupt_blocks;
        } else {
          ++s.counters.incompatible_blocks;
        }
        KV_LOG(kWarning) << "store: dropping block " << located.name.ToHex() << ": "
                         << checked.message();
        // Out of the tree (with its subtree, now unreachable) and off the disk, so the next
        // request recomputes instead of failing on the same block again.
        s.ForgetRemoved(s.tree.Remove(located.name));
        if (s.disk) s.disk->Erase(located.name).IgnoreError();
        // Every replica would fetch a bad remote value again: it goes too.
        if (from_remote) s.remote->Erase(located.name).IgnoreError();
        fetched.error = checked;
        return fetched;
      }
      TierStats& tier = from_remote ? s.counters.remote
                        : from_disk ? s.counters.disk
                                    : s.counters.ram;
      ++tier.hits;
      tier.read_bytes += static_cast<int64_t>(bytes->size());
      tier.read_seconds += seconds;
      s.tree.Touch(located.name, s.Now());
      // The block may have left the tree while the lock was released: promoting it then would
      // put bytes in RAM that no node accounts for. EvictRam restores the budget it may exceed.
      if ((from_disk || from_remote) && s.tree.Find(located.name) != nullptr) {  // promotion
        s.ram->Put(located.name, bytes).IgnoreError();
        s.tree.AddTiers(located.name, kv::kTierRam);
        // A remote block is kept on this replica's disk too, so its restart finds it.
        if (from_remote && s.DiskWritable() &&
            (s.tree.Find(located.name)->tiers & kv::kTierDisk) == 0) {
          s.EnqueueWrite(located.name, bytes);
          s.tree.AddTiers(located.name, kv::kTierDisk);
        }
        s.EvictRam();
      }
    }
    // The visitor copies into the import buffer outside the lock; `decoded` is reused for the
    // next block, hence the block is valid only during the call.
    if (Status visited = visit(decoded.block, located.n_tokens); !visited.ok()) {
      fetched.error = visited;
      return fetched;
    }
    fetched.n_tokens += located.n_tokens;
  }
  return fetched;
}

Result<StoreResult> BlockStore::Store(std::span<const llama_token> tokens, const kv::KvBlock& kv,
                                      const BlockName& previous_tail, bool persist_tail,
                                      const BlockName& root) {
  if (kv.first_pos != 0 || kv.n_tokens != tokens.size()) {
    return InvalidArgumentError("store: the KV covers " + std::to_string(kv.n_tokens) +
                                " positions from " + std::to_string(kv.first_pos) + ", the " +
                                "sequence has " + std::to_string(tokens.size()) + " tokens");
  }
  return StoreChain(tokens, kv, previous_tail, persist_tail, root, impl_->params.codec);
}

Result<StoreResult> BlockStore::StoreDetached(std::span<const llama_token> tokens,
                                              const kv::KvBlock& kv, const BlockName& root,
                                              const kv::CodecOptions& codec) {
  if (kv.n_tokens != tokens.size() || tokens.empty()) {
    return InvalidArgumentError("store: the KV covers " + std::to_string(kv.n_tokens) +
                                " positions, the span has " + std::to_string(tokens.size()) +
                                " tokens");
  }
  return StoreChain(tokens, kv, {}, /*persist_tail=*/true, root, codec);
}

bool BlockStore::Has(std::span<const llama_token> tokens, const BlockName& root) const {
  Impl& s = *impl_;
  MutexLock lock(&s.mu);
  return s.tree.Match(tokens, root).n_tokens == tokens.size();
}

Result<StoreResult> BlockStore::StoreChain(std::span<const llama_token> tokens,
                                           const kv::KvBlock& kv, const BlockName& previous_tail,
                                           bool persist_tail, const BlockName& root,
                                           const kv::CodecOptions& codec) {
  Impl& s = *impl_;
  // Names depend only on the tokens (content addressing), so the plan needs no lock; only
  // the tree lookup that says which blocks are new does.
  const size_t b = s.params.space.block_size;
  std::vector<Planned> plan;
  BlockName parent = root;
  for (size_t first = 0; first < tokens.size(); first += b) {
    const size_t n = std::min(b, tokens.size() - first);
    const BlockName name = kv::ComputeBlockName(parent, s.params.space, tokens.subspan(first, n));
    plan.push_back({name, parent, first, n, nullptr});
    parent = name;
  }
  StoreResult result;
  {
    MutexLock lock(&s.mu);
    for (Planned& block : plan) {
      if (s.tree.Find(block.name) != nullptr) {
        block.bytes = nullptr;
        ++result.n_known_blocks;
      } else {
        block.bytes = std::make_shared<std::vector<uint8_t>>();  // marks "to encode"
      }
    }
  }
  // Encoding (quantization, zstd) is the slow part and runs unlocked. A failure returns
  // here, before anything is inserted: a failed Store leaves the store as it was.
  int64_t raw_bytes = 0;
  for (Planned& block : plan) {
    if (!block.bytes) continue;
    KV_ASSIGN_OR_RETURN(kv::KvBlock slice,
                        kv::SliceBlock(kv, kv.first_pos + static_cast<llama_pos>(block.first),
                                       static_cast<uint32_t>(block.n)));
    kv::BlockMeta meta;
    meta.name = block.name;
    meta.parent = block.parent;
    meta.space = s.params.space;
    meta.tokens.assign(tokens.begin() + block.first, tokens.begin() + block.first + block.n);
    KV_ASSIGN_OR_RETURN(std::vector<uint8_t> encoded, kv::EncodeBlock(slice, meta, codec));
    raw_bytes += static_cast<int64_t>(slice.data.size());
    block.bytes = std::make_shared<const std::vector<uint8_t>>(std::move(encoded));
  }
  // Another thread may have stored or evicted these blocks while we encoded, so each is
  // looked up again: one stored meanwhile only records a use.
  MutexLock lock(&s.mu);
  const double now = s.Now();
  for (const Planned& block : plan) {
    const std::span<const llama_token> block_tokens = tokens.subspan(block.first, block.n);
    if (block.bytes && s.tree.Find(block.name) == nullptr) {
      const bool tail = block.n < b;
      const bool to_disk = s.DiskWritable() && (persist_tail || !tail);
      const uint8_t tiers = kv::kTierRam | (to_disk ? kv::kTierDisk : 0);
      // Fails only if the parent was evicted meanwhile: the rest cannot hang anywhere.
      if (!s.tree.Insert(block.name, block.parent, block_tokens, tiers, block.bytes->size()).ok()) {
        break;
      }
      s.ram->Put(block.name, block.bytes).IgnoreError();
      // Counted as on disk from now on, served from `pending` until written. A tail waits
      // before its write: the next turn usually replaces it, and then it is never written.
      if (to_disk) {
        s.EnqueueWrite(block.name, block.bytes, tail ? s.params.tail_write_delay_s : 0);
      }
      // At once, tails included: another replica may resume this conversation any moment.
      if (persist_tail || !tail) s.EnqueueRemote(block.name, block.bytes);
      ++result.n_new_blocks;
      ++s.counters.stored_blocks;
      s.counters.stored_bytes += static_cast<int64_t>(block.bytes->size());
    } else if (const kv::RadixNode* known = s.tree.Find(block.name);
               known != nullptr && s.remote && (known->tiers & kv::kTierRemote) == 0) {
      // Known here but not (or no longer: Redis restarted empty) in the remote tier: written
      // again as it is used.
      if (Result<BlockBytes> in_ram = s.ram->Get(block.name); in_ram.ok()) {
        s.EnqueueRemote(block.name, *in_ram);
      }
    } else if (s.tree.Find(block.name) == nullptr) {
      // Known when planned but evicted since: with no bytes to re-add it, and the blocks
      // after it having nowhere to hang, the cached prefix ends here.
      break;
    }
    s.tree.Touch(block.name, now);
    result.n_tokens = block.first + block.n;
    result.tail = block.n < b ? block.name : BlockName{};
    result.last = block.name;
  }
  s.counters.stored_raw_bytes += raw_bytes;
  // The conversation's old tail is superseded by these blocks: drop it now rather than leave
  // it to eviction. Only an unpinned partial node: it is a leaf, so nothing hangs under it,
  // and a pinned one still backs a session.
  if (!(previous_tail == BlockName{}) && !(previous_tail == result.tail)) {
    const kv::RadixNode* old = s.tree.Find(previous_tail);
    if (old != nullptr && old->partial(static_cast<uint32_t>(b)) && old->pins == 0) {
      s.ForgetRemoved(s.tree.Remove(previous_tail));
    }
  }
  // Evicted once, after the whole sequence is in and touched: evicting per block could drop
  // a block just inserted (a RAM leaf) before its child is hung under it.
  s.EvictRam();
  return result;
}

std::vector<BlockName> BlockStore::Pin(std::span<const llama_token> tokens, int delta,
                                       const BlockName& root) {
  Impl& s = *impl_;
  MutexLock lock(&s.mu);
  std::vector<BlockName> names;
  for (const kv::MatchedBlock& block : s.tree.Match(tokens, root).blocks) {
    s.tree.Pin(block.name, delta);
    names.push_back(block.name);
  }
  return names;
}

void BlockStore::PinNames(std::span<const BlockName> names, int delta) {
  MutexLock lock(&impl_->mu);
  for (const BlockName& name : names) impl_->tree.Pin(name, delta);
}

void BlockStore::Drop(const BlockName& name) {
  MutexLock lock(&impl_->mu);
  const kv::RadixNode* node = impl_->tree.Find(name);
  if (node != nullptr && node->pins == 0) impl_->ForgetRemoved(impl_->tree.Remove(name));
}

Removed BlockStore::Clear(std::span<const BlockName> partitions) {
  Impl& s = *impl_;
  MutexLock lock(&s.mu);
  const Removed removed =
      s.RemoveLeavesWhile([&](const kv::RadixNode& node, const kv::RadixTree& tree) {
        return partitions.empty() || std::find(partitions.begin(), partitions.end(),
                                               tree.PartitionOf(node.name)) != partitions.end();
      });
  s.counters.cleared_blocks += removed.blocks;
  return removed;
}

Removed BlockStore::ClearBranch(const BlockName& last) {
  Impl& s = *impl_;
  MutexLock lock(&s.mu);
  Removed removed;
  BlockName name = last;
  // Up from the end of the branch: a block with a child left is a prefix of another prompt,
  // and so is everything above it.
  for (const kv::RadixNode* node = s.tree.Find(name); node != nullptr && node->children.empty();
       node = s.tree.Find(name)) {
    if (node->pins > 0) {
      ++removed.pinned;
      break;
    }
    ++removed.blocks;
    removed.bytes += static_cast<int64_t>(node->bytes);
    const BlockName parent = node->parent;
    s.ForgetRemoved(s.tree.Remove(name));
    name = parent;
  }
  s.counters.cleared_blocks += removed.blocks;
  return removed;
}

Removed BlockStore::Expire() {
  Impl& s = *impl_;
  MutexLock lock(&s.mu);
  return s.ExpireIdle();
}

std::vector<BlockBytes> BlockStore::ReadEncoded(std::span<const BlockName> names) {
  Impl& s = *impl_;
  std::vector<BlockBytes> found;
  for (const BlockName& name : names) {
    BlockBytes bytes;
    {
      MutexLock lock(&s.mu);
      if (Result<BlockBytes> in_ram = s.ram->Get(name); in_ram.ok()) {
        bytes = *in_ram;
      } else if (auto it = s.pending.find(name); it != s.pending.end()) {
        bytes = it->second;
      }
    }
    // The disk read runs unlocked, as in FetchEach.
    if (!bytes && s.disk) bytes = s.disk->Get(name).value_or(nullptr);
    if (!bytes) break;
    found.push_back(std::move(bytes));
  }
  return found;
}

// Checks the chain InsertEncoded is given before anything of it is added, and returns each
// block's header. Inputs come from a file someone else wrote, so everything the tree and a
// later restore rely on is verified here: a block that decodes (checksum) but is named after
// other tokens, or sits at other positions, would be restored into the wrong prompt.
static Result<std::vector<kv::BlockMeta>> CheckEncodedChain(std::span<const BlockBytes> blocks,
                                                            const BlockName& root,
                                                            const BlockStoreParams& params) {
  std::vector<kv::BlockMeta> metas;
  BlockName parent = root;
  size_t n_tokens = 0;
  for (size_t i = 0; i < blocks.size(); ++i) {
    KV_ASSIGN_OR_RETURN(kv::DecodedBlock decoded, kv::DecodeBlock(*blocks[i]));
    const kv::BlockMeta& meta = decoded.meta;
    const std::string which = "block " + std::to_string(i) + " (" + meta.name.ToHex() + ")";
    if (!(meta.space == params.space)) {
      return FailedPreconditionError(which + " was made with another model, cache type or " +
                                     "block size");
    }
    if (!params.shape.layers.empty()) {
      KV_RETURN_IF_ERROR(
          kv::CheckCompatible(meta, decoded.block.shape, params.space, params.shape));
    }
    const bool last = i + 1 == blocks.size();
    if (!(meta.parent == parent) ||
        !(meta.name == kv::ComputeBlockName(parent, params.space, meta.tokens))) {
      return CorruptionError(which + " does not follow the block before it");
    }
    if (decoded.block.first_pos != static_cast<llama_pos>(n_tokens) || meta.tokens.empty() ||
        (!last && meta.tokens.size() != params.space.block_size)) {
      return CorruptionError(which + " is not where the chain needs it");
    }
    n_tokens += meta.tokens.size();
    parent = meta.name;
    metas.push_back(std::move(decoded.meta));
  }
  return metas;
}

Result<size_t> BlockStore::InsertEncoded(std::span<const BlockBytes> blocks,
                                         const BlockName& root) {
  Impl& s = *impl_;
  // Validate, then commit: decoding runs unlocked and before the first insert.
  KV_ASSIGN_OR_RETURN(std::vector<kv::BlockMeta> metas, CheckEncodedChain(blocks, root, s.params));
  MutexLock lock(&s.mu);
  const double now = s.Now();
  size_t n_tokens = 0;
  for (size_t i = 0; i < metas.size(); ++i) {
    const kv::BlockMeta& meta = metas[i];
    if (s.tree.Find(meta.name) == nullptr) {
      // The lock is held from the first insert to the last, so each parent (the root or the
      // block just added) is in the tree: Insert cannot fail on a missing parent.
      const uint8_t tiers = kv::kTierRam | (s.DiskWritable() ? kv::kTierDisk : 0);
      KV_RETURN_IF_ERROR(
          s.tree.Insert(meta.name, meta.parent, meta.tokens, tiers, blocks[i]->size()));
      s.ram->Put(meta.name, blocks[i]).IgnoreError();
      // Tails too, at once: an imported session's blocks are meant to outlive a restart.
      if (tiers & kv::kTierDisk) s.EnqueueWrite(meta.name, blocks[i]);
      ++s.counters.stored_blocks;
      s.counters.stored_bytes += static_cast<int64_t>(blocks[i]->size());
    }
    s.tree.Touch(meta.name, now);
    n_tokens += meta.tokens.size();
  }
  // Once, after the whole chain is in (as Store does).
  s.EvictRam();
  return n_tokens;
}

void BlockStore::RecordPrefill(int64_t n_tokens, double seconds) {
  if (n_tokens <= 0 || seconds <= 0) return;
  Impl& s = *impl_;
  MutexLock lock(&s.mu);
  // A decayed average: recent prefills (the current load and depth) count most.
  s.prefill_tokens = s.prefill_tokens * 7 / 8 + n_tokens;
  s.prefill_seconds = s.prefill_seconds * 7 / 8 + seconds;
  s.prefill_seconds_per_token = s.prefill_seconds / static_cast<double>(s.prefill_tokens);
}

double BlockStore::prefill_seconds_per_token() const {
  MutexLock lock(&impl_->mu);
  return impl_->prefill_seconds_per_token;
}

void BlockStore::Flush() {
  Impl& s = *impl_;
  MutexLock lock(&s.mu);
  // While `flushing` > 0 the writer treats delayed tail writes as due, so the wait ends
  // without sitting out tail_write_delay_s.
  ++s.flushing;
  s.work.Signal();
  while (!s.queue.empty() || !s.delayed.empty() || s.writing) s.idle.Wait(&s.mu);
  --s.flushing;
  // And the remote tier's queue (tried, not necessarily written: the remote may be down).
  while (!s.remote_queue.empty() || s.remote_writing) s.remote_idle.Wait(&s.mu);
}

BlockStoreStats BlockStore::stats() const {
  const Impl& s = *impl_;
  MutexLock lock(&s.mu);
  BlockStoreStats stats = s.counters;
  stats.has_disk = s.disk != nullptr;
  stats.tree_nodes = static_cast<int64_t>(s.tree.size());
  stats.pending_writes =
      static_cast<int64_t>(s.queue.size() + s.delayed.size()) + (s.writing ? 1 : 0);
  stats.ram.blocks = static_cast<int64_t>(s.ram->n_blocks());
  stats.ram.bytes = static_cast<int64_t>(s.ram->used_bytes());
  stats.ram.budget_bytes = static_cast<int64_t>(s.params.ram_budget_bytes);
  stats.ram.read_bandwidth = s.ReadBandwidth(s.counters.ram, kDefaultRamBandwidth);
  if (s.disk) {
    stats.disk.blocks = static_cast<int64_t>(s.disk->n_blocks());
    stats.disk.bytes = static_cast<int64_t>(s.disk->used_bytes());
    stats.disk.budget_bytes = static_cast<int64_t>(s.params.disk_budget_bytes);
    stats.disk.read_bandwidth = s.ReadBandwidth(s.counters.disk, kDefaultDiskBandwidth);
    stats.disk.write_bandwidth =
        s.counters.disk.write_seconds > 0
            ? static_cast<double>(s.counters.disk.write_bytes) / s.counters.disk.write_seconds
            : 0;
  }
  if (s.remote) {
    stats.has_remote = true;
    stats.remote.blocks = static_cast<int64_t>(s.remote->n_blocks());
    stats.remote.bytes = static_cast<int64_t>(s.remote->used_bytes());
    stats.remote.read_bandwidth = s.ReadBandwidth(s.counters.remote, kDefaultRemoteBandwidth);
    stats.remote.write_bandwidth =
        s.counters.remote.write_seconds > 0
            ? static_cast<double>(s.counters.remote.write_bytes) / s.counters.remote.write_seconds
            : 0;
  }
  stats.eviction = std::string(s.policy->name());
  stats.encoding = AppliedEncoding(s.params);
  return stats;
}

size_t BlockStore::CountNodes(std::span<const BlockName> partitions) const {
  const Impl& s = *impl_;
  MutexLock lock(&s.mu);
  if (partitions.empty()) return s.tree.size();
  std::vector<BlockName> names;
  s.tree.ForEach([&](const kv::RadixNode& node) { names.push_back(node.name); });
  size_t n = 0;
  for (const BlockName& name : names) {
    const BlockName root = s.tree.PartitionOf(name);
    n += std::find(partitions.begin(), partitions.end(), root) != partitions.end() ? 1 : 0;
  }
  return n;
}

std::vector<NodeView> BlockStore::TopNodes(size_t limit,
                                           std::span<const BlockName> partitions) const {
  const Impl& s = *impl_;
  MutexLock lock(&s.mu);
  const double now = s.Now();
  std::vector<NodeView> nodes;
  s.tree.ForEach([&](const kv::RadixNode& node) {
    nodes.push_back({node.name, node.parent, node.depth, node.tiers, node.hits, node.bytes,
                     node.pins, now - node.last_use_s, node.tokens});
  });
  if (!partitions.empty()) {
    std::erase_if(nodes, [&](const NodeView& node) KV_REQUIRES(s.mu) {
      return std::find(partitions.begin(), partitions.end(), s.tree.PartitionOf(node.name)) ==
             partitions.end();
    });
  }
  const size_t n = std::min(limit, nodes.size());
  std::partial_sort(nodes.begin(), nodes.begin() + static_cast<std::ptrdiff_t>(n), nodes.end(),
                    [](const NodeView& a, const NodeView& b) {
                      return a.hits != b.hits ? a.hits > b.hits : a.depth < b.depth;
                    });
  nodes.resize(n);
  return nodes;
}

}  // namespace kvault::store
