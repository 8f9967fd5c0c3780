// memory/chunk_vectors.h: the dense side of the chunk index: chunk embeddings from an
// Embedder, stored at one byte per dimension in the index's SQLite database (table
// chunk_vectors) and searched in memory with one hnswlib VectorIndex per conversation,
// loaded from the table on the conversation's first search.
//
// Used only by ChunkIndex. Thread-safety: not thread-safe; ChunkIndex calls it with its mutex
// held, and the database is ChunkIndex's.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "kvault/base/result.h"
#include "kvault/base/sqlite.h"
#include "kvault/memory/vector_index.h"

namespace kvault::memory {

class Embedder;
struct ChunkHit;

class ChunkVectors {
 public:
  // `db` and `embedder` are not owned and must outlive this object.
  static Result<std::unique_ptr<ChunkVectors>> Create(SqliteDatabase* db, Embedder* embedder);

  // Embeds `text` and stores it as chunk `chunk_id` of conversation `conversation_id`.
  Status Add(int64_t conversation_id, int64_t chunk_id, std::string_view text);
  Status Remove(int64_t conversation_id, int64_t chunk_id);
  void ForgetConversation(int64_t conversation_id) { loaded_.erase(conversation_id); }
  // Up to n chunks with ids in [lo, hi], most similar to `query` first; ChunkHit-like pairs of
  // chunk id and cosine similarity.
  Result<std::vector<VectorHit>> Search(int64_t conversation_id, std::string_view query, int64_t lo,
                                        int64_t hi, size_t n);
  // Embeddings held in memory, all conversations.
  int64_t loaded_vectors() const;

 private:
  explicit ChunkVectors(Embedder* embedder) : embedder_(embedder) {}
  Result<VectorIndex*> Load(int64_t conversation_id);
  Status ReadVectors(int64_t conversation_id, std::unique_ptr<VectorIndex>* index);

  Embedder* embedder_;
  std::unique_ptr<SqliteStatement> insert_, delete_, select_range_;
  // Loaded conversations; a null index means "loaded, no vectors yet".
  std::map<int64_t, std::unique_ptr<VectorIndex>> loaded_;
};

// Reciprocal rank fusion (k = 60) of rankings of one conversation's chunks, best first: each
// ranking adds 1 / (60 + rank) to a chunk's score (rank from 1). Returns the best k.
std::vector<ChunkHit> FuseRankings(std::span<const std::vector<ChunkHit>> rankings, int32_t k);

}  // namespace kvault::memory
