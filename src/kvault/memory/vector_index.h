// memory/vector_index.h: approximate nearest-neighbour search over one conversation's chunk
// embeddings by cosine similarity, with hnswlib (Debian's libhnswlib-dev, header-only). Used
// by ChunkIndex when an embedding model is configured; hnswlib throws, so this is the one
// adapter that calls it and turns its exceptions into a Status.
//
// Labels are the chunk ids; vectors are normalized on the way in, so the inner product of
// hnswlib's InnerProductSpace is the cosine similarity.
//
// Thread-safety: not thread-safe; ChunkIndex calls it with its mutex held.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kvault/base/result.h"

namespace kvault::memory {

struct VectorHit {
  int64_t label = 0;
  float similarity = 0;  // cosine, in [-1, 1]
};

class VectorIndex {
 public:
  // REQUIRES: dim >= 1.
  static Result<std::unique_ptr<VectorIndex>> Create(int32_t dim);
  ~VectorIndex();
  VectorIndex(const VectorIndex&) = delete;
  VectorIndex& operator=(const VectorIndex&) = delete;

  // InvalidArgument for a vector of the wrong size or of zero length; ResourceExhausted if
  // hnswlib cannot grow. Adding a label again replaces its vector.
  Status Add(int64_t label, std::span<const float> vector);
  // Removes a label (no-op if absent).
  void Remove(int64_t label);
  // Up to k labels within [min_label, max_label], most similar first.
  Result<std::vector<VectorHit>> Search(std::span<const float> query, size_t k, int64_t min_label,
                                        int64_t max_label) const;

  int32_t dim() const { return dim_; }
  size_t size() const;  // live labels

 private:
  struct Impl;
  explicit VectorIndex(int32_t dim);
  int32_t dim_;
  std::unique_ptr<Impl> impl_;
};

// `vector` scaled to unit length; empty if it is all zeros or not finite.
std::vector<float> Normalized(std::span<const float> vector);

// An embedding at rest: one byte per dimension (int8, scaled by the largest magnitude, which
// comes first as a float), a quarter of float32 for a cosine error below 1%.
std::string EncodeEmbedding(std::span<const float> vector);
// Corruption for bytes that are not an encoding of a `dim`-dimensional vector.
Result<std::vector<float>> DecodeEmbedding(std::string_view bytes, int32_t dim);

}  // namespace kvault::memory
