// GET /health (no API key needed) and GET /metrics (Prometheus text).
#include <atomic>
#include <chrono>

#include "kvault/build_info.h"
#include "kvault/server/http_route.h"
#include "kvault/server/routes.h"

namespace kvault::server {
namespace {

// The chunk index: BM25 only, or BM25 fused with dense search (and with which model).
Json IndexStatsJson(const ServerState& state) {
  if (state.index == nullptr) return {{"status", "not configured"}};
  Json json = {{"search", state.embedding_model == nullptr ? "bm25" : "bm25+dense"}};
  if (const engine::EmbeddingModel* model = state.embedding_model; model != nullptr) {
    json["embedding_model"] = {{"name", model->name()},
                               {"path", model->model().path()},
                               {"dim", model->dim()},
                               {"pooling", engine::EmbeddingPoolingName(model->pooling())}};
  }
  const Result<memory::ChunkIndexStats> stats = state.index->Stats(/*with_fts_bytes=*/false);
  if (!stats.ok()) {
    json["status"] = "error";
    json["error"] = stats.status().ToString();
    return json;
  }
  json["status"] = "ok";
  json["conversations"] = stats->n_conversations;
  json["chunks"] = stats->n_chunks;
  json["db_bytes"] = stats->db_bytes;
  json["vectors_loaded"] = stats->vectors;
  json["vectors_dropped_at_start"] = stats->vectors_dropped;
  json["embedding_failures"] = stats->embedding_failures;
  return json;
}

// --upstream: whether it answers, and what went through it. Asked at most once a second
// (a load balancer polls /health), by one caller at a time with a 1 s bound; the others
// answer at once with what the last probe or request found.
Json UpstreamJson(const ServerState& state) {
  if (state.upstream == nullptr) return {{"status", "not configured"}};
  static std::atomic<bool> probing{false};
  static std::atomic<int64_t> last_probe_ms{0};
  const int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::steady_clock::now().time_since_epoch())
                             .count();
  if (now_ms - last_probe_ms.load() >= 1000 && !probing.exchange(true)) {
    last_probe_ms.store(now_ms);
    (void)state.upstream->Models(std::chrono::milliseconds(1000));
    probing.store(false);
  }
  const upstream::UpstreamStats stats = state.upstream->stats();
  Json json = {{"status", stats.up ? "ok" : "down"},
               {"url", state.upstream->endpoint().ToString()},
               {"model", state.upstream->model()},
               {"requests", stats.requests},
               {"errors", stats.errors}};
  if (!stats.up) json["error"] = stats.last_error;
  return json;
}

// The shared Redis: reachable or not, and what went through it.
Json RemoteJson(const ServerState& state) {
  if (state.remote == nullptr) return {{"status", "not configured"}};
  const store::RedisClientStats redis = state.remote->client().stats();
  const conversation::RemoteJournalStats journal = state.remote->stats();
  // Up until a command fails: a fresh replica that has sent nothing yet is not degraded.
  const bool down = !redis.up && redis.errors > 0;
  Json json = {{"status", down ? "degraded" : "ok"},
               {"url", state.remote->client().url().Redacted()},
               {"commands", redis.commands},
               {"errors", redis.errors},
               {"reconnects", redis.reconnects},
               {"journal_appends", journal.appends},
               {"journal_append_errors", journal.append_errors},
               {"stale_writes_refused", journal.stale_refused},
               {"resyncs", journal.resyncs},
               {"adopted_conversations", journal.adoptions},
               {"lease_waits", journal.lease_waits},
               {"lease_conflicts", journal.lease_conflicts},
               {"leases_held", journal.leases_held}};
  if (down) {
    json["error"] = redis.last_error;
    json["down_seconds"] = redis.down_seconds;
  }
  return json;
}

// Each area of the data folder that failed to be written (base/storage_health.h).
Json StorageJson(const ServerState& state) {
  Json json = Json::object();
  const auto areas = state.storage_health->Snapshot();
  for (size_t i = 0; i < areas.size(); ++i) {
    const StorageAreaState& area = areas[i];
    Json entry = {{"failing", area.failing}, {"failed_writes", area.failures}};
    if (area.failing) {
      entry["error"] = area.error;
      entry["failing_since"] = area.failing_since;
    }
    json[std::string(StorageAreaName(static_cast<StorageArea>(i)))] = std::move(entry);
  }
  return json;
}

// How the device KV was sized: by --window and threads, or by a memory budget
// (--kv-cache-memory, --gpu-memory-utilization: cli/serve_options.cc).
Json KvSizingJson(const ServerConfig& config) {
  const int64_t sequences = conversation::ContextSequences(config);
  const int64_t cells = config.max_model_len > 0 ? config.max_model_len : config.window;
  Json json = {{"sized_by", config.kv_budget_bytes > 0 ? "memory" : "window"},
               {"window", config.window},
               {"sequences", sequences},
               {"pinned_sequences", config.pinned_sequences},
               {"cells", cells * sequences},
               {"kv_cache_dtype", config.kv_cache_dtype}};
  if (config.kv_budget_bytes > 0) {
    json["budget_bytes"] = config.kv_budget_bytes;
    json["bytes_per_token"] = config.kv_bytes_per_token;
  }
  return json;
}

}  // namespace

