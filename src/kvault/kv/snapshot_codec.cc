#include "kvault/kv/snapshot_codec.h"

#include <cstring>

#include <ggml.h>
#include <zstd.h>

#include "kvault/base/coding.h"
#include "kvault/base/status_macros.h"
#include "kvault/kv/byte_shuffle.h"
#include "kvault/kv/quant.h"

namespace kvault::kv {
namespace {

// The largest block a decoder allocates for: 1 GiB, beyond any real block (a 70B model's
// 256-token f16 block is 84 MB).
constexpr uint64_t kMaxDecodedBlockBytes = uint64_t{1} << 30;

constexpr uint32_t kMagic = 0x3142564b;  // "KVB1"
constexpr uint16_t kVersion = 1;
constexpr uint8_t kFlagZstd = 1;
constexpr uint8_t kFlagShuffle = 2;
constexpr int32_t kGgmlF16 = 1;
constexpr uint64_t kMaxTokens = 1 << 20;

void PutHash(ByteSink* out, const Hash128& hash) {
  PutFixed(out, hash.low);
  PutFixed(out, hash.high);
}

Status GetHash(ByteSource* in, Hash128* hash) {
  KV_RETURN_IF_ERROR(GetFixed(in, &hash->low));
  return GetFixed(in, &hash->high);
}

// Calls fn(offset, n_values, row_len) for every run of f16 rows in a block's data: K rows,
// then V rows (element-major V: rows of n_tokens values).
template <typename Fn>
void ForEachRowRun(const KvBlock& block, Fn fn) {
  size_t offset = 0;
  for (const LayerShape& layer : block.shape.layers) {
    const size_t n = layer.k_row_size * block.n_tokens;
    fn(offset, n / 2, static_cast<size_t>(layer.k_row_size / 2));
    offset += n;
  }
  for (const LayerShape& layer : block.shape.layers) {
    const size_t n = layer.v_row_size * block.n_tokens;
    fn(offset, n / 2, block.shape.v_trans ? block.n_tokens : layer.v_row_size / 2);
    offset += n;
  }
}

bool IsF16Block(const KvBlock& block) {
  for (const LayerShape& layer : block.shape.layers) {
    if (layer.k_type != kGgmlF16 || layer.v_type != kGgmlF16) return false;
  }
  return !block.shape.layers.empty() && block.n_tokens > 0;
}

std::vector<uint8_t> Quantize(const KvBlock& block, BlockEncoding encoding) {
  std::vector<uint8_t> out;
  ForEachRowRun(block, [&](size_t offset, size_t n_values, size_t row_len) {
    const std::span<const uint16_t> values(
        reinterpret_cast<const uint16_t*>(block.data.data() + offset), n_values);
    if (encoding == BlockEncoding::kQ8)
      EncodeQ8(values, row_len, &out);
    else
      EncodeQ4(values, row_len, &out);
  });
  return out;
}

Status Dequantize(std::span<const uint8_t> payload, BlockEncoding encoding, KvBlock* block) {
  block->data.assign(block->ExpectedDataSize(), 0);
  size_t in_offset = 0;
  Status status;
  ForEachRowRun(*block, [&](size_t offset, size_t n_values, size_t row_len) {
    if (!status.ok()) return;
    auto* f16 = reinterpret_cast<uint16_t*>(block->data.data() + offset);
    const size_t size = encoding == BlockEncoding::kQ8 ? Q8EncodedSize(n_values, row_len)
                                                       : Q4EncodedSize(n_values, row_len);
    if (in_offset + size > payload.size()) {
      status = CorruptionError("quantized payload is shorter than its block");
      return;
    }
    status = encoding == BlockEncoding::kQ8
                 ? DecodeQ8(payload.subspan(in_offset, size), n_values, row_len, f16)
                 : DecodeQ4(payload.subspan(in_offset, size), n_values, row_len, f16);
    in_offset += size;
  });
  return status;
}

void PutHeader(ByteSink* out, const BlockMeta& meta, const KvBlock& block, uint8_t flags) {
  PutFixed<uint32_t>(out, kMagic);
  PutFixed<uint16_t>(out, kVersion);
  PutFixed<uint8_t>(out, static_cast<uint8_t>(meta.encoding));
  PutFixed<uint8_t>(out, flags);
  PutHash(out, meta.name);
  PutHash(out, meta.parent);
  PutHash(out, meta.space.model_fingerprint);
  PutFixed<int32_t>(out, meta.space.cache_type);
  PutFixed<uint8_t>(out, meta.space.rotated ? 1 : 0);
  PutFixed<uint8_t>(out, block.shape.v_trans ? 1 : 0);
  PutFixed<uint16_t>(out, static_cast<uint16_t>(meta.space.block_size));
  PutFixed<int32_t>(out, block.first_pos);
  PutFixed<uint32_t>(out, block.n_tokens);
  PutFixed<uint32_t>(out, static_cast<uint32_t>(block.shape.layers.size()));
  for (const LayerShape& layer : block.shape.layers) {
    PutFixed(out, layer.k_type);
    PutFixed(out, layer.k_row_size);
    PutFixed(out, layer.v_type);
    PutFixed(out, layer.v_row_size);
    PutFixed(out, layer.v_el_size);
    PutFixed(out, layer.n_embd_v_gqa);
  }
  for (llama_token token : meta.tokens) PutFixed<int32_t>(out, token);
}

bool ValidGgmlType(int32_t type) { return type >= 0 && type < GGML_TYPE_COUNT; }

Status GetHeader(SpanSource* in, BlockMeta* meta, KvBlock* block, uint8_t* flags) {
  uint32_t magic = 0;
  uint16_t version = 0;
  uint8_t encoding = 0, rotated = 0, v_trans = 0;
  uint16_t block_size = 0;
  uint32_t n_layer = 0;
  KV_RETURN_IF_ERROR(GetFixed(in, &magic));
  if (magic != kMagic) return CorruptionError("not a kvault block (bad magic)");
  KV_RETURN_IF_ERROR(GetFixed(in, &version));
  if (version != kVersion) {
    return CorruptionError("block format version " + std::to_string(version) + ", expected " +
                           std::to_string(kVersion));
  }
  KV_RETURN_IF_ERROR(GetFixed(in, &encoding));
  if (encoding > static_cast<uint8_t>(BlockEncoding::kQ4)) return CorruptionError("bad encoding");
  meta->encoding = static_cast<BlockEncoding>(encoding);
  KV_RETURN_IF_ERROR(GetFixed(in, flags));
  meta->zstd = (*flags & kFlagZstd) != 0;
  KV_RETURN_IF_ERROR(GetHash(in, &meta->name));
  KV_RETURN_IF_ERROR(GetHash(in, &meta->parent));
  KV_RETURN_IF_ERROR(GetHash(in, &meta->space.model_fingerprint));
  KV_RETURN_IF_ERROR(GetFixed(in, &meta->space.cache_type));
  // The type is passed to ggml (its name, its row sizes), which indexes a table by it.
  if (!ValidGgmlType(meta->space.cache_type)) return CorruptionError("bad cache type");
  KV_RETURN_IF_ERROR(GetFixed(in, &rotated));
  KV_RETURN_IF_ERROR(GetFixed(in, &v_trans));
  KV_RETURN_IF_ERROR(GetFixed(in, &block_size));
  meta->space.rotated = rotated != 0;
  meta->space.v_trans = v_trans != 0;
  meta->space.block_size = block_size;
  block->shape.v_trans = v_trans != 0;
  KV_RETURN_IF_ERROR(GetFixed(in, &block->first_pos));
  KV_RETURN_IF_ERROR(GetFixed(in, &block->n_tokens));
  KV_RETURN_IF_ERROR(GetFixed(in, &n_layer));
  if (block->n_tokens == 0 || block->n_tokens > kMaxTokens || n_layer == 0 || n_layer > 1024 ||
      block->first_pos < 0) {
    return CorruptionError("block header has impossible sizes");
  }
  block->shape.layers.resize(n_layer);
  for (LayerShape& layer : block->shape.layers) {
    KV_RETURN_IF_ERROR(GetFixed(in, &layer.k_type));
    KV_RETURN_IF_ERROR(GetFixed(in, &layer.k_row_size));
    KV_RETURN_IF_ERROR(GetFixed(in, &layer.v_type));
    KV_RETURN_IF_ERROR(GetFixed(in, &layer.v_row_size));
    KV_RETURN_IF_ERROR(GetFixed(in, &layer.v_el_size));
    KV_RETURN_IF_ERROR(GetFixed(in, &layer.n_embd_v_gqa));
    if (!ValidGgmlType(layer.k_type) || !ValidGgmlType(layer.v_type)) {
      return CorruptionError("block layer has a bad cache type");
    }
    if (layer.k_row_size == 0 || layer.k_row_size > (1u << 24) || layer.v_row_size == 0 ||
        layer.v_row_size > (1u << 24)) {
      return CorruptionError("block layer row sizes are impossible");
    }
  }
  meta->tokens.resize(block->n_tokens);
  for (llama_token& token : meta->tokens) KV_RETURN_IF_ERROR(GetFixed(in, &token));
  return Status::Ok();
}

}  // namespace

Result<BlockEncoding> ParseBlockEncoding(std::string_view name) {
  if (name == "f16") return BlockEncoding::kF16;
  if (name == "q8") return BlockEncoding::kQ8;
  if (name == "q4") return BlockEncoding::kQ4;
  return InvalidArgumentError("unknown cache encoding '" + std::string(name) +
                              "' (expected f16, q8 or q4, optionally with +zstd)");
}

std::string_view BlockEncodingName(BlockEncoding encoding) {
  switch (encoding) {
    case BlockEncoding::kF16: return "f16";
    case BlockEncoding::kQ8: return "q8";
    case BlockEncoding::kQ4: return "q4";
  }
  return "f16";
}

Result<std::vector<uint8_t>> EncodeBlock(const KvBlock& block, const BlockMeta& meta_in,
                                         const CodecOptions& options) {
  if (block.data.size() != block.ExpectedDataSize() || block.n_tokens == 0) {
    return InvalidArgumentError("block data does not match its shape");
  }
  if (meta_in.tokens.size() != block.n_tokens) {
    return InvalidArgumentError("block has " + std::to_string(block.n_tokens) + " cells but " +
                                std::to_string(meta_in.tokens.size()) + " token ids");
  }
  BlockMeta meta = meta_in;
  // Quantized cache types are already compact; they are stored as they are.
  meta.encoding = IsF16Block(block) ? options.encoding : BlockEncoding::kF16;
  std::vector<uint8_t> payload =
      meta.encoding == BlockEncoding::kF16 ? block.data : Quantize(block, meta.encoding);
  uint8_t flags = 0;
  if (options.zstd) {
    if (meta.encoding == BlockEncoding::kF16 && IsF16Block(block)) {
      payload = ByteShuffle(payload, 2);
      flags |= kFlagShuffle;
    }
    std::vector<uint8_t> compressed(ZSTD_compressBound(payload.size()));
    const size_t n = ZSTD_compress(compressed.data(), compressed.size(), payload.data(),
                                   payload.size(), options.zstd_level);
    if (ZSTD_isError(n)) return InternalError(std::string("zstd: ") + ZSTD_getErrorName(n));
    compressed.resize(n);
    payload = std::move(compressed);
    flags |= kFlagZstd;
  }
  std::vector<uint8_t> bytes;
  VectorSink out(&bytes);
  PutHeader(&out, meta, block, flags);
  PutFixed<uint64_t>(&out, block.data.size());
  PutFixed<uint64_t>(&out, payload.size());
  out.Append(payload);
  PutFixed<uint64_t>(&out, Hash64(bytes));
  return bytes;
}

Result<BlockMeta> PeekBlockMeta(std::span<const uint8_t> bytes) {
  SpanSource in(bytes);
  DecodedBlock decoded;
  uint8_t flags = 0;
  KV_RETURN_IF_ERROR(GetHeader(&in, &decoded.meta, &decoded.block, &flags));
  return decoded.meta;
}

Status DecodeBlockInto(std::span<const uint8_t> bytes, DecodedBlock* out) {
  if (bytes.size() < 8) return CorruptionError("block is truncated");
  uint64_t checksum = 0;
  std::memcpy(&checksum, bytes.data() + bytes.size() - 8, 8);
  if (Hash64(bytes.first(bytes.size() - 8)) != checksum) {
    return CorruptionError("block checksum mismatch");
  }
  SpanSource in(bytes.first(bytes.size() - 8));
  DecodedBlock& decoded = *out;
  uint8_t flags = 0;
  KV_RETURN_IF_ERROR(GetHeader(&in, &decoded.meta, &decoded.block, &flags));
  uint64_t raw_size = 0, payload_size = 0;
  KV_RETURN_IF_ERROR(GetFixed(&in, &raw_size));
  KV_RETURN_IF_ERROR(GetFixed(&in, &payload_size));
  KvBlock& block = decoded.block;
  if (raw_size != block.ExpectedDataSize() || payload_size != in.remaining()) {
    return CorruptionError("block sizes disagree with its shape");
  }
  // The shape is the file's claim: bounded before anything is sized by it (a 404-byte file
  // claiming a 2 GiB block made the decoder allocate that much; found by disk_block_fuzz).
  if (raw_size > kMaxDecodedBlockBytes) {
    return CorruptionError("block claims " + std::to_string(raw_size) + " bytes, more than " +
                           std::to_string(kMaxDecodedBlockBytes));
  }
  KV_ASSIGN_OR_RETURN(std::span<const uint8_t> payload, in.ReadView(payload_size));
  std::vector<uint8_t> plain;
  if (flags & kFlagZstd) {
    // The frame says how much it holds (kvault writes it); f16 must hold exactly the raw
    // bytes, a quantized payload at most about twice them.
    const unsigned long long frame_size = ZSTD_getFrameContentSize(payload.data(), payload.size());
    if (frame_size == ZSTD_CONTENTSIZE_ERROR || frame_size == ZSTD_CONTENTSIZE_UNKNOWN ||
        frame_size > 2 * raw_size + 64 ||
        (decoded.meta.encoding == BlockEncoding::kF16 && frame_size != raw_size)) {
      return CorruptionError("zstd frame of a block is unreadable");
    }
    const auto expected = static_cast<size_t>(frame_size);
    plain.resize(expected);
    const size_t n = ZSTD_decompress(plain.data(), plain.size(), payload.data(), payload.size());
    if (ZSTD_isError(n) || n != expected)
      return CorruptionError("zstd frame of a block is corrupt");
    if (flags & kFlagShuffle) plain = ByteUnshuffle(plain, 2);
    payload = plain;
  }
  if (decoded.meta.encoding == BlockEncoding::kF16) {
    if (payload.size() != raw_size) return CorruptionError("raw block payload has the wrong size");
    block.data.assign(payload.begin(), payload.end());
  } else {
    if (!IsF16Block(block)) return CorruptionError("quantized encoding of a non-f16 block");
    KV_RETURN_IF_ERROR(Dequantize(payload, decoded.meta.encoding, &block));
  }
  return Status::Ok();
}

Result<DecodedBlock> DecodeBlock(std::span<const uint8_t> bytes) {
  DecodedBlock decoded;
  KV_RETURN_IF_ERROR(DecodeBlockInto(bytes, &decoded));
  return decoded;
}

Status CheckCompatible(const BlockMeta& stored, const SnapshotShape& shape,
                       const BlockNamespace& expected, const SnapshotShape& expected_shape) {
  if (!(stored.space.model_fingerprint == expected.model_fingerprint)) {
    return FailedPreconditionError("kv: block was made by model " +
                                   stored.space.model_fingerprint.ToHex() + ", this is " +
                                   expected.model_fingerprint.ToHex());
  }
  if (stored.space.cache_type != expected.cache_type) {
    return FailedPreconditionError("kv: block cache type " +
                                   std::to_string(stored.space.cache_type) + ", context has " +
                                   std::to_string(expected.cache_type));
  }
  if (stored.space.rotated != expected.rotated) {
    return FailedPreconditionError("kv: block K/V rotation differs from the context's");
  }
  if (shape.v_trans != expected_shape.v_trans) {
    return FailedPreconditionError(
        "kv: block V layout (flash attention) differs from the context's");
  }
  if (shape.layers.size() != expected_shape.layers.size()) {
    return FailedPreconditionError("kv: snapshot has " + std::to_string(shape.layers.size()) +
                                   " layers, model has " +
                                   std::to_string(expected_shape.layers.size()));
  }
  if (!(shape == expected_shape)) {
    return FailedPreconditionError("kv: block rows " + shape.Describe() + ", context needs " +
                                   expected_shape.Describe());
  }
  return Status::Ok();
}

}  // namespace kvault::kv
