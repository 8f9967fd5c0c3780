// store/tier.h: a place where encoded KV blocks (kv/snapshot_codec.h) are kept, by block
// name. Tiers are dumb byte stores: which blocks to keep, promote or evict is decided by the
// BlockStore (store/block_store.h), which owns the radix tree, the budgets and the policy.
//
//   RAM   a hash map of shared, immutable byte buffers
//   disk  one file per block under <dir>/<first two hex digits>/<name>.kvb, written crash-safe
//         (temp file, fsync, rename, directory fsync; base/file.h). A block's checksum is
//         inside its bytes (the codec), so a torn or flipped file is caught when decoded.
//   (remote, e.g. Redis/Valkey: later, behind this interface)
//
// Thread-safety: every method of every tier may be called from any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "kvault/base/result.h"
#include "kvault/kv/block_hash.h"

namespace kvault::store {

using kv::BlockName;
// Encoded blocks are immutable once made, so tiers and readers share them.
using BlockBytes = std::shared_ptr<const std::vector<uint8_t>>;

class Tier {
 public:
  virtual ~Tier() = default;
  virtual std::string_view name() const = 0;  // "ram", "disk"

  // Stores (or replaces) a block. ResourceExhausted when the medium is full.
  virtual Status Put(const BlockName& name, const BlockBytes& bytes) = 0;
  // NotFound if absent; IOError if unreadable.
  virtual Result<BlockBytes> Get(const BlockName& name) = 0;
  // OK if absent.
  virtual Status Erase(const BlockName& name) = 0;
  virtual bool Contains(const BlockName& name) const = 0;

  virtual uint64_t used_bytes() const = 0;
  virtual uint64_t n_blocks() const = 0;
};

std::unique_ptr<Tier> NewRamTier();

// One block file found on disk at start-up.
struct DiskBlockFile {
  BlockName name;
  uint64_t size = 0;
};

class DiskTier : public Tier {
 public:
  // Creates `dir` if needed and indexes the block files already there (names and sizes; the
  // contents are read by the BlockStore's recovery). Leftover temporary files of a crashed
  // write are deleted. IOError if the folder cannot be created or listed.
  static Result<std::unique_ptr<DiskTier>> Open(const std::string& dir);

  // The block files found by Open, in no particular order.
  virtual std::vector<DiskBlockFile> Recovered() const = 0;
  // The first `max_bytes` of a block file (its header, for recovery).
  virtual Result<std::vector<uint8_t>> ReadPrefix(const BlockName& name, size_t max_bytes) = 0;
  virtual std::string PathOf(const BlockName& name) const = 0;
  // Bytes free on the file system that holds the tier.
  virtual Result<uint64_t> FreeBytes() const = 0;
};

}  // namespace kvault::store
