// kv/context_blocks.h: what the KV blocks of one llama context are: their layout (found by
// probing the context, as llama.cpp's export format does not describe itself to the API) and
// their namespace (model, cache type, rotation, V layout, block size), which keeps blocks of
// other models or settings from ever meeting, in memory and on disk.
//
// Thread-safety: ProbeKvShape uses the context (run it before the scheduler starts); the rest
// are pure functions.
#pragma once

#include <cstdint>
#include <string>

#include <llama.h>

#include "kvault/base/result.h"
#include "kvault/engine/context.h"
#include "kvault/kv/block_hash.h"
#include "kvault/kv/snapshot_layout.h"

namespace kvault::kv {

// The K/V layout of `context`'s blocks, found by decoding one token into `scratch` (which
// must be empty and is left empty) and parsing its export: the shape restored blocks must
// have.
Result<SnapshotShape> ProbeKvShape(engine::Context& context, llama_seq_id scratch);

// The namespace of `context`'s blocks.
BlockNamespace BlockNamespaceOf(const engine::Context& context, const SnapshotShape& shape,
                                uint32_t block_size);

// 16 hex digits naming `space`: the disk tier's folder for its blocks.
std::string BlockNamespaceDigest(const BlockNamespace& space);

}  // namespace kvault::kv
