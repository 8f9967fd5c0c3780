// kvault's conversation routes: POST /v1/conversations/end and /v1/conversations/list.
#include "kvault/server/http_route.h"
#include "kvault/server/routes.h"

namespace kvault::server {
namespace {

Json ManagerStatsJson(const ServerState& state) {
  const conversation::ManagerStats stats = state.manager->stats();
  const store::BlockStoreStats cache = state.block_store->stats();
  const double kv_memory_mb = static_cast<double>(cache.ram.bytes) / (1 << 20);
  return {{"active_conversations", stats.admission.running},
          {"queued_requests", stats.admission.waiting},
          {"max_threads", stats.admission.max_running},
          {"max_queue", stats.admission.max_waiting},
          {"rejected_requests", stats.admission.rejected},
          {"cache_size_per_conversation", state.config.cache_size},
          {"conversations", stats.conversations},
          {"total_conversations", stats.total_conversations},
          {"ended_conversations", stats.ended_conversations},
          {"total_evictions", stats.sequences.evictions},
          {"cache_hits", stats.sequences.hits},
          {"cache_misses", stats.sequences.misses},
          {"active_tokens", stats.active_tokens},
          {"active_index_entries", 0},
          {"active_memory_mb", kv_memory_mb}};
}

}  // namespace

void AddConversationRoutes(httplib::Server& http, ServerState& state) {
  AddRoute(http, state, "POST", "/v1/conversations/end", "conversations_end", RouteAuth::kRequired,
           [&state](RouteContext& context) {
             Result<Json> body = RequestJson(context.request);
             if (!body.ok()) return SendError(context.response, body.status());
             Result<std::optional<std::string>> id =
                 OptionalString(*body, "conversation_id", "conversation_id");
             if (!id.ok()) return SendError(context.response, id.status());
             if (!id->has_value() || (*id)->empty()) {
               return SendError(context.response,
                                InvalidArgumentError("'conversation_id' is required"));
             }
             Status ended = state.manager->End(context.scope, **id);
             if (!ended.ok()) return SendError(context.response, ended);
             SendJson(context.response, {{"status", "ended"}, {"conversation_id", **id}});
           });
  AddRoute(http, state, "POST", "/v1/conversations/list", "conversations_list",
           RouteAuth::kRequired, [&state](RouteContext& context) {
             Json conversations = Json::array();
             for (const conversation::ConversationInfo& info : state.manager->List(context.scope)) {
               conversations.push_back({{"conversation_id", info.conversation_id},
                                        {"tokens", info.tokens},
                                        {"turns", info.turns},
                                        {"index_entries", info.index_entries},
                                        {"device_tokens", info.device_tokens},
                                        {"idle_seconds", info.idle_seconds}});
             }
             SendJson(context.response,
                      {{"conversations", conversations}, {"stats", ManagerStatsJson(state)}});
           });
}

}  // namespace kvault::server