void DefineMetrics(ServerState& state) {
  MetricsRegistry& m = *state.metrics;
  m.DefineCounter("kvault_requests_total", "HTTP requests by route and status",
                  {"route", "status"});
  m.DefineCounter("kvault_prompt_tokens_total", "Prompt tokens of finished generations");
  m.DefineCounter("kvault_cached_prompt_tokens_total",
                  "Prompt tokens whose KV was reused instead of recomputed");
  m.DefineCounter("kvault_completion_tokens_total", "Generated tokens");
  m.DefineCounter("kvault_generations_total", "Generations by finish reason", {"reason"});
  m.DefineCounter("kvault_cancelled_requests_total",
                  "Streams stopped because the client disconnected");
  m.DefineHistogram("kvault_time_to_first_token_seconds",
                    "Request arrival to the first generated token", LatencyBuckets());
  m.DefineHistogram("kvault_inter_token_latency_seconds",
                    "Time between consecutive streamed pieces of text", LatencyBuckets());
  m.DefineHistogram("kvault_request_duration_seconds", "Request arrival to the last token",
                    LatencyBuckets());
  m.DefineGauge("kvault_queue_depth", "Requests waiting for a conversation thread");
  m.DefineGauge("kvault_running_requests", "Requests holding a conversation thread");
  m.DefineGauge("kvault_active_conversations", "Conversations the server holds");
  m.DefineGauge("kvault_rejected_requests", "Requests refused with 503 since start");
  m.DefineGauge("kvault_queue_timeouts",
                "Requests that waited --queue-timeout for a thread and were refused (503)");
  m.DefineGauge("kvault_sequences", "Sequences of the llama context by state", {"state"});
  m.DefineGauge("kvault_scheduler_steps", "llama_decode calls since start");
  m.DefineGauge("kvault_storage_failing",
                "1 while writes to this area of the data folder fail (full or read-only disk)",
                {"area"});
  m.DefineGauge("kvault_storage_failed_writes", "Writes to this area that failed since start",
                {"area"});
  m.AddCollector([&state](MetricsRegistry& registry) {
    const conversation::ManagerStats stats = state.manager->stats();
    registry.Set("kvault_queue_depth", {}, static_cast<double>(stats.admission.waiting));
    registry.Set("kvault_running_requests", {}, static_cast<double>(stats.admission.running));
    registry.Set("kvault_active_conversations", {}, static_cast<double>(stats.conversations));
    registry.Set("kvault_rejected_requests", {}, static_cast<double>(stats.admission.rejected));
    registry.Set("kvault_queue_timeouts", {}, static_cast<double>(stats.admission.timed_out));
    const auto& seq = stats.sequences;
    registry.Set("kvault_sequences", {"running"}, static_cast<double>(seq.n_pinned));
    registry.Set("kvault_sequences", {"parked"}, static_cast<double>(seq.n_parked));
    registry.Set("kvault_sequences", {"free"},
                 static_cast<double>(seq.n_sequences - seq.n_pinned - seq.n_parked));
    if (state.scheduler != nullptr) {
      registry.Set("kvault_scheduler_steps", {},
                   static_cast<double>(state.scheduler->stats().steps));
    }
    const auto areas = state.storage_health->Snapshot();
    for (size_t i = 0; i < areas.size(); ++i) {
      const std::string area(StorageAreaName(static_cast<StorageArea>(i)));
      registry.Set("kvault_storage_failing", {area}, areas[i].failing ? 1 : 0);
      registry.Set("kvault_storage_failed_writes", {area}, static_cast<double>(areas[i].failures));
    }
  });
}

