// conversation/stack.h: everything a conversation manager runs on, assembled in one place
// from one config, so `kvault serve` and `kvault chat` keep, restore and recall the same way:
// the model and its llama context (sequences for the running and as many parked
// conversations, plus --pinned-sequences), the block store (RAM and disk tiers, in the context's
// block namespace), the journal, named sessions, the chunk index (BM25, optionally dense with an
// embedding model), the knowledge store, the scheduler and the manager.
//
// Thread-safety: Build and the destructor from one thread; the components are as their
// headers say.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kvault/base/result.h"
#include "kvault/base/storage_health.h"
#include "kvault/conversation/journal.h"
#include "kvault/conversation/llama_embedder.h"
#include "kvault/conversation/manager.h"
#include "kvault/conversation/remote_journal.h"
#include "kvault/conversation/remote_knowledge.h"
#include "kvault/conversation/remote_sessions.h"
#include "kvault/conversation/session_store.h"
#include "kvault/engine/context.h"
#include "kvault/engine/model.h"
#include "kvault/engine/scheduler.h"
#include "kvault/engine/tokenizer.h"
#include "kvault/memory/chunk_index.h"
#include "kvault/memory/knowledge_store.h"
#include "kvault/store/block_store.h"
#include "kvault/upstream/upstream_client.h"

namespace kvault::conversation {

// What the stack can be told (`kvault serve` adds its HTTP settings: server/server_config.h).
struct StackConfig {
  std::string model_path = "models/default.gguf";
  // --upstream: an OpenAI-compatible server generates (upstream/upstream_client.h); kvault
  // loads only the vocabulary of `tokenizer_path` ("" = model_path) and keeps no KV itself.
  std::string upstream_url;
  std::string upstream_key;
  std::string upstream_model;       // "" = the first of its /v1/models
  double upstream_timeout_s = 600;  // the longest silence while it generates
  std::string tokenizer_path;
  // --normalize-rules: a JSON file of template normalisation rules (text_normalizer.h).
  std::string normalize_rules_path;
  int window = 4096;              // tokens the model sees per inference
  int64_t cache_size = 10000000;  // tokens each conversation remembers
  int max_generation = 4096;      // most tokens one reply may have
  int max_model_len = 0;          // KV cells per sequence; 0 = window
  std::string kv_cache_dtype = "f16";
  // One KV cell pool for all sequences (shared prefixes held once) instead of one per
  // sequence (faster prefill when many sequences are parked; see engine/context.h).
  bool kv_unified = false;
  int threads = 0;  // CPU threads for llama.cpp; 0 = all cores
  int gpus = 0;     // > 0: offload all layers, split over this many GPUs
  int conversation_threads = 4;
  int conversation_queue = 64;
  // The longest a request waits for a thread and another replica's lease (ManagerParams).
  double queue_timeout_s = 120;
  // Sequences of their own for pinned conversations (`pin`), beyond the threads' two each;
  // 0 = pins take the threads' parked ones (at most conversation_threads of them).
  int pinned_sequences = 0;
  double fog_alpha = 0.5;
  int recall_budget = 1024;       // tokens of recalled chunks per prompt; 0 = no recall
  double recall_min_score = 1.0;  // relevance threshold (BM25 or fused score, fog applied)
  int max_recalls = 2;            // mid-generation recalls per response; 0 = off
  // Recalled chunks as KV (recall_kv.h): off, reuse or blend; blend's prefilled share; the
  // encoding of kept history spans at rest (f16, q8, q4, optionally +zstd).
  std::string recall_kv = "off";
  double recall_kv_fraction = 0.25;
  std::string recall_kv_encoding = "q8";
  std::vector<std::string> hedge_phrases;  // empty = the built-in English list
  // GGUF embedding model for dense chunk search fused with BM25; "" = BM25 only.
  std::string embedding_model;
  int prefill_chunk = 512;
  // KV state engine (store/): tiers, budgets, encoding, eviction, restore policy.
  std::string cache_dir;       // KV blocks on disk (one folder per block namespace)
  std::string data_dir;        // conversation journals, sessions, index.db, knowledge.db
  std::string knowledge_path;  // "" = <data_dir>/knowledge.db
  int64_t cache_ram_mb = 2048;
  double cache_disk_gb = 20;  // 0 = no disk tier
  double cache_ttl_s = 0;     // blocks unused this long leave every tier; 0 = never
  int block_size = 256;
  std::string cache_encoding = "f16";  // f16, q8, q4, each optionally "+zstd"
  std::string eviction = "cost";
  std::string restore = "auto";  // auto, always, never
  // API key scopes reuse each other's cached prefixes (off: each key only its own and the
  // preloaded ones; conversation/kv_cache.h).
  bool shared_cache = false;
  // The shared Redis/Valkey of several replicas (store/remote_tier.h,
  // conversation/remote_journal.h); "" = none, this replica alone.
  std::string remote_url;
  std::string remote_prefix = "kvault";  // key namespace
  int64_t remote_ttl_s = 0;              // seconds a block stays; 0 = Redis' own eviction
  int64_t remote_lease_ms = 5000;        // a crashed replica's leases expire after this
};

// InvalidArgument for a setting the stack cannot run with.
Status ValidateStackConfig(const StackConfig& config);
// Sequences of the llama context: two per conversation thread (a running and a parked one)
// plus the pinned ones. Each holds max_model_len (or window) KV cells.
// Sequences of the context that recalled history is put together in (recall_kv.h).
int RecallAccumulators(const StackConfig& config);
int ContextSequences(const StackConfig& config);

class Stack {
 public:
  static Result<std::unique_ptr<Stack>> Build(const StackConfig& config);
  // Stops the manager and the scheduler, then finishes the block store's queued disk writes.
  ~Stack();
  Stack(const Stack&) = delete;
  Stack& operator=(const Stack&) = delete;

