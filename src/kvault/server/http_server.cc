#include "kvault/server/http_server.h"

#include <algorithm>
#include <thread>

#include <httplib.h>

#include "kvault/base/file.h"
#include "kvault/base/hash.h"
#include "kvault/base/log.h"
#include "kvault/base/status_macros.h"
#include "kvault/conversation/llama_embedder.h"
#include "kvault/conversation/manager.h"
#include "kvault/engine/context.h"
#include "kvault/engine/model.h"
#include "kvault/engine/scheduler.h"
#include "kvault/engine/tokenizer.h"
#include "kvault/memory/chunk_index.h"
#include "kvault/server/http_errors.h"
#include "kvault/server/http_route.h"
#include "kvault/server/openai_schema.h"
#include "kvault/server/routes.h"
#include "kvault/store/block_store.h"

namespace kvault::server {

struct Server::Impl {
  ServerState state;
  std::unique_ptr<engine::Model> model;
  std::unique_ptr<engine::Context> context;
  std::unique_ptr<store::BlockStore> block_store;
  std::unique_ptr<conversation::Journal> journal;
  std::unique_ptr<conversation::SessionStore> sessions;
  std::unique_ptr<engine::Tokenizer> index_tokenizer;
  std::unique_ptr<conversation::LlamaEmbedder> embedder;  // --embedding-model; outlives index
  std::unique_ptr<memory::ChunkIndex> index;
  std::unique_ptr<memory::KnowledgeStore> knowledge;
  std::unique_ptr<engine::Scheduler> scheduler;
  std::unique_ptr<conversation::ConversationManager> manager;
  MetricsRegistry metrics;
  std::unique_ptr<ApiKeyAuth> auth;
  httplib::Server http;
  int port = 0;
};

namespace {

// Each waiting request holds an HTTP worker thread, so the pool must hold every running and
// queued request, plus room for /health, /metrics and the 503 answers themselves.
int HttpThreads(const ServerConfig& config) {
  return config.conversation_threads + config.conversation_queue + 16;
}

Status Validate(const ServerConfig& c) {
  if (c.window < 64) return InvalidArgumentError("--window must be at least 64");
  if (c.cache_size < c.window) return InvalidArgumentError("--cache-size must be >= --window");
  if (c.max_generation < 1) return InvalidArgumentError("--max-generation must be positive");
  if (c.conversation_threads < 1) {
    return InvalidArgumentError("--conversation-threads must be at least 1");
  }
  if (c.conversation_queue < 0) return InvalidArgumentError("--conversation-queue must be >= 0");
  if (c.max_body_bytes < 1024) return InvalidArgumentError("--max-body-mb is too small");
  return Status::Ok();
}

// The block store of this context: its namespace (model, cache type, V layout, block size)
// names the disk folder, so blocks of other models or settings never meet.
Result<std::unique_ptr<store::BlockStore>> OpenBlockStore(const ServerConfig& config,
                                                          engine::Context& context) {
  KV_ASSIGN_OR_RETURN(kv::SnapshotShape shape, conversation::ProbeKvShape(context, 0));
  store::BlockStoreParams params;
  params.space = conversation::BlockNamespaceOf(context, shape, config.block_size);
  params.shape = shape;
  params.ram_budget_bytes = static_cast<uint64_t>(config.cache_ram_mb) << 20;
  params.disk_budget_bytes = static_cast<uint64_t>(config.cache_disk_gb * (1ull << 30));
  params.eviction = config.eviction;
  const std::string encoding = config.cache_encoding;
  const size_t plus = encoding.find('+');
  KV_ASSIGN_OR_RETURN(params.codec.encoding, kv::ParseBlockEncoding(encoding.substr(0, plus)));
  params.codec.zstd = plus != std::string::npos;
  if (config.cache_disk_gb > 0) {
    Hasher hasher;
    hasher.UpdatePod(params.space.model_fingerprint.low);
    hasher.UpdatePod(params.space.model_fingerprint.high);
    hasher.UpdatePod(params.space.cache_type);
    hasher.UpdatePod(static_cast<uint8_t>(params.space.rotated));
    hasher.UpdatePod(static_cast<uint8_t>(params.space.v_trans));
    hasher.UpdatePod(params.space.block_size);
    params.disk_dir = config.cache_dir + "/" + Hash128{hasher.Digest64(), 0}.ToHex().substr(16);
  }
  return store::BlockStore::Open(params);
}

// --preload: prompts (strings) or chat requests ({"messages": [...]}).
Result<std::vector<conversation::GenerateRequest>> ReadPreloads(const std::string& path) {
  KV_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  Result<Json> json = ParseJson(text);
  if (!json.ok() || !json->is_array()) {
    return InvalidArgumentError("--preload " + path + ": expected a JSON array of prompts");
  }
  std::vector<conversation::GenerateRequest> requests;
  for (const Json& item : *json) {
    conversation::GenerateRequest request;
    if (item.is_string()) {
      request.raw_prompt = item.get<std::string>();
    } else {
      Result<OpenAiRequest> chat = ParseChatCompletionRequest(item);
      if (!chat.ok()) return chat.status().WithPrefix("--preload " + path);
      request = std::move(chat->generate);
    }
    requests.push_back(std::move(request));
  }
  return requests;
}

// --embedding-model: its own model and context, on the GPUs when the generation model is.
Result<std::unique_ptr<conversation::LlamaEmbedder>> OpenEmbedder(const ServerConfig& config) {
  if (config.embedding_model.empty()) return std::unique_ptr<conversation::LlamaEmbedder>();
  KV_ASSIGN_OR_RETURN(
      std::unique_ptr<conversation::LlamaEmbedder> embedder,
      conversation::LlamaEmbedder::Open({.path = config.embedding_model,
                                         .n_threads = config.threads,
                                         .n_gpu_layers = config.gpus > 0 ? -1 : 0}));
  const engine::EmbeddingModel& model = embedder->model();
  KV_LOG(kInfo) << "chunk search: BM25 + dense with " << model.name() << " (" << model.dim()
                << " dimensions, " << engine::EmbeddingPoolingName(model.pooling()) << " pooling)";
  return embedder;
}

}  // namespace

Result<std::unique_ptr<Server>> Server::Create(const ServerConfig& config) {
  KV_RETURN_IF_ERROR(Validate(config));
  KV_ASSIGN_OR_RETURN(engine::KvCacheType cache_type,
                      engine::ParseKvCacheType(config.kv_cache_dtype));
  auto impl = std::make_unique<Impl>();
  engine::ModelLoadParams load;
  load.path = config.model_path;
  load.n_gpu_layers = config.gpus > 0 ? -1 : 0;
  load.n_gpus = config.gpus;
  KV_ASSIGN_OR_RETURN(impl->model, engine::Model::Load(load));

  // Every running conversation and as many parked ones keep their KV on the device.
  const int n_sequences = 2 * config.conversation_threads;
  const int cells_per_sequence = config.max_model_len > 0 ? config.max_model_len : config.window;
  engine::ContextParams context_params;
  context_params.n_ctx = static_cast<uint32_t>(cells_per_sequence) * n_sequences;
  context_params.n_seq_max = static_cast<uint32_t>(n_sequences);
  context_params.n_threads = config.threads;
  context_params.cache_type = cache_type;
  context_params.kv_unified = config.kv_unified;
  KV_ASSIGN_OR_RETURN(impl->context, engine::Context::Create(*impl->model, context_params));
  KV_ASSIGN_OR_RETURN(conversation::RestorePolicy restore,
                      conversation::ParseRestorePolicy(config.restore));
  KV_ASSIGN_OR_RETURN(impl->block_store, OpenBlockStore(config, *impl->context));
  KV_ASSIGN_OR_RETURN(impl->journal,
                      conversation::Journal::Open(config.data_dir + "/conversations"));
  KV_ASSIGN_OR_RETURN(impl->sessions,
                      conversation::SessionStore::Open(config.data_dir + "/sessions"));
  impl->index_tokenizer = std::make_unique<engine::Tokenizer>(*impl->model);
  KV_ASSIGN_OR_RETURN(impl->embedder, OpenEmbedder(config));
  memory::ChunkIndexOptions index_options;
  index_options.embedder = impl->embedder.get();
  index_options.path = config.data_dir + "/index.db";
  index_options.detokenize = [tokenizer =
                                  impl->index_tokenizer.get()](std::span<const int32_t> tokens) {
    return tokenizer->Detokenize(tokens, /*render_special=*/false);
  };
  KV_ASSIGN_OR_RETURN(impl->index, memory::ChunkIndex::Open(std::move(index_options)));
  if (const Result<memory::ChunkIndexStats> index_stats = impl->index->Stats(false);
      index_stats.ok() && index_stats->vectors_dropped > 0) {
    KV_LOG(kWarning) << "chunk index: " << index_stats->vectors_dropped
                     << " chunk embeddings made by another embedding model were dropped; their "
                        "chunks are found by BM25 only";
  }
  KV_ASSIGN_OR_RETURN(impl->knowledge,
                      memory::KnowledgeStore::Open(config.data_dir + "/knowledge.db"));
  KV_ASSIGN_OR_RETURN(impl->scheduler,
                      engine::Scheduler::Start(impl->context.get(), *impl->model,
                                               {.prefill_chunk = config.prefill_chunk}));
  conversation::ManagerParams manager_params;
  manager_params.window = std::min(config.window, cells_per_sequence);
  manager_params.max_generation = config.max_generation;
  manager_params.threads = config.conversation_threads;
  manager_params.queue = config.conversation_queue;
  manager_params.n_sequences = n_sequences;
  manager_params.n_stream = impl->context->n_stream();
  manager_params.cache_size = config.cache_size;
  manager_params.restore = restore;
  manager_params.recall_budget = config.recall_budget;
  manager_params.recall_min_score = config.recall_min_score;
  manager_params.fog_alpha = config.fog_alpha;
  manager_params.max_recalls = config.max_recalls;
  if (!config.hedge_phrases.empty()) manager_params.hedge_phrases = config.hedge_phrases;
  impl->manager = std::make_unique<conversation::ConversationManager>(
      *impl->model, impl->scheduler.get(), manager_params,
      conversation::ManagerDeps{.store = impl->block_store.get(),
                                .journal = impl->journal.get(),
                                .sessions = impl->sessions.get(),
                                .index = impl->index.get(),
                                .knowledge = impl->knowledge.get()});
  if (!config.preload_path.empty()) {
    KV_ASSIGN_OR_RETURN(std::vector<conversation::GenerateRequest> preloads,
                        ReadPreloads(config.preload_path));
    KV_RETURN_IF_ERROR(impl->manager->Preload(std::move(preloads)));
  }
  impl->auth = std::make_unique<ApiKeyAuth>(config.api_keys);

  ServerState& state = impl->state;
  state.config = config;
  state.model_id = impl->model->info().name;
  state.system_fingerprint = "fp_" + impl->model->fingerprint().ToHex().substr(0, 12);
  state.model = impl->model.get();
  state.scheduler = impl->scheduler.get();
  state.manager = impl->manager.get();
  state.block_store = impl->block_store.get();
  state.metrics = &impl->metrics;
  state.auth = impl->auth.get();
  state.knowledge = impl->knowledge.get();
  state.index = impl->index.get();
  state.embedding_model = impl->embedder ? &impl->embedder->model() : nullptr;
  state.started_at = std::chrono::steady_clock::now();

  httplib::Server& http = impl->http;
  const int n_http_threads = HttpThreads(config);
  http.new_task_queue = [n_http_threads] { return new httplib::ThreadPool(n_http_threads); };
  http.set_payload_max_length(static_cast<size_t>(config.max_body_bytes));
  // httplib calls this for every response >= 400; kvault's own errors already have a body.
  http.set_error_handler(httplib::Server::HandlerWithResponse(
      [](const httplib::Request&, httplib::Response& response) {
        if (!response.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
        const HttpError error = HttpErrorForStatus(response.status);
        response.set_content(DumpJson(ErrorJson(error)), "application/json");
        return httplib::Server::HandlerResponse::Handled;
      }));
  http.set_exception_handler(
      [](const httplib::Request&, httplib::Response& response, std::exception_ptr) {
        SendError(response, InternalError("unexpected error while handling the request"));
      });
  DefineMetrics(state);
  DefineCacheMetrics(state);
  AddOpenAiRoutes(http, state);
  AddConversationRoutes(http, state);
  AddHealthRoutes(http, state);
  AddCacheRoutes(http, state);
  AddSessionRoutes(http, state);
  AddDashboardRoutes(http, state);
  AddKnowledgeRoutes(http, state);
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Server::~Server() {
  Stop();
  impl_->manager.reset();
  impl_->scheduler.reset();
  impl_->block_store.reset();  // finishes queued disk writes
}

Status Server::Bind() {
  const ServerConfig& config = impl_->state.config;
  const int port = config.port == 0
                       ? impl_->http.bind_to_any_port(config.host)
                       : (impl_->http.bind_to_port(config.host, config.port) ? config.port : -1);
  if (port <= 0) {
    return UnavailableError("cannot listen on " + config.host + ":" + std::to_string(config.port) +
                            " (address in use or not available)");
  }
  impl_->port = port;
  return Status::Ok();
}

Status Server::Serve() {
  KV_LOG(kInfo) << "kvault serving " << impl_->state.model_id << " on http://"
                << impl_->state.config.host << ":" << impl_->port << " (window "
                << impl_->state.config.window << ", " << impl_->state.config.conversation_threads
                << " conversation threads)";
  if (!impl_->http.listen_after_bind()) return UnavailableError("the HTTP listener failed");
  return Status::Ok();
}

void Server::Stop() {
  if (!impl_->manager) return;
  impl_->manager->Shutdown();
  // Let running generations finish within the grace period, then cancel what is left.
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::duration<double>(impl_->state.config.shutdown_grace_seconds);
  while (impl_->manager->stats().admission.running > 0 &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  impl_->scheduler->Stop();
  impl_->http.stop();
}

int Server::port() const { return impl_->port; }

}  // namespace kvault::server
