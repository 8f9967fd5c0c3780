// store/block_files.h: a disk tier's block files (tier.h: <cache-dir>/<namespace digest>/
// <first two hex digits>/<name>.kvb) read and written without a BlockStore, for the offline
// `kvault session export|import` (cli/cmd_session.cc). Opening a BlockStore or DiskTier is no
// option there: their start-up deletes files (torn writes, orphans) that a running server may
// be writing at that moment. A server indexes the files written here at its next start.
//
// Thread-safety: free functions; file writes are crash-safe (base/file.h).
#pragma once

#include <span>
#include <string>
#include <vector>

#include "kvault/base/result.h"
#include "kvault/store/tier.h"

namespace kvault::store {

// The files of `names` under `cache_dir`: the longest prefix of `names` found in one
// namespace folder (the one holding the first). The bytes are not checked here; whoever
// uses them decodes them (InsertEncoded, session files).
std::vector<BlockBytes> ReadBlockFiles(const std::string& cache_dir,
                                       std::span<const BlockName> names);

// Writes encoded blocks (kv/snapshot_codec.h) into their namespace's folder under
// `cache_dir`, keeping files already there. Each block is decoded and checked before the
// first write: Corruption for one that fails, and nothing is written.
Status WriteBlockFiles(const std::string& cache_dir, std::span<const BlockBytes> blocks);

}  // namespace kvault::store
