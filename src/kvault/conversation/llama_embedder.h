// conversation/llama_embedder.h: the memory::Embedder the chunk index uses for dense search
// when `kvault serve --embedding-model PATH` (or `kvault bench recall --embedding-model`) is
// given: an engine::EmbeddingModel behind memory's interface. It lives here because memory/
// may not see engine/ and engine/ may not see memory/; conversation/ sees both.
//
// Thread-safety: Embed() may be called from any thread (EmbeddingModel serializes).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "kvault/base/result.h"
#include "kvault/engine/embedding_model.h"
#include "kvault/memory/chunk_index.h"

namespace kvault::conversation {

class LlamaEmbedder final : public memory::Embedder {
 public:
  // Loads the embedding model (errors as EmbeddingModel::Create).
  static Result<std::unique_ptr<LlamaEmbedder>> Open(const engine::EmbeddingModelParams& params);
  explicit LlamaEmbedder(std::unique_ptr<engine::EmbeddingModel> model);

  // A unit-length vector of model().dim() floats.
  Result<std::vector<float>> Embed(std::string_view text) override;
  // The model's fingerprint, pooling and dimensions.
  std::string Identity() const override;

  const engine::EmbeddingModel& model() const { return *model_; }

 private:
  std::unique_ptr<engine::EmbeddingModel> model_;
};

}  // namespace kvault::conversation
