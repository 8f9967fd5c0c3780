#include "kvault/kv/snapshot_layout.h"

#include <algorithm>
#include <cstring>
#include <numeric>

#include "kvault/base/check.h"
#include "kvault/base/coding.h"
#include "kvault/base/status_macros.h"

namespace kvault::kv {
namespace {

constexpr uint32_t kMaxLayers = 1024;
constexpr uint64_t kMaxRowBytes = 1ull << 24;

const char* TypeName(int32_t type) {
  switch (type) {
    case 0: return "f32";
    case 1: return "f16";
    case 2: return "q4_0";
    case 8: return "q8_0";
    case 30: return "bf16";
    default: return "type?";
  }
}

// Where each layer's K and V rows of `cells` cells start in a buffer: a KvBlock's data, or
// the data sections of a llama.cpp snapshot between their headers.
struct CellLayout {
  uint32_t cells = 0;
  std::vector<size_t> k, v;
};

// The layout of a KvBlock's data: per layer K, then per layer V, back to back.
CellLayout BlockLayout(const SnapshotShape& shape, uint32_t cells) {
  CellLayout layout{cells, {}, {}};
  size_t offset = 0;
  for (const LayerShape& layer : shape.layers) {
    layout.k.push_back(offset);
    offset += layer.k_row_size * cells;
  }
  for (const LayerShape& layer : shape.layers) {
    layout.v.push_back(offset);
    offset += layer.v_row_size * cells;
  }
  return layout;
}

// Copies cells [src_cell, src_cell + n) of `src` to cells [dst_cell, dst_cell + n) of `dst`.
// Cell-major rows move in one piece per layer; element-major (v_trans) V in one per element.
void CopyCells(const SnapshotShape& shape, const CellLayout& from, const uint8_t* src,
               uint32_t src_cell, const CellLayout& to, uint8_t* dst, uint32_t dst_cell,
               uint32_t n) {
  for (size_t l = 0; l < shape.layers.size(); ++l) {
    const size_t row = shape.layers[l].k_row_size;
    std::memcpy(dst + to.k[l] + dst_cell * row, src + from.k[l] + src_cell * row, n * row);
  }
  for (size_t l = 0; l < shape.layers.size(); ++l) {
    const LayerShape& layer = shape.layers[l];
    if (!shape.v_trans) {
      const size_t row = layer.v_row_size;
      std::memcpy(dst + to.v[l] + dst_cell * row, src + from.v[l] + src_cell * row, n * row);
      continue;
    }
    const size_t el = layer.v_el_size;
    for (size_t j = 0; j < layer.n_embd_v_gqa; ++j) {
      std::memcpy(dst + to.v[l] + (j * to.cells + dst_cell) * el,
                  src + from.v[l] + (j * from.cells + src_cell) * el, n * el);
    }
  }
}

Status ParseLayers(SpanSource* in, uint32_t n_cells, KvBlock* block,
                   std::vector<std::span<const uint8_t>>* k_rows,
                   std::vector<std::span<const uint8_t>>* v_rows) {
  uint32_t v_trans = 0, n_layer = 0;
  KV_RETURN_IF_ERROR(GetFixed(in, &v_trans));
  KV_RETURN_IF_ERROR(GetFixed(in, &n_layer));
  if (v_trans > 1) return CorruptionError("snapshot v_trans is " + std::to_string(v_trans));
  if (n_layer == 0 || n_layer > kMaxLayers) {
    return CorruptionError("snapshot has " + std::to_string(n_layer) + " layers");
  }
  block->shape.v_trans = v_trans == 1;
  block->shape.layers.resize(n_layer);
  for (LayerShape& layer : block->shape.layers) {
    KV_RETURN_IF_ERROR(GetFixed(in, &layer.k_type));
    KV_RETURN_IF_ERROR(GetFixed(in, &layer.k_row_size));
    if (layer.k_row_size == 0 || layer.k_row_size > kMaxRowBytes) {
      return CorruptionError("snapshot K row size " + std::to_string(layer.k_row_size));
    }
    KV_ASSIGN_OR_RETURN(std::span<const uint8_t> rows, in->ReadView(layer.k_row_size * n_cells));
    k_rows->push_back(rows);
  }
  for (LayerShape& layer : block->shape.layers) {
    KV_RETURN_IF_ERROR(GetFixed(in, &layer.v_type));
    if (!block->shape.v_trans) {
      KV_RETURN_IF_ERROR(GetFixed(in, &layer.v_row_size));
    } else {
      KV_RETURN_IF_ERROR(GetFixed(in, &layer.v_el_size));
      KV_RETURN_IF_ERROR(GetFixed(in, &layer.n_embd_v_gqa));
      if (layer.v_el_size == 0 || layer.v_el_size > 8) {
        return CorruptionError("snapshot V element size " + std::to_string(layer.v_el_size));
      }
      layer.v_row_size = static_cast<uint64_t>(layer.v_el_size) * layer.n_embd_v_gqa;
    }
    if (layer.v_row_size == 0 || layer.v_row_size > kMaxRowBytes) {
      return CorruptionError("snapshot V row size " + std::to_string(layer.v_row_size));
    }
    KV_ASSIGN_OR_RETURN(std::span<const uint8_t> rows, in->ReadView(layer.v_row_size * n_cells));
    v_rows->push_back(rows);
  }
  return Status::Ok();  // other (empty) streams may follow; ParseSnapshot checks the end
}

}  // namespace

uint64_t SnapshotShape::BytesPerCell() const {
  uint64_t bytes = 0;
  for (const LayerShape& layer : layers) bytes += layer.k_row_size + layer.v_row_size;
  return bytes;
}

std::string SnapshotShape::Describe() const {
  if (layers.empty()) return "empty";
  const LayerShape& l = layers[0];
  return std::to_string(layers.size()) + " layers, K " + TypeName(l.k_type) + " x " +
         std::to_string(l.k_row_size) + " B, V " + TypeName(l.v_type) + " x " +
         std::to_string(l.v_row_size) + " B, v_trans " + (v_trans ? "1" : "0");
}

// One stream's cells (n_cells > 0) and their rows, as one block in position order.
Result<KvBlock> ParseStreamCells(SpanSource& in, uint32_t n_cells) {
  KvBlock block;
  if (n_cells > in.remaining() / 12) return CorruptionError("snapshot cell count too large");
  std::vector<llama_pos> positions(n_cells);
  for (uint32_t i = 0; i < n_cells; ++i) {
    uint32_t n_seq = 0;
    int32_t cell_seq = 0;
    KV_RETURN_IF_ERROR(GetFixed(&in, &positions[i]));
    KV_RETURN_IF_ERROR(GetFixed(&in, &n_seq));
    if (n_seq != 1) return CorruptionError("snapshot cell with " + std::to_string(n_seq) + " seqs");
    KV_RETURN_IF_ERROR(GetFixed(&in, &cell_seq));
  }
  std::vector<std::span<const uint8_t>> k_rows, v_rows;
  KV_RETURN_IF_ERROR(ParseLayers(&in, n_cells, &block, &k_rows, &v_rows));

  // Cells in position order; positions must form one contiguous run.
  std::vector<uint32_t> order(n_cells);
  std::iota(order.begin(), order.end(), 0u);
  std::sort(order.begin(), order.end(),
            [&](uint32_t a, uint32_t b) { return positions[a] < positions[b]; });
  block.first_pos = positions[order[0]];
  block.n_tokens = n_cells;
  for (uint32_t i = 0; i < n_cells; ++i) {
    if (positions[order[i]] != block.first_pos + static_cast<llama_pos>(i)) {
      return CorruptionError("snapshot positions are not contiguous at position " +
                             std::to_string(positions[order[i]]));
    }
  }
  // The rows as they lie in the export (offsets from its first K row), copied a run of
  // consecutive cells at a time: cells are usually already in position order.
  const uint8_t* const base = k_rows[0].data();
  CellLayout from{n_cells, {}, {}};
  for (const std::span<const uint8_t> rows : k_rows) from.k.push_back(rows.data() - base);
  for (const std::span<const uint8_t> rows : v_rows) from.v.push_back(rows.data() - base);
  const CellLayout to = BlockLayout(block.shape, n_cells);
  block.data.resize(block.ExpectedDataSize());
  for (uint32_t i = 0; i < n_cells;) {
    uint32_t run = 1;
    while (i + run < n_cells && order[i + run] == order[i] + run) ++run;
    CopyCells(block.shape, from, base, order[i], to, block.data.data(), i, run);
    i += run;
  }
  return block;
}

Result<KvBlock> ParseSnapshot(std::span<const uint8_t> bytes) {
  SpanSource in(bytes);
  uint32_t magic = 0, n_stream = 0;
  int32_t seq_id = 0;
  KV_RETURN_IF_ERROR(GetFixed(&in, &magic));
  if (magic != kLlamaStateMagic) return CorruptionError("not a llama.cpp sequence state");
  KV_RETURN_IF_ERROR(GetFixed(&in, &seq_id));
  KV_RETURN_IF_ERROR(GetFixed(&in, &n_stream));
  if (n_stream == 0 || n_stream > kMaxStreams) {
    return CorruptionError("snapshot has " + std::to_string(n_stream) + " streams");
  }
  // A sequence lives in one stream: every other stream of the export is empty.
  KvBlock block;
  bool found = false;
  for (uint32_t s = 0; s < n_stream; ++s) {
    uint32_t n_cells = 0;
    KV_RETURN_IF_ERROR(GetFixed(&in, &n_cells));
    if (n_cells == 0) continue;
    if (found) return CorruptionError("snapshot has cells in more than one stream");
    KV_ASSIGN_OR_RETURN(block, ParseStreamCells(in, n_cells));
    found = true;
  }
  if (in.remaining() != 0) {
    return CorruptionError("snapshot has " + std::to_string(in.remaining()) + " trailing bytes");
  }
  return block;
}

namespace {

// Writes the headers of a snapshot of `cells` cells from `first_pos` into `out`,
// sized for the whole snapshot, and returns where its rows go. ParseSnapshot reads this.
CellLayout WriteSnapshotHeaders(const SnapshotShape& shape, llama_pos first_pos, uint32_t cells,
                                llama_seq_id seq_id, uint32_t n_stream, std::vector<uint8_t>* out) {
  const size_t size = 12 + 4ull * n_stream + 12ull * cells + 8 + 24ull * shape.layers.size() +
                      shape.BytesPerCell() * cells;
  // A recycled buffer that is too small grows by half again: the conversations whose
  // restores it serves grow a little every turn, and each regrowth costs fresh pages.
  const bool recycled = out->capacity() > 0;
  out->clear();
  if (out->capacity() < size) out->reserve(recycled ? size + size / 2 : size);
  VectorSink sink(out);
  CellLayout layout{cells, {}, {}};
  PutFixed<uint32_t>(&sink, kLlamaStateMagic);
  PutFixed<int32_t>(&sink, seq_id);
  PutFixed<uint32_t>(&sink, n_stream);
  // Without a unified cache sequence i lives in stream i, where llama.cpp's own export puts
  // its cells (on import it takes them for seq_id's stream, whichever slot they are in).
  const uint32_t stream =
      n_stream > 1 && seq_id >= 0 && static_cast<uint32_t>(seq_id) < n_stream ? seq_id : 0;
  for (uint32_t s = 0; s < n_stream; ++s) {
    PutFixed<uint32_t>(&sink, s == stream ? cells : 0);
    if (s != stream || cells == 0) continue;
    for (uint32_t i = 0; i < cells; ++i) {
      PutFixed<int32_t>(&sink, first_pos + static_cast<llama_pos>(i));
      PutFixed<uint32_t>(&sink, 1);
      PutFixed<int32_t>(&sink, seq_id);
    }
    PutFixed<uint32_t>(&sink, shape.v_trans ? 1 : 0);
    PutFixed<uint32_t>(&sink, static_cast<uint32_t>(shape.layers.size()));
    for (const LayerShape& layer : shape.layers) {
      PutFixed<int32_t>(&sink, layer.k_type);
      PutFixed<uint64_t>(&sink, layer.k_row_size);
      layout.k.push_back(out->size());
      out->resize(out->size() + layer.k_row_size * cells);
    }
    for (const LayerShape& layer : shape.layers) {
      PutFixed<int32_t>(&sink, layer.v_type);
      if (shape.v_trans) {
        PutFixed<uint32_t>(&sink, layer.v_el_size);
        PutFixed<uint32_t>(&sink, layer.n_embd_v_gqa);
      } else {
        PutFixed<uint64_t>(&sink, layer.v_row_size);
      }
      layout.v.push_back(out->size());
      out->resize(out->size() + layer.v_row_size * cells);
    }
  }
  return layout;
}

Status CheckBlockData(const KvBlock& block) {
  if (block.data.size() != block.ExpectedDataSize()) {
    return InvalidArgumentError("block data has " + std::to_string(block.data.size()) +
                                " bytes, its shape needs " +
                                std::to_string(block.ExpectedDataSize()));
  }
  return Status::Ok();
}

}  // namespace

Result<KvBlock> SliceBlock(const KvBlock& block, llama_pos first_pos, uint32_t n_tokens) {
  const llama_pos end = block.first_pos + static_cast<llama_pos>(block.n_tokens);
  if (first_pos < block.first_pos || first_pos + static_cast<llama_pos>(n_tokens) > end ||
      n_tokens == 0) {
    return InvalidArgumentError("slice [" + std::to_string(first_pos) + ", +" +
                                std::to_string(n_tokens) + ") outside the block's [" +
                                std::to_string(block.first_pos) + ", " + std::to_string(end) + ")");
  }
  KV_RETURN_IF_ERROR(CheckBlockData(block));
  KvBlock slice;
  slice.first_pos = first_pos;
  slice.n_tokens = n_tokens;
  slice.shape = block.shape;
  slice.data.resize(slice.ExpectedDataSize());
  CopyCells(block.shape, BlockLayout(block.shape, block.n_tokens), block.data.data(),
            static_cast<uint32_t>(first_pos - block.first_pos), BlockLayout(slice.shape, n_tokens),
            slice.data.data(), 0, n_tokens);
  return slice;
}

Result<KvBlock> JoinBlocks(std::span<const KvBlock> blocks) {
  if (blocks.empty()) return InvalidArgumentError("nothing to join");
  KvBlock joined;
  joined.first_pos = blocks[0].first_pos;
  joined.shape = blocks[0].shape;
  for (const KvBlock& block : blocks) {
    if (!(block.shape == joined.shape)) {
      return InvalidArgumentError("blocks of different shapes: " + block.shape.Describe() + " vs " +
                                  joined.shape.Describe());
    }
    if (block.first_pos != joined.first_pos + static_cast<llama_pos>(joined.n_tokens)) {
      return InvalidArgumentError("block at position " + std::to_string(block.first_pos) +
                                  " does not follow position " +
                                  std::to_string(joined.first_pos + joined.n_tokens - 1));
    }
    KV_RETURN_IF_ERROR(CheckBlockData(block));
    joined.n_tokens += block.n_tokens;
  }
  joined.data.resize(joined.ExpectedDataSize());
  const CellLayout to = BlockLayout(joined.shape, joined.n_tokens);
  uint32_t at = 0;
  for (const KvBlock& block : blocks) {
    CopyCells(joined.shape, BlockLayout(block.shape, block.n_tokens), block.data.data(), 0, to,
              joined.data.data(), at, block.n_tokens);
    at += block.n_tokens;
  }
  return joined;
}

std::vector<uint8_t> SerializeSnapshot(const KvBlock& block, llama_seq_id seq_id,
                                       uint32_t n_stream) {
  SnapshotWriter writer(block.shape, block.first_pos, block.n_tokens, seq_id, n_stream);
  const Status appended = writer.Append(block);
  KV_CHECK(appended.ok(), appended.message());
  return std::move(writer).Finish();
}

struct SnapshotWriter::Layout : CellLayout {};

SnapshotWriter::SnapshotWriter(const SnapshotShape& shape, llama_pos first_pos, uint32_t n_tokens,
                               llama_seq_id seq_id, uint32_t n_stream, std::vector<uint8_t> buffer)
    : shape_(shape),
      first_pos_(first_pos),
      n_planned_(n_tokens),
      seq_id_(seq_id),
      n_stream_(n_stream),
      bytes_(std::move(buffer)),
      layout_(std::make_unique<Layout>()) {
  static_cast<CellLayout&>(*layout_) =
      WriteSnapshotHeaders(shape_, first_pos_, n_planned_, seq_id_, n_stream_, &bytes_);
}

SnapshotWriter::~SnapshotWriter() = default;

Status SnapshotWriter::Append(const KvBlock& block, uint32_t n_tokens) {
  if (!(block.shape == shape_)) {
    return InvalidArgumentError("block of shape " + block.shape.Describe() + ", snapshot has " +
                                shape_.Describe());
  }
  const llama_pos next = first_pos_ + static_cast<llama_pos>(n_written_);
  if (block.first_pos != next) {
    return InvalidArgumentError("block at position " + std::to_string(block.first_pos) +
                                ", the snapshot continues at " + std::to_string(next));
  }
  if (n_tokens > block.n_tokens || n_tokens > n_planned_ - n_written_) {
    return InvalidArgumentError("appending " + std::to_string(n_tokens) + " of a block's " +
                                std::to_string(block.n_tokens) + " tokens to a snapshot with " +
                                std::to_string(n_planned_ - n_written_) + " left");
  }
  KV_RETURN_IF_ERROR(CheckBlockData(block));
  CopyCells(shape_, BlockLayout(shape_, block.n_tokens), block.data.data(), 0, *layout_,
            bytes_.data(), n_written_, n_tokens);
  n_written_ += n_tokens;
  return Status::Ok();
}

std::vector<uint8_t> SnapshotWriter::Finish() && {
  if (n_written_ == n_planned_) return std::move(bytes_);
  if (n_written_ == 0) return {};
  // Fewer positions than planned (a block failed): every section is shorter, so lay it out
  // again. Only safe mode takes this path.
  std::vector<uint8_t> shorter;
  const CellLayout to =
      WriteSnapshotHeaders(shape_, first_pos_, n_written_, seq_id_, n_stream_, &shorter);
  CopyCells(shape_, *layout_, bytes_.data(), 0, to, shorter.data(), 0, n_written_);
  return shorter;
}

}  // namespace kvault::kv