  engine::Model& model() { return *model_; }
  engine::Scheduler* scheduler() { return scheduler_.get(); }  // null with --upstream
  ConversationManager& manager() { return *manager_; }
  store::BlockStore& block_store() { return *block_store_; }
  memory::ChunkIndex& index() { return *index_; }
  memory::KnowledgeStore& knowledge() { return *knowledge_; }
  StorageHealth& storage_health() { return health_; }
  // Null without --remote-url.
  RemoteJournal* remote_journal() { return remote_journal_.get(); }
  RemoteSessions* remote_sessions() { return remote_sessions_.get(); }
  RemoteKnowledge* remote_knowledge() { return remote_knowledge_.get(); }
  // Null without --upstream.
  upstream::UpstreamClient* upstream() { return upstream_.get(); }
  // Null without --embedding-model.
  const engine::EmbeddingModel* embedding_model() const;

 private:
  Stack() = default;
  // Declared in build order; destroyed in reverse, the manager first.
  StorageHealth health_;  // first: everything below reports to it
  std::unique_ptr<engine::Model> model_;
  std::unique_ptr<engine::Context> context_;
  std::unique_ptr<store::BlockStore> block_store_;
  std::unique_ptr<Journal> journal_;
  std::unique_ptr<RemoteSessions> remote_sessions_;    // null without --remote-url;
  std::unique_ptr<RemoteKnowledge> remote_knowledge_;  // both outlive the stores they feed
  std::unique_ptr<SessionStore> sessions_;
  std::unique_ptr<engine::Tokenizer> index_tokenizer_;
  std::unique_ptr<LlamaEmbedder> embedder_;  // outlives the index
  std::unique_ptr<memory::ChunkIndex> index_;
  std::unique_ptr<memory::KnowledgeStore> knowledge_;
  std::shared_ptr<store::RedisClient> redis_;           // null without --remote-url
  std::unique_ptr<RemoteJournal> remote_journal_;       // outlives the manager
  std::unique_ptr<upstream::UpstreamClient> upstream_;  // null without --upstream
  std::unique_ptr<TextNormalizer> normalizer_;          // null without --normalize-rules
  std::unique_ptr<engine::Scheduler> scheduler_;        // null with --upstream
  std::unique_ptr<ConversationManager> manager_;
};

}  // namespace kvault::conversation
