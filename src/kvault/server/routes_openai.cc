// The OpenAI routes: POST /v1/chat/completions, POST /v1/completions, GET /v1/models. A chat or
// completion request may name its conversation by the X-Conversation-Id header (http_route.h).
#include <memory>

#include "kvault/base/log.h"
#include "kvault/server/http_errors.h"
#include "kvault/server/http_route.h"
#include "kvault/server/openai_schema.h"
#include "kvault/server/routes.h"

namespace kvault::server {
namespace {

using conversation::ConversationManager;
using conversation::GenerateResult;

void RecordGeneration(ServerState& state, const GenerateResult& result) {
  if (state.analytics != nullptr) {
    state.analytics->Record({.ts_ms = result.start_unix_ms,
                             .conversation = result.conversation_id,
                             .key = result.scope,
                             .prefix = result.prefix,
                             .prompt_tokens = result.prompt_tokens,
                             .completion_tokens = result.completion_tokens,
                             .trie_matched_tokens = result.trie_matched_tokens,
                             .cached_tokens = result.cached_tokens,
                             .ttft_ms = result.first_token_ms,
                             .total_ms = result.total_ms,
                             .finish_reason = std::string(FinishReasonName(result.finish_reason))});
  }
  MetricsRegistry& m = *state.metrics;
  m.Increment("kvault_prompt_tokens_total", {}, result.prompt_tokens);
  m.Increment("kvault_cached_prompt_tokens_total", {}, result.cached_tokens);
  m.Increment("kvault_completion_tokens_total", {}, result.completion_tokens);
  m.Increment("kvault_generations_total", {std::string(FinishReasonName(result.finish_reason))});
  if (result.first_token_ms >= 0) {
    m.Observe("kvault_time_to_first_token_seconds", {}, result.first_token_ms / 1000.0);
  }
  for (size_t i = 1; i < result.text_times_ms.size(); ++i) {
    m.Observe("kvault_inter_token_latency_seconds", {},
              (result.text_times_ms[i] - result.text_times_ms[i - 1]) / 1000.0);
  }
  m.Observe("kvault_request_duration_seconds", {}, result.total_ms / 1000.0);
}

// Writes a reply as OpenAI server-sent events while it is generated.
class SseReplySink : public conversation::ReplySink {
 public:
  SseReplySink(httplib::DataSink* sink, const ResponseMeta& meta, bool chat, bool include_usage)
      : sink_(sink), meta_(meta), chat_(chat), include_usage_(include_usage) {}

  bool Start() {
    if (!chat_) return true;
    return Write(
        ChatChunkJson(meta_, {{"role", "assistant"}, {"content", ""}}, nullptr, include_usage_));
  }
  bool OnText(std::string_view text) override {
    const std::string piece(text);
    return Write(chat_ ? ChatChunkJson(meta_, {{"content", piece}}, nullptr, include_usage_)
                       : CompletionChunkJson(meta_, piece, nullptr, include_usage_));
  }
  void Finish(const GenerateResult& result) {
    const std::string reason = FinishReasonText(result.finish_reason);
    Write(chat_ ? ChatChunkJson(meta_, Json::object(), reason, include_usage_)
                : CompletionChunkJson(meta_, "", reason, include_usage_));
    if (include_usage_) {
      Write(chat_ ? ChatUsageChunkJson(meta_, result) : CompletionUsageChunkJson(meta_, result));
    }
  }
  // OpenAI reports an error after a stream has started as an event carrying the error.
  void Fail(const Status& status) { Write(ErrorJson(ToHttpError(status))); }
  void Done() {
    WriteRaw("data: [DONE]\n\n");
    if (alive_) sink_->done();
  }
  bool alive() const { return alive_; }

 private:
  bool Write(const Json& event) { return WriteRaw("data: " + DumpJson(event) + "\n\n"); }
  bool WriteRaw(const std::string& text) {
    if (alive_) alive_ = sink_->write(text.data(), text.size());
    return alive_;
  }