void AddHealthRoutes(httplib::Server& http, ServerState& state) {
  AddRoute(
      http, state, "GET", "/health", "health", RouteAuth::kPublic, [&state](RouteContext& context) {
        const conversation::ManagerStats stats = state.manager->stats();
        const engine::SchedulerStats scheduler =
            state.scheduler != nullptr ? state.scheduler->stats() : engine::SchedulerStats{};
        const double uptime =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - state.started_at)
                .count();
        // Degraded: serving goes on, but something cannot be written (README: disk
        // faults); still 200, so load balancers keep sending reads and stateless work.
        const Json upstream = UpstreamJson(state);
        SendJson(context.response, {{"status", state.storage_health->degraded() ||
                                                       RemoteJson(state)["status"] == "degraded" ||
                                                       upstream["status"] == "down"
                                                   ? "degraded"
                                                   : "ok"},
                                    {"remote", RemoteJson(state)},
                                    {"upstream", upstream},
                                    {"service", "kvault"},
                                    {"version", kKvaultVersion},
                                    {"storage", StorageJson(state)},
                                    {"model", state.model_id},
                                    {"uptime_seconds", uptime},
                                    {"manager",
                                     {{"running", stats.admission.running},
                                      {"waiting", stats.admission.waiting},
                                      {"max_threads", stats.admission.max_running},
                                      {"max_queue", stats.admission.max_waiting},
                                      {"rejected", stats.admission.rejected},
                                      {"timed_out", stats.admission.timed_out},
                                      {"conversations", stats.conversations}}},
                                    {"cache",
                                     {{"sequences", stats.sequences.n_sequences},
                                      {"parked", stats.sequences.n_parked},
                                      {"pinned", stats.sequences.n_reserved},
                                      {"max_pinned", stats.sequences.max_reserved},
                                      {"hits", stats.sequences.hits},
                                      {"misses", stats.sequences.misses},
                                      {"evictions", stats.sequences.evictions}}},
                                    {"kv_cache", CacheStatsJson(state)},
                                    {"kv_sizing", KvSizingJson(state.config)},
                                    {"scheduler",
                                     {{"active", scheduler.active},
                                      {"steps", scheduler.steps},
                                      {"prompt_tokens", scheduler.prompt_tokens},
                                      {"generated_tokens", scheduler.generated_tokens}}},
                                    {"knowledge", KnowledgeStatsJson(state)},
                                    {"index", IndexStatsJson(state)}});
      });
  AddRoute(http, state, "GET", "/metrics", "metrics", RouteAuth::kRequired,
           [&state](RouteContext& context) {
             context.response.set_content(state.metrics->Export(),
                                          "text/plain; version=0.0.4; charset=utf-8");
           });
}

}  // namespace kvault::server
