// kv/snapshot_codec.h: a KV block at rest. Encodes a KvBlock (snapshot_layout.h) with its
// identity and everything needed to refuse an import that would be silently wrong, and
// decodes it back, checking all of it.
//
// Format (little-endian), see docs/snapshot_format.md:
//
//   u32 magic "KVB1"   u16 version (1)   u8 encoding   u8 flags (bit 0: zstd, bit 1: shuffle)
//   16  block name     16 parent name    16 model fingerprint
//   i32 cache type     u8 rotated        u8 v_trans     u16 block size
//   i32 first_pos      u32 n_tokens      u32 n_layer
//   per layer: i32 k_type, u64 k_row_size, i32 v_type, u64 v_row_size, u32 v_el_size,
//              u32 n_embd_v_gqa
//   n_tokens x i32 token ids
//   u64 raw size (decoded data bytes)    u64 payload size    payload
//   u64 XXH3-64 of every byte before it
//
// Encodings: kF16 stores the cache's own bytes (lossless: identical bytes come back, for
// every cache type); kQ8 and kQ4 quantize f16 caches at rest and decode back to f16
// (quantized cache types are stored as they are). zstd after a byte shuffle is an option of
// each.
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "kvault/base/result.h"
#include "kvault/kv/block_hash.h"
#include "kvault/kv/snapshot_layout.h"

namespace kvault::kv {

enum class BlockEncoding : uint8_t { kF16 = 0, kQ8 = 1, kQ4 = 2 };
Result<BlockEncoding> ParseBlockEncoding(std::string_view name);  // "f16", "q8", "q4"
std::string_view BlockEncodingName(BlockEncoding encoding);

struct CodecOptions {
  BlockEncoding encoding = BlockEncoding::kF16;
  bool zstd = false;
  int zstd_level = 1;
};

// Who a block is and what it may be imported into.
struct BlockMeta {
  BlockName name;
  BlockName parent;
  BlockNamespace space;
  std::vector<llama_token> tokens;  // the block's token ids (n_tokens of them)
  BlockEncoding encoding = BlockEncoding::kF16;
  bool zstd = false;
};

Result<std::vector<uint8_t>> EncodeBlock(const KvBlock& block, const BlockMeta& meta,
                                         const CodecOptions& options);

struct DecodedBlock {
  BlockMeta meta;
  KvBlock block;
};

// Corruption for a bad magic, version, checksum, truncation or inconsistent sizes.
Result<DecodedBlock> DecodeBlock(std::span<const uint8_t> bytes);
// The same into `out`, whose buffers' capacity is reused (a restore decodes block after block
// into one). On error `out` holds garbage.
Status DecodeBlockInto(std::span<const uint8_t> bytes, DecodedBlock* out);
// The header only (no checksum over the payload): for scanning a disk tier at start-up.
Result<BlockMeta> PeekBlockMeta(std::span<const uint8_t> bytes);

// FailedPrecondition unless a block made under `stored` (and of `shape`) can be imported into
// a context whose blocks are made under `expected` (and have `expected_shape`): model
// fingerprint, cache type, rotation, V layout, layer count and row sizes must all agree.
Status CheckCompatible(const BlockMeta& stored, const SnapshotShape& shape,
                       const BlockNamespace& expected, const SnapshotShape& expected_shape);

}  // namespace kvault::kv