  httplib::DataSink* sink_;
  const ResponseMeta meta_;
  const bool chat_;
  const bool include_usage_;
  bool alive_ = true;
};

struct StreamJob {
  ConversationManager::PendingPtr pending;
  ResponseMeta meta;
  bool chat = true;
  bool include_usage = false;
};

void HandleGeneration(ServerState& state, RouteContext& context, bool chat) {
  Result<Json> body = RequestJsonWithConversationId(context.request);
  if (!body.ok()) return SendError(context.response, body.status());
  Result<OpenAiRequest> request =
      chat ? ParseChatCompletionRequest(*body) : ParseCompletionRequest(*body);
  if (!request.ok()) return SendError(context.response, request.status());
  request->generate.scope = context.scope;
  Result<ConversationManager::PendingPtr> pending =
      state.manager->Prepare(std::move(request->generate));
  if (!pending.ok()) return SendError(context.response, pending.status());

  const ResponseMeta meta{NewResponseId(chat ? "chatcmpl" : "cmpl"), state.model_id, UnixSeconds(),
                          state.system_fingerprint};
  if (!request->stream) {
    Result<GenerateResult> result = state.manager->Run(std::move(pending).value(), nullptr);
    if (!result.ok()) return SendError(context.response, result.status());
    RecordGeneration(state, *result);
    return SendJson(context.response,
                    chat ? ChatCompletionJson(meta, *result) : CompletionJson(meta, *result));
  }

  auto job = std::make_shared<StreamJob>();
  job->pending = std::move(pending).value();
  job->meta = meta;
  job->chat = chat;
  job->include_usage = request->include_usage;
  // The stream starts after this handler returns, with 200: say so now, so the request is
  // counted by that status (httplib leaves it -1 until then).
  context.response.status = 200;
  context.response.set_header("Cache-Control", "no-cache");
  context.response.set_header("X-Accel-Buffering", "no");
  context.response.set_chunked_content_provider(
      "text/event-stream", [&state, job](size_t /*offset*/, httplib::DataSink& sink) {
        SseReplySink sse(&sink, job->meta, job->chat, job->include_usage);
        sse.Start();
        Result<GenerateResult> result = state.manager->Run(std::move(job->pending), &sse);
        if (result.ok()) {
          RecordGeneration(state, *result);
          if (result->finish_reason == engine::FinishReason::kCancelled) {
            state.metrics->Increment("kvault_cancelled_requests_total");
          } else {
            sse.Finish(*result);
          }
        } else {
          KV_LOG(kWarning) << "stream " << job->meta.id
                           << " failed: " << result.status().ToString();
          sse.Fail(result.status());
        }
        sse.Done();
        return sse.alive();
      });
}

}  // namespace

void AddOpenAiRoutes(httplib::Server& http, ServerState& state) {
  AddRoute(http, state, "POST", "/v1/chat/completions", "chat_completions", RouteAuth::kRequired,
           [&state](RouteContext& context) { HandleGeneration(state, context, /*chat=*/true); });
  AddRoute(http, state, "POST", "/v1/completions", "completions", RouteAuth::kRequired,
           [&state](RouteContext& context) { HandleGeneration(state, context, /*chat=*/false); });
  AddRoute(http, state, "GET", "/v1/models", "models", RouteAuth::kRequired,
           [&state](RouteContext& context) {
             const engine::ModelInfo& info = state.model->info();
             Json model = {{"id", state.model_id},
                           {"object", "model"},
                           {"created", UnixSeconds()},
                           {"owned_by", "kvault"},
                           {"max_model_len", state.config.cache_size},
                           {"window", state.config.window},
                           {"architecture", info.architecture},
                           {"n_params", info.n_params},
                           {"fingerprint", state.model->fingerprint().ToHex()}};
             if (state.upstream != nullptr) {
               // Generated there: its name, and kvault's window in front of it.
               model["owned_by"] = "upstream";
               model["upstream"] = {{"url", state.upstream->endpoint().ToString()},
                                    {"model", state.upstream->model()}};
             }
             SendJson(context.response, {{"object", "list"}, {"data", Json::array({model})}});
           });
}

}  // namespace kvault::server
