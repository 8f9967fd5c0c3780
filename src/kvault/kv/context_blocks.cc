#include "kvault/kv/context_blocks.h"

#include <cstdlib>

#include "kvault/base/hash.h"
#include "kvault/base/status_macros.h"
#include "kvault/engine/batch_decoder.h"
#include "kvault/engine/model.h"

namespace kvault::kv {

Result<SnapshotShape> ProbeKvShape(engine::Context& context, llama_seq_id scratch) {
  const llama_token token = 0;
  engine::BatchDecoder decoder(&context);
  const engine::SequenceChunk chunk{scratch, 0, {&token, 1}, false};
  KV_RETURN_IF_ERROR(decoder.Decode({&chunk, 1}));
  Result<std::vector<uint8_t>> state = context.ExportSequence(scratch);
  context.ClearSequence(scratch);
  if (!state.ok()) return state.status();
  KV_ASSIGN_OR_RETURN(KvBlock block, ParseSnapshot(*state));
  return block.shape;
}

BlockNamespace BlockNamespaceOf(const engine::Context& context, const SnapshotShape& shape,
                                uint32_t block_size) {
  BlockNamespace space;
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

std::string BlockNamespaceDigest(const BlockNamespace& space) {
  Hasher hasher;
  hasher.UpdatePod(space.model_fingerprint.low);
  hasher.UpdatePod(space.model_fingerprint.high);
  hasher.UpdatePod(space.cache_type);
  hasher.UpdatePod(static_cast<uint8_t>(space.rotated));
  hasher.UpdatePod(static_cast<uint8_t>(space.v_trans));
  hasher.UpdatePod(space.block_size);
  return Hash128{hasher.Digest64(), 0}.ToHex().substr(16);
}

}  // namespace kvault::kv
