// server/server_state.h: what every route handler needs, owned by Server (http_server.h).
//
// Thread-safety: the pointed-to objects are themselves thread-safe; the struct is immutable
// after Server::Create.
#pragma once

#include <chrono>
#include <string>

#include "kvault/analytics/analytics_store.h"
#include "kvault/base/storage_health.h"
#include "kvault/conversation/manager.h"
#include "kvault/conversation/remote_journal.h"
#include "kvault/conversation/remote_knowledge.h"
#include "kvault/conversation/remote_sessions.h"
#include "kvault/engine/embedding_model.h"
#include "kvault/engine/model.h"
#include "kvault/engine/scheduler.h"
#include "kvault/memory/chunk_index.h"
#include "kvault/memory/knowledge_store.h"
#include "kvault/server/auth.h"
#include "kvault/server/metrics.h"
#include "kvault/server/server_config.h"
#include "kvault/store/block_store.h"

namespace kvault::server {

struct ServerState {
  ServerConfig config;
  std::string model_id;            // what /v1/models and responses call the model
  std::string system_fingerprint;  // from the model fingerprint
  const engine::Model* model = nullptr;
  engine::Scheduler* scheduler = nullptr;
  conversation::ConversationManager* manager = nullptr;
  store::BlockStore* block_store = nullptr;
  MetricsRegistry* metrics = nullptr;
  const ApiKeyAuth* auth = nullptr;
  memory::KnowledgeStore* knowledge = nullptr;              // <data_dir>/knowledge.db
  StorageHealth* storage_health = nullptr;                  // what failed to be written
  memory::ChunkIndex* index = nullptr;                      // <data_dir>/index.db
  const engine::EmbeddingModel* embedding_model = nullptr;  // null: the index is BM25 only
  // The shared Redis of several replicas (null without --remote-url).
  conversation::RemoteJournal* remote = nullptr;
  conversation::RemoteSessions* remote_sessions = nullptr;    // sessions shared through it
  conversation::RemoteKnowledge* remote_knowledge = nullptr;  // the knowledge store's feed
  upstream::UpstreamClient* upstream = nullptr;    // --upstream: the server that generates
  analytics::AnalyticsStore* analytics = nullptr;  // null with --no-analytics
  std::chrono::steady_clock::time_point started_at;
};

}  // namespace kvault::server
