// engine/embedding_model.h: text -> one unit-length vector, computed by a GGUF embedding model
// that llama.cpp runs (--embedding-model). The server's chunk index embeds every chunk it
// indexes and every dense query with it (through conversation/llama_embedder.h).
//
// Design notes:
// - The model gets its own llama_context, created with embeddings on and pooled by sequence:
//   it never shares the generation model's context, cache or threads' work queue.
// - Pooling: the model's own (`<arch>.pooling_type` in the GGUF: mean, cls or last) when it
//   declares one, else mean. A reranker (pooling "rank") is refused.
// - A text is tokenized with the vocabulary's BOS/EOS, cut to n_ctx tokens (keeping a final
//   EOS the vocabulary adds, which last-token pooling reads), and decoded in slices of at most
//   n_ubatch tokens. llama.cpp pools each slice on its own; the slices are combined: a mean
//   weighted by slice length, the first slice's CLS, the last slice's last token. For a causal
//   model this is exact (later slices attend to earlier ones through the KV cache).
// WART: a non-causal model (BERT-like, no KV cache) sees each slice alone, so a text longer
//   than n_ubatch gets the mean of its slices' embeddings, not the embedding of the whole.
//   Chunks are ~128 tokens, far below the default n_ubatch of 512.
// WART: for a generative model (one with an output head) llama.cpp still computes and copies
//   every token's vocabulary logits, though only the pooled vector is read: the tiny test
//   model (152k vocabulary) takes ~220 ms per 128-token chunk on 2 cores. Dedicated
//   embedding models (BERT-like) have no output head.
//
// Thread-safety: Embed() may be called from any thread; a mutex serializes the calls.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "kvault/base/mutex.h"
#include "kvault/base/result.h"

struct llama_context;

namespace kvault::engine {

class Model;

enum class EmbeddingPooling { kMean, kCls, kLast };
std::string_view EmbeddingPoolingName(EmbeddingPooling pooling);

struct EmbeddingModelParams {
  std::string path;      // GGUF embedding model
  int n_threads = 0;     // CPU threads for llama.cpp; 0 = hardware cores
  int n_gpu_layers = 0;  // layers to offload; -1 = all
  // Longest text in tokens (more is cut off); capped by the model's training context, and
  // rounded up by llama.cpp (to a multiple of 256).
  uint32_t n_ctx = 2048;
  uint32_t n_ubatch = 512;  // tokens per llama_decode call
};

class EmbeddingModel {
 public:
  // NotFound / InvalidArgument as Model::Load; InvalidArgument for a reranker;
  // ResourceExhausted if llama.cpp cannot create the context.
  static Result<std::unique_ptr<EmbeddingModel>> Create(const EmbeddingModelParams& params);
  ~EmbeddingModel();
  EmbeddingModel(const EmbeddingModel&) = delete;
  EmbeddingModel& operator=(const EmbeddingModel&) = delete;

  // The embedding of `text`: dim() floats of L2 norm 1. Deterministic for a given model and
  // text. InvalidArgument for a text that has no tokens; Internal if llama.cpp fails or
  // returns a zero or non-finite vector.
  Result<std::vector<float>> Embed(std::string_view text) KV_EXCLUDES(mu_);

  int32_t dim() const { return dim_; }
  EmbeddingPooling pooling() const { return pooling_; }
  // The context llama.cpp made: the longest text embedded whole, in tokens.
  uint32_t n_ctx() const { return n_ctx_; }
  const Model& model() const { return *model_; }
  // general.name of the GGUF, or its file name.
  const std::string& name() const;

 private:
  EmbeddingModel(std::unique_ptr<Model> model, llama_context* ctx, EmbeddingPooling pooling);
  // Decodes tokens [begin, end) at their positions and returns the slice's pooled vector.
  Result<std::vector<float>> DecodeSlice(const std::vector<int32_t>& tokens, size_t begin,
                                         size_t end) KV_REQUIRES(mu_);

  std::unique_ptr<Model> model_;
  Mutex mu_;
  llama_context* ctx_ KV_PT_GUARDED_BY(mu_);
  EmbeddingPooling pooling_;
  int32_t dim_;        // llama_model_n_embd_out
  uint32_t n_ctx_;     // tokens
  uint32_t n_ubatch_;  // tokens per decode
};

}  // namespace kvault::engine
