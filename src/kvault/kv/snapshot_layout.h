// kv/snapshot_layout.h: the byte layout of one sequence's KV state as llama.cpp exports it
// (llama_state_seq_get_data), parsed into a typed view, cut into blocks of positions, and
// joined back into bytes llama.cpp imports. llama.cpp documents none of this and checks
// little of it on import, so kvault pins it here; snapshot_layout_test.cc fails loudly if a
// llama.cpp update changes it.
//
// Layout (llama.cpp de3ff81, models without per-cell extensions such as M-RoPE):
//
//   size        field
//   4           magic 0xaf143cd8                       (llama-context.cpp io_magic)
//   4           source seq_id (i32)
//   4           n_stream (u32): 1 for a unified KV cache, n_seq_max otherwise
//   then for each stream: cell_count C (u32), and when C > 0 the rest below; a sequence
//   lives in one stream, so all other streams have C = 0
//   C * 12      per cell: pos (i32), n_seq_id (u32) = 1, seq_id (i32)
//   4           v_trans (u32): 1 when V is stored transposed (flash attention off)
//   4           n_layer (u32)
//   per layer   k_type (i32), k_row_size (u64), C * k_row_size bytes (cell-major rows)
//   per layer   v_trans = 0: v_type (i32), v_row_size (u64), C * v_row_size bytes
//               v_trans = 1: v_type (i32), v_el_size (u32), n_embd_v_gqa (u32),
//                            n_embd_v_gqa * C * v_el_size bytes (element-major: for each
//                            element j, that element of every cell)
//
// Cells appear in cell-index order, which need not be position order; a block holds the
// cells of positions [first_pos, first_pos + n) sorted by position.
//
// Thread-safety: pure functions on values.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <llama.h>

#include "kvault/base/result.h"

namespace kvault::kv {

inline constexpr uint32_t kLlamaStateMagic = 0xaf143cd8;
inline constexpr uint32_t kMaxStreams = 4096;

// Everything about a snapshot's rows except the rows: two snapshots with equal shapes can be
// sliced and joined together.
struct LayerShape {
  int32_t k_type = 0;
  uint64_t k_row_size = 0;  // bytes of one cell's K
  int32_t v_type = 0;
  uint64_t v_row_size = 0;    // bytes of one cell's V (v_trans: v_el_size * n_embd_v_gqa)
  uint32_t v_el_size = 0;     // v_trans only
  uint32_t n_embd_v_gqa = 0;  // v_trans only
  friend bool operator==(const LayerShape&, const LayerShape&) = default;
};

struct SnapshotShape {
  bool v_trans = false;
  std::vector<LayerShape> layers;
  // Bytes of K and V for one cell across all layers.
  uint64_t BytesPerCell() const;
  std::string Describe() const;  // "24 layers, K f16 x 256 B, V f16 x 256 B, v_trans 0"
  friend bool operator==(const SnapshotShape&, const SnapshotShape&) = default;
};

// A contiguous run of positions of one sequence: its cells' K and V rows, owned.
// Data layout: per layer K rows (n_tokens * k_row_size), then per layer V: cell-major rows,
// or for v_trans element-major (n_embd_v_gqa runs of n_tokens * v_el_size).
struct KvBlock {
  llama_pos first_pos = 0;
  uint32_t n_tokens = 0;
  SnapshotShape shape;
  std::vector<uint8_t> data;

  uint64_t ExpectedDataSize() const { return shape.BytesPerCell() * n_tokens; }
};

// Parses a llama.cpp sequence export into one block of all its positions, which must be
// contiguous (a conversation's sequence always is). Corruption for anything malformed.
Result<KvBlock> ParseSnapshot(std::span<const uint8_t> bytes);

// The positions [first_pos, first_pos + n_tokens) of `block`. InvalidArgument if out of range.
Result<KvBlock> SliceBlock(const KvBlock& block, llama_pos first_pos, uint32_t n_tokens);

// Concatenates blocks of consecutive positions (sorted, no gaps, equal shapes) into one.
Result<KvBlock> JoinBlocks(std::span<const KvBlock> blocks);

// The bytes llama_state_seq_set_data accepts for `block` (cells in position order, tagged
// with `seq_id`), for a cache of `n_stream` streams (Context::n_stream()). REQUIRES: the
// block's data has the size its shape needs (ParseSnapshot and DecodeBlock make sure of it).
std::vector<uint8_t> SerializeSnapshot(const KvBlock& block, llama_seq_id seq_id,
                                       uint32_t n_stream = 1);

// Assembles what SerializeSnapshot makes for positions [first_pos, first_pos + n_tokens) from
// blocks handed over in position order, each block's rows copied straight to their place: a
// restore copies every byte once, with no joined block in between.
class SnapshotWriter {
 public:
  // `buffer`'s capacity is reused: a buffer kept from an earlier restore costs no fresh pages
  // (a page fault per 4 KiB, ~70 ms for the 26 MB of 2,000 q05 tokens on a 2-core VM).
  SnapshotWriter(const SnapshotShape& shape, llama_pos first_pos, uint32_t n_tokens,
                 llama_seq_id seq_id, uint32_t n_stream, std::vector<uint8_t> buffer = {});
  ~SnapshotWriter();
  SnapshotWriter(const SnapshotWriter&) = delete;
  SnapshotWriter& operator=(const SnapshotWriter&) = delete;

  // Appends the first `n_tokens` positions of `block`, which must start where the snapshot
  // continues and have its shape. InvalidArgument otherwise (nothing is written).
  Status Append(const KvBlock& block, uint32_t n_tokens);
  Status Append(const KvBlock& block) { return Append(block, block.n_tokens); }

  uint32_t n_written() const { return n_written_; }

  // The bytes for the positions appended so far; if fewer than planned, laid out for just
  // those (empty if none).
  std::vector<uint8_t> Finish() &&;

 private:
  struct Layout;
  const SnapshotShape shape_;
  const llama_pos first_pos_;
  const uint32_t n_planned_;
  const llama_seq_id seq_id_;
  const uint32_t n_stream_;
  uint32_t n_written_ = 0;
  std::vector<uint8_t> bytes_;
  std::unique_ptr<Layout> layout_;
};

}  // namespace kvault::kv
