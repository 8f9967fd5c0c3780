// memory/chunk_vectors.h: the dense side of the chunk index: chunk embeddings from an
// Embedder, stored at one byte per dimension in the index's SQLite database (table
// chunk_vectors) and searched in memory with one hnswlib VectorIndex per conversation,
// loaded from the table on the conversation's first search.
//
// Used only by ChunkIndex, which computes the embeddings (outside its mutex: an embedding
// model takes milliseconds to seconds) and passes them in. Thread-safety: not thread-safe;
// ChunkIndex calls it with its mutex held, and the database is ChunkIndex's.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kvault/base/result.h"
#include "kvault/base/sqlite.h"
#include "kvault/memory/vector_index.h"

namespace kvault::memory {

struct ChunkHit;

class ChunkVectors {
 public:
  // `db` is not owned and must outlive this object. Stored vectors that another embedder
  // (Embedder::Identity()) made are deleted: dropped_at_open(). Nothing re-embeds their
  // chunks.
  static Result<std::unique_ptr<ChunkVectors>> Create(SqliteDatabase* db,
                                                      std::string_view embedder_identity);

  // Stores `vector` (the embedding of the chunk's text) as chunk `chunk_id` of conversation
  // `conversation_id`. InvalidArgument for an empty or zero vector.
  Status Add(int64_t conversation_id, int64_t chunk_id, std::span<const float> vector);
  Status Remove(int64_t conversation_id, int64_t chunk_id);
  void ForgetConversation(int64_t conversation_id) { loaded_.erase(conversation_id); }
  // Up to n chunks with ids in [lo, hi], most similar to `query` (the query text's embedding)
  // first; pairs of chunk id and cosine similarity.
  Result<std::vector<VectorHit>> Search(int64_t conversation_id, std::span<const float> query,
                                        int64_t lo, int64_t hi, size_t n);
  // Embeddings held in memory, all conversations.
  int64_t loaded_vectors() const;
  int64_t dropped_at_open() const { return dropped_at_open_; }

 private:
  ChunkVectors() = default;
  Result<VectorIndex*> Load(int64_t conversation_id);
  Status ReadVectors(int64_t conversation_id, std::unique_ptr<VectorIndex>* index);
  // Keeps the stored vectors if `identity` made them, else deletes them and records it.
  Status AdoptStoredVectors(SqliteDatabase* db, const std::string& identity);

  int64_t dropped_at_open_ = 0;
  std::unique_ptr<SqliteStatement> insert_, delete_, select_range_;
  // Loaded conversations; a null index means "loaded, no vectors yet".
  std::map<int64_t, std::unique_ptr<VectorIndex>> loaded_;
};

// Reciprocal rank fusion (k = 60) of rankings of one conversation's chunks, best first: each
// ranking adds 1 / (60 + rank) to a chunk's score (rank from 1). Returns the best k.
std::vector<ChunkHit> FuseRankings(std::span<const std::vector<ChunkHit>> rankings, int32_t k);

}  // namespace kvault::memory
