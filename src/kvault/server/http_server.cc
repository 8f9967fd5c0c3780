#include "kvault/server/http_server.h"

#include <algorithm>
#include <atomic>
#include <set>
#include <thread>

#include <httplib.h>

#include "kvault/base/file.h"
#include "kvault/base/log.h"
#include "kvault/base/status_macros.h"
#include "kvault/conversation/stack.h"
#include "kvault/engine/model.h"
#include "kvault/server/connection_threads.h"
#include "kvault/server/http_errors.h"
#include "kvault/server/http_front.h"
#include "kvault/server/http_route.h"
#include "kvault/server/openai_schema.h"
#include "kvault/server/routes.h"

namespace kvault::server {

struct Server::Impl {
  ServerState state;
  std::unique_ptr<conversation::Stack> stack;
  std::unique_ptr<analytics::AnalyticsStore> analytics;
  MetricsRegistry metrics;
  std::unique_ptr<ApiKeyAuth> auth;
  httplib::Server http;  // behind `front`, on its private socket
  std::unique_ptr<HttpFront> front;
  // Set by Stop(): a listener that ends then (even before it began, a SIGTERM right after
  // start-up) has not failed.
  std::atomic<bool> stopping{false};
};

namespace {

// Each waiting request holds an HTTP worker thread, so the pool must hold every running and
// queued request, plus room for /health, /metrics and the 503 answers themselves.
int HttpThreads(const ServerConfig& config) {
  return config.conversation_threads + config.conversation_queue + 16;
}

Status Validate(const ServerConfig& c) {
  // The stack's own settings are checked by Stack::Build.
  if (c.max_body_bytes < 1024) return InvalidArgumentError("--max-body-mb is too small");
  if (!c.upstream_url.empty() && !c.preload_path.empty()) {
    return InvalidArgumentError(
        "--preload prefills kvault's own device; with --upstream the upstream's prefix cache "
        "warms with the first requests");
  }
  if (!(c.analytics_retention_days > 0) || c.analytics_max_rows < 1) {
    return InvalidArgumentError("--analytics-retention-days and --analytics-max-rows must be > 0");
  }
  if (!(c.header_timeout_seconds > 0) || !(c.body_timeout_seconds > 0)) {
    return InvalidArgumentError("--header-timeout and --body-timeout must be positive");
  }
  return Status::Ok();
}

struct Preloads {
  std::vector<conversation::GenerateRequest> requests;
  std::vector<conversation::NamedPrefix> named;
};

// One named prefix of --preload (zKV's form): {"name", "content", "preload"?}.
Result<conversation::NamedPrefix> ReadNamedPrefix(const Json& item, size_t index) {
  const std::string where = "entry " + std::to_string(index);
  conversation::NamedPrefix prefix;
  for (auto it = item.begin(); it != item.end(); ++it) {
    if (it.key() == "name" && it->is_string()) {
      prefix.name = it->get<std::string>();
    } else if (it.key() == "content" && it->is_string()) {
      prefix.content = it->get<std::string>();
    } else if (it.key() == "preload" && it->is_boolean()) {
      prefix.preload = it->get<bool>();
    } else {
      return InvalidArgumentError(where + ": '" + it.key() +
                                  "' must be one of name (string), content (string), "
                                  "preload (boolean)");
    }
  }
  if (prefix.name.empty() || prefix.content.empty()) {
    return InvalidArgumentError(where + ": a named prefix needs a non-empty name and content");
  }
  return prefix;
}

// --preload: prompts (strings), chat requests ({"messages": [...]}) or named prefixes
// ({"name", "content", "preload"}).
Result<Preloads> ReadPreloads(const std::string& path) {
  KV_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  Result<Json> json = ParseJson(text);
  if (!json.ok() || !json->is_array()) {
    return InvalidArgumentError("--preload " + path + ": expected a JSON array of prompts");
  }
  Preloads preloads;
  std::set<std::string> names;
  for (size_t i = 0; i < json->size(); ++i) {
    const Json& item = (*json)[i];
    if (item.is_object() && item.contains("content") && !item.contains("messages")) {
      Result<conversation::NamedPrefix> prefix = ReadNamedPrefix(item, i);
      if (!prefix.ok()) return prefix.status().WithPrefix("--preload " + path);
      if (!names.insert(prefix->name).second) {
        return InvalidArgumentError("--preload " + path + ": the name '" + prefix->name +
                                    "' is given twice");
      }
      preloads.named.push_back(std::move(prefix).value());
      continue;
    }
    conversation::GenerateRequest request;
    if (item.is_string()) {
      request.raw_prompt = item.get<std::string>();
    } else {
      Result<OpenAiRequest> chat = ParseChatCompletionRequest(item);
      if (!chat.ok()) return chat.status().WithPrefix("--preload " + path);
      request = std::move(chat->generate);
    }
    preloads.requests.push_back(std::move(request));
  }
  return preloads;
}

}  // namespace

Result<std::unique_ptr<Server>> Server::Create(const ServerConfig& config) {
  KV_RETURN_IF_ERROR(Validate(config));
  auto impl = std::make_unique<Impl>();
  KV_ASSIGN_OR_RETURN(impl->stack, conversation::Stack::Build(config));
  conversation::Stack& stack = *impl->stack;
  if (config.analytics) {
    KV_ASSIGN_OR_RETURN(impl->analytics, analytics::AnalyticsStore::Open(
                                             {.path = config.data_dir + "/analytics.db",
                                              .retention_days = config.analytics_retention_days,
                                              .max_rows = config.analytics_max_rows}));
  }
  if (!config.preload_path.empty()) {
    KV_ASSIGN_OR_RETURN(Preloads preloads, ReadPreloads(config.preload_path));
    KV_RETURN_IF_ERROR(stack.manager().Preload(std::move(preloads.requests)));
    KV_RETURN_IF_ERROR(stack.manager().PreloadNamed(preloads.named));
  }
  impl->auth = std::make_unique<ApiKeyAuth>(config.api_keys);

  ServerState& state = impl->state;
  state.config = config;
  state.model_id = stack.model().info().name;
  state.system_fingerprint = "fp_" + stack.model().fingerprint().ToHex().substr(0, 12);
  state.model = &stack.model();
  state.scheduler = stack.scheduler();
  state.upstream = stack.upstream();
  state.analytics = impl->analytics.get();
  state.manager = &stack.manager();
  state.block_store = &stack.block_store();
  state.remote = stack.remote_journal();
  state.remote_sessions = stack.remote_sessions();
  state.remote_knowledge = stack.remote_knowledge();
  state.metrics = &impl->metrics;
  state.auth = impl->auth.get();
  state.knowledge = &stack.knowledge();
  state.storage_health = &stack.storage_health();
  state.index = &stack.index();
  state.embedding_model = stack.embedding_model();
  state.started_at = std::chrono::steady_clock::now();

  httplib::Server& http = impl->http;
  // Every connection gets a thread while it is open (server/connection_threads.h), in the
  // front and in httplib behind it, so idle or slowly sending clients cannot starve the
  // others, /health included; beyond what the requests need plus --max-connections, a new
  // connection gets 503 at once. The front bounds each head's and body's time; between
  // requests httplib's keep-alive timeout (5 s) applies, and a connection serves at most 100.
  const size_t max_threads =
      static_cast<size_t>(HttpThreads(config)) + static_cast<size_t>(config.max_connections);
  http.new_task_queue = [max_threads] { return new ConnectionThreads(max_threads); };
  http.set_address_family(AF_UNIX);
  http.set_keep_alive_max_count(100);
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
  AddAnalyticsRoutes(http, state);
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Server::~Server() {
  Stop();
  impl_->stack.reset();  // finishes queued disk writes
}

Status Server::Bind() {
  const ServerConfig& config = impl_->state.config;
  FrontLimits limits;
  limits.head.max_body_bytes = static_cast<uint64_t>(config.max_body_bytes);
  limits.head_timeout_s = config.header_timeout_seconds;
  limits.body_timeout_s = config.body_timeout_seconds;
  limits.max_connections =
      static_cast<size_t>(HttpThreads(config)) + static_cast<size_t>(config.max_connections);
  KV_ASSIGN_OR_RETURN(impl_->front, HttpFront::Bind(config.host, config.port, limits));
  // A Unix socket has no port; httplib reads 0 as "find the bound TCP port" and fails.
  if (!impl_->http.bind_to_port(impl_->front->backend_address(), 1)) {
    return UnavailableError("cannot listen on the private socket " +
                            impl_->front->backend_address());
  }
  return Status::Ok();
}

Status Server::Serve() {
  KV_LOG(kInfo) << "kvault serving " << impl_->state.model_id << " on http://"
                << impl_->state.config.host << ":" << port() << " (window "
                << impl_->state.config.window << ", " << impl_->state.config.conversation_threads
                << " conversation threads)";
  bool listened = true;
  std::thread backend([this, &listened] {
    listened = impl_->http.listen_after_bind();
    if (!listened) impl_->front->Stop();
  });
  impl_->front->Serve();
  backend.join();
  if (!listened && !impl_->stopping.load()) return UnavailableError("the HTTP listener failed");
  return Status::Ok();
}

void Server::Stop() {
  impl_->stopping.store(true);
  if (!impl_->stack) return;
  conversation::ConversationManager& manager = impl_->stack->manager();
  manager.Shutdown();
  // Let running generations finish within the grace period, then cancel what is left.
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::duration<double>(impl_->state.config.shutdown_grace_seconds);
  while (manager.stats().admission.running > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (engine::Scheduler* scheduler = impl_->stack->scheduler()) scheduler->Stop();
  if (upstream::UpstreamClient* upstream = impl_->stack->upstream()) upstream->Stop();
  if (impl_->front) impl_->front->Stop();
  impl_->http.stop();
}

int Server::port() const { return impl_->front ? impl_->front->port() : 0; }

}  // namespace kvault::server
