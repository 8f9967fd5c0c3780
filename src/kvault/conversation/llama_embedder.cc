#include "kvault/conversation/llama_embedder.h"

#include <string>

#include "kvault/base/status_macros.h"
#include "kvault/engine/model.h"

namespace kvault::conversation {

Result<std::unique_ptr<LlamaEmbedder>> LlamaEmbedder::Open(
    const engine::EmbeddingModelParams& params) {
  KV_ASSIGN_OR_RETURN(std::unique_ptr<engine::EmbeddingModel> model,
                      engine::EmbeddingModel::Create(params));
  return std::make_unique<LlamaEmbedder>(std::move(model));
}

LlamaEmbedder::LlamaEmbedder(std::unique_ptr<engine::EmbeddingModel> model)
    : model_(std::move(model)) {}

Result<std::vector<float>> LlamaEmbedder::Embed(std::string_view text) {
  return model_->Embed(text);
}

std::string LlamaEmbedder::Identity() const {
  return model_->model().fingerprint().ToHex() + "/" +
         std::string(engine::EmbeddingPoolingName(model_->pooling())) + "/" +
         std::to_string(model_->dim());
}

}  // namespace kvault::conversation
