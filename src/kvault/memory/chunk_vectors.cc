#include "kvault/memory/chunk_vectors.h"

#include <algorithm>
#include <string>
#include <unordered_map>

#include "kvault/base/status_macros.h"
#include "kvault/memory/chunk_index.h"

namespace kvault::memory {
namespace {

// The k of reciprocal rank fusion (ref: Cormack et al., "Reciprocal Rank Fusion outperforms
// Condorcet and individual Rank Learning Methods", SIGIR 2009).
constexpr double kFusionK = 60;

int64_t FirstId(int64_t conversation_id) { return conversation_id << 32; }
int64_t LastId(int64_t conversation_id) { return (conversation_id << 32) | 0xffffffffLL; }

}  // namespace

Result<std::unique_ptr<ChunkVectors>> ChunkVectors::Create(SqliteDatabase* db,
                                                           std::string_view embedder_identity) {
  auto vectors = std::unique_ptr<ChunkVectors>(new ChunkVectors());
  KV_ASSIGN_OR_RETURN(vectors->insert_,
                      db->Prepare("INSERT OR REPLACE INTO chunk_vectors (id, vector)"
                                  " VALUES (?1, ?2)"));
  KV_ASSIGN_OR_RETURN(vectors->delete_, db->Prepare("DELETE FROM chunk_vectors WHERE id = ?1"));
  KV_ASSIGN_OR_RETURN(
      vectors->select_range_,
      db->Prepare("SELECT id, vector FROM chunk_vectors WHERE id BETWEEN ?1 AND ?2"));
  KV_RETURN_IF_ERROR(vectors->AdoptStoredVectors(db, std::string(embedder_identity)));
  return vectors;
}

Status ChunkVectors::AdoptStoredVectors(SqliteDatabase* db, const std::string& identity) {
  {
    KV_ASSIGN_OR_RETURN(std::unique_ptr<SqliteStatement> read,
                        db->Prepare("SELECT value FROM chunk_meta WHERE key = 'embedder'"));
    KV_ASSIGN_OR_RETURN(const bool recorded, read->Step());
    if (recorded && read->ColumnText(0) == identity) return Status::Ok();
    // An index from before identities were recorded: its vectors are taken to be this
    // embedder's (the server had one --embedding-model then too).
    if (recorded) {
      KV_ASSIGN_OR_RETURN(std::unique_ptr<SqliteStatement> count,
                          db->Prepare("SELECT count(*) FROM chunk_vectors"));
      KV_ASSIGN_OR_RETURN(const bool counted, count->Step());
      dropped_at_open_ = counted ? count->ColumnInt(0) : 0;
    }
  }  // statements finalized: no read stays open across the write
  KV_ASSIGN_OR_RETURN(
      std::unique_ptr<SqliteStatement> record,
      db->Prepare("INSERT OR REPLACE INTO chunk_meta (key, value) VALUES ('embedder', ?1)"));
  KV_RETURN_IF_ERROR(db->Execute("BEGIN"));
  Status status = dropped_at_open_ > 0 ? db->Execute("DELETE FROM chunk_vectors") : Status::Ok();
  if (status.ok()) status = record->Bind(1, identity);
  if (status.ok()) status = record->Run();
  if (!status.ok()) {
    db->Execute("ROLLBACK").IgnoreError();
    return status;
  }
  return db->Execute("COMMIT");
}

Status ChunkVectors::Add(int64_t conversation_id, int64_t chunk_id, std::span<const float> vector) {
  if (Normalized(vector).empty()) {
    return InvalidArgumentError("memory: the embedder returned an empty or zero vector");
  }
  KV_RETURN_IF_ERROR(insert_->Reset());
  KV_RETURN_IF_ERROR(insert_->Bind(1, chunk_id));
  KV_RETURN_IF_ERROR(insert_->BindBlob(2, AsBytes(EncodeEmbedding(vector))));
  KV_RETURN_IF_ERROR(insert_->Run());
  auto it = loaded_.find(conversation_id);
  if (it == loaded_.end()) return Status::Ok();  // read from the table when first searched
  if (it->second == nullptr) {
    KV_ASSIGN_OR_RETURN(it->second, VectorIndex::Create(static_cast<int32_t>(vector.size())));
  }
  return it->second->Add(chunk_id, vector);
}

Status ChunkVectors::Remove(int64_t conversation_id, int64_t chunk_id) {
  KV_RETURN_IF_ERROR(delete_->Reset());
  KV_RETURN_IF_ERROR(delete_->Bind(1, chunk_id));
  KV_RETURN_IF_ERROR(delete_->Run());
  auto it = loaded_.find(conversation_id);
  if (it != loaded_.end() && it->second != nullptr) it->second->Remove(chunk_id);
  return Status::Ok();
}

Status ChunkVectors::ReadVectors(int64_t conversation_id, std::unique_ptr<VectorIndex>* index) {
  KV_RETURN_IF_ERROR(select_range_->Bind(1, FirstId(conversation_id)));
  KV_RETURN_IF_ERROR(select_range_->Bind(2, LastId(conversation_id)));
  while (true) {
    KV_ASSIGN_OR_RETURN(bool row, select_range_->Step());
    if (!row) return Status::Ok();
    const std::string bytes = select_range_->ColumnBlob(1);
    if (*index == nullptr) {
      const size_t dim = bytes.size() > sizeof(float) ? bytes.size() - sizeof(float) : 1;
      KV_ASSIGN_OR_RETURN(*index, VectorIndex::Create(static_cast<int32_t>(dim)));
    }
    KV_ASSIGN_OR_RETURN(std::vector<float> vector, DecodeEmbedding(bytes, (*index)->dim()));
    KV_RETURN_IF_ERROR((*index)->Add(select_range_->ColumnInt(0), vector));
  }
}

Result<VectorIndex*> ChunkVectors::Load(int64_t conversation_id) {
  auto it = loaded_.find(conversation_id);
  if (it != loaded_.end()) return it->second.get();
  std::unique_ptr<VectorIndex> index;
  KV_RETURN_IF_ERROR(select_range_->Reset());
  const Status status = ReadVectors(conversation_id, &index);
  select_range_->Reset().IgnoreError();  // ends the read
  KV_RETURN_IF_ERROR(status);
  VectorIndex* raw = index.get();
  loaded_[conversation_id] = std::move(index);
  return raw;
}

Result<std::vector<VectorHit>> ChunkVectors::Search(int64_t conversation_id,
                                                    std::span<const float> query, int64_t lo,
                                                    int64_t hi, size_t n) {
  KV_ASSIGN_OR_RETURN(VectorIndex * index, Load(conversation_id));
  if (index == nullptr) return std::vector<VectorHit>();
  if (static_cast<int32_t>(query.size()) != index->dim()) {
    return InvalidArgumentError("memory: query embedding has " + std::to_string(query.size()) +
                                " dimensions, stored ones " + std::to_string(index->dim()));
  }
  return index->Search(query, n, lo, hi);
}

int64_t ChunkVectors::loaded_vectors() const {
  int64_t n = 0;
  for (const auto& [id, index] : loaded_)
    n += index == nullptr ? 0 : static_cast<int64_t>(index->size());
  return n;
}

// Reciprocal rank fusion: each ranking adds 1 / (kFusionK + rank) to a chunk's score.
std::vector<ChunkHit> FuseRankings(std::span<const std::vector<ChunkHit>> rankings, int32_t k) {
  std::unordered_map<int64_t, ChunkHit> fused;
  for (const std::vector<ChunkHit>& ranking : rankings) {
    for (size_t rank = 0; rank < ranking.size(); ++rank) {
      auto [it, added] = fused.try_emplace(ranking[rank].chunk_id, ranking[rank]);
      if (added) it->second.score = 0;
      it->second.score += 1.0 / (kFusionK + static_cast<double>(rank + 1));
    }
  }
  std::vector<ChunkHit> hits;
  for (auto& [id, hit] : fused) hits.push_back(hit);
  std::sort(hits.begin(), hits.end(), [](const ChunkHit& a, const ChunkHit& b) {
    return a.score != b.score ? a.score > b.score : a.chunk_id > b.chunk_id;
  });
  if (hits.size() > static_cast<size_t>(k)) hits.resize(static_cast<size_t>(k));
  return hits;
}

}  // namespace kvault::memory
