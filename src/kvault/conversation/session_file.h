// conversation/session_file.h: a named session as one portable file (zKV's session.save /
// load_session): its history (turns and the tokens they render to), the encoded KV blocks
// that hold those tokens' KV, and the model fingerprint they were computed with. Written by
// GET /v1/sessions/{name}/export and `kvault session export`, read by POST
// /v1/sessions/import and `kvault session import` (session_service.h decides what of it a
// server can use).
//
// Layout (little-endian; base/coding.h):
//
//   u32 magic "KVSF"   u16 version (1)   u16 flags (0)
//   u64 metadata size  metadata: the session's JSON (session_store.h's, scope ""), plus
//                      "parents": the hex parent name of each block in "blocks"
//   u32 n_blocks       per block: u64 size, the encoded block (kv/snapshot_codec.h, "KVB1")
//   u64 XXH3-64 of every byte before it
//
// The blocks are in chain order (each hangs under the one before it) and each carries its own
// name, parent, tokens, namespace and checksum, so an importer checks them again one by one
// (store::BlockStore::InsertEncoded).
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "kvault/base/result.h"
#include "kvault/conversation/session_store.h"
#include "kvault/kv/block_hash.h"
#include "kvault/store/tier.h"

namespace kvault::conversation {

struct SessionFile {
  // session.blocks names `blocks`; its scope is not part of the file (an import takes the
  // importer's).
  Session session;
  std::vector<store::BlockBytes> blocks;  // encoded, in chain order
};

// The file of `session` with `found`: the leading blocks of session.blocks still to be had
// (BlockStore::ReadEncoded, store::ReadBlockFiles). Its block list, kv_tokens and kv_bytes
// are cut to them.
SessionFile PackSessionFile(Session session, std::vector<store::BlockBytes> found);

std::vector<uint8_t> EncodeSessionFile(const SessionFile& file);

// InvalidArgument (a file is the caller's input) for a bad magic, version or checksum, a
// truncated or overlong file, malformed metadata, or blocks that are not those it lists.
Result<SessionFile> DecodeSessionFile(std::span<const uint8_t> bytes);

// The chain `blocks` hung under partition root `root` (kv/block_hash.h: another API key's
// partition gives other names to the same tokens). Unchanged if it hangs there already;
// otherwise each block is decoded and encoded again, in its own encoding, under its name
// there. Corruption for a block that does not decode.
Result<std::vector<store::BlockBytes>> ReRootBlocks(std::span<const store::BlockBytes> blocks,
                                                    const kv::BlockName& root);

}  // namespace kvault::conversation
