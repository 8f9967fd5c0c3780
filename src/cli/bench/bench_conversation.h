// cli/bench/bench_conversation.h: one long conversation as the server would hold it, for the memory
// benchmarks: each message rendered with the model's chat template and tokenized with its
// real vocabulary, appended to a memory::TokenStore and indexed by a memory::ChunkIndex in an
// on-disk SQLite file, with dense search too when given an embedding model. Turns are indexed in
// batches, one transaction each, as a bulk append (POST /v1/conversations/append or a reconnect)
// would. Times each stage.
//
// Thread-safety: single-threaded.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kvault/base/result.h"
#include "kvault/conversation/llama_embedder.h"
#include "kvault/engine/chat_template.h"
#include "kvault/engine/model.h"
#include "kvault/engine/tokenizer.h"
#include "kvault/memory/chunk_index.h"
#include "kvault/memory/token_store.h"

namespace kvault::cli {

struct BenchConversationOptions {
  std::string model_path;
  std::string index_path;       // the SQLite file
  int64_t cache_size = 0;       // TokenStore capacity in tokens
  int batch_turns = 256;        // turns per index transaction
  std::string embedding_model;  // GGUF for dense search fused with BM25; "" = BM25 only
};

struct StageSeconds {
  double tokenize = 0;  // chat template + tokenizer
  double store = 0;     // TokenStore::Append
  double index = 0;     // ChunkIndex::AppendTurns (chunking, detokenizing, FTS5, embedding)
};

class BenchConversation {
 public:
  static constexpr const char* kName = "bench";

  static Result<std::unique_ptr<BenchConversation>> Create(BenchConversationOptions options);

  // Renders and tokenizes one message, stores it, and indexes it with the next batch.
  // `time`: Unix seconds the turn was said (0 = unknown).
  Result<memory::Turn> Append(memory::Role role, const std::string& text, int64_t time = 0);
  // Indexes the turns still waiting for their batch.
  Status Flush();

  // The text of retained positions [first_pos, first_pos + n), special tokens left out.
  Result<std::string> Text(int64_t first_pos, int64_t n) const;

  const memory::TokenStore& store() const { return store_; }
  memory::ChunkIndex& index() { return *index_; }
  const StageSeconds& seconds() const { return seconds_; }
  // The embedding model of the dense search; null when the index is BM25 only.
  const engine::EmbeddingModel* embedding_model() const {
    return embedder_ ? &embedder_->model() : nullptr;
  }

 private:
  BenchConversation(BenchConversationOptions options, std::unique_ptr<engine::Model> model);

  BenchConversationOptions options_;
  std::unique_ptr<engine::Model> model_;
  engine::Tokenizer tokenizer_;
  engine::ChatTemplate template_;
  memory::TokenStore store_;
  std::unique_ptr<conversation::LlamaEmbedder> embedder_;  // outlives index_
  std::unique_ptr<memory::ChunkIndex> index_;
  struct PendingTurn {
    memory::Turn turn;
    std::vector<int32_t> tokens;
  };
  std::vector<PendingTurn> pending_;  // stored, not yet indexed
  StageSeconds seconds_;
};

}  // namespace kvault::cli
