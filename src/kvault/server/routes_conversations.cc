// kvault's conversation routes: append, search, end, list, and GET .../{id}/history. The id
// may come as the X-Conversation-Id header too (RequestJsonWithConversationId).
#include "kvault/base/status_macros.h"
#include "kvault/base/time_text.h"
#include "kvault/server/http_route.h"
#include "kvault/server/openai_schema.h"
#include "kvault/server/routes.h"

namespace kvault::server {
namespace {

constexpr double kMiB = 1 << 20;

// What active_memory_mb adds up, in MiB: the token histories in RAM, the chunk index (its
// SQLite database, which lives on disk and is cached by SQLite, plus embedding vectors in
// RAM), and the KV blocks of the RAM tier. Not the device KV cells, which llama.cpp holds
// whatever the load (window x sequences).
struct ActiveMemory {
  double tokens_mb = 0;
  double index_mb = 0;
  double kv_mb = 0;
  double total_mb() const { return tokens_mb + index_mb + kv_mb; }
};

ActiveMemory ActiveMemoryOf(const ServerState& state, const conversation::ManagerStats& stats) {
  int64_t index_bytes = 0;
  if (state.index != nullptr) {
    const Result<memory::ChunkIndexStats> index = state.index->Stats(/*with_fts_bytes=*/false);
    if (index.ok()) index_bytes = index->db_bytes;
    if (index.ok() && state.embedding_model != nullptr) {
      index_bytes += index->vectors * state.embedding_model->dim() * int64_t{sizeof(float)};
    }
  }
  return {.tokens_mb = static_cast<double>(stats.history_bytes) / kMiB,
          .index_mb = static_cast<double>(index_bytes) / kMiB,
          .kv_mb = static_cast<double>(state.block_store->stats().ram.bytes) / kMiB};
}

// The seed's (KeSSie's) names where they fit: active_conversations counts the conversations
// held, as there; requests holding a thread are running_requests.
Json ManagerStatsJson(const ServerState& state) {
  const conversation::ManagerStats stats = state.manager->stats();
  const ActiveMemory memory = ActiveMemoryOf(state, stats);
  return {{"active_conversations", stats.conversations},
          {"running_requests", stats.admission.running},
          {"queued_requests", stats.admission.waiting},
          {"max_threads", stats.admission.max_running},
          {"max_queue", stats.admission.max_waiting},
          {"rejected_requests", stats.admission.rejected},
          {"queue_timeouts", stats.admission.timed_out},
          {"cache_size_per_conversation", state.config.cache_size},
          {"conversations", stats.conversations},
          {"total_conversations", stats.total_conversations},
          {"ended_conversations", stats.ended_conversations},
          {"total_evictions", stats.sequences.evictions},
          {"cache_hits", stats.sequences.hits},
          {"cache_misses", stats.sequences.misses},
          {"active_tokens", stats.active_tokens},
          {"active_index_entries", stats.index_entries},
          {"recalled_chunks", stats.recalled_chunks},
          {"mid_generation_recalls", stats.mid_generation_recalls},
          {"active_memory_mb", memory.total_mb()},
          {"active_memory_parts_mb",
           {{"tokens", memory.tokens_mb}, {"index", memory.index_mb}, {"kv", memory.kv_mb}}}};
}

// The body's conversation_id; InvalidArgument if absent or empty.
Result<std::string> RequiredConversationId(const Json& body) {
  KV_ASSIGN_OR_RETURN(std::optional<std::string> id,
                      OptionalString(body, "conversation_id", "conversation_id"));
  if (!id || id->empty()) return InvalidArgumentError("'conversation_id' is required");
  if (id->size() > 256) return InvalidArgumentError("'conversation_id' must be 1 to 256 bytes");
  return *id;
}

void HandleAppend(ServerState& state, RouteContext& context) {
  Result<Json> body = RequestJsonWithConversationId(context.request);
  if (!body.ok()) return SendError(context.response, body.status());
  Result<std::string> id = RequiredConversationId(*body);
  if (!id.ok()) return SendError(context.response, id.status());
  Result<std::vector<engine::ChatMessage>> messages = ParseMessages(*body);
  if (!messages.ok()) return SendError(context.response, messages.status());
  Result<conversation::HistoryMode> mode = ParseHistoryMode(*body);
  if (!mode.ok()) return SendError(context.response, mode.status());
  if (Status fits = state.manager->CheckMessagesFit(*messages); !fits.ok()) {
    return SendError(context.response, fits);
  }
  Result<conversation::IngestResult> ingested =
      state.manager->history().Append(context.scope, *id, *messages, *mode);
  if (!ingested.ok()) return SendError(context.response, ingested.status());
  SendJson(context.response, {{"object", "conversation.append"},
                              {"conversation_id", *id},
                              {"new_turns", ingested->new_turns},
                              {"new_tokens", ingested->new_tokens},
                              {"replaced_history", ingested->replaced},
                              {"history", HistoryJson(*ingested)}});
}

// ISO 8601 in UTC, null for a turn recorded before turns had times.
Json TimestampJson(int64_t time) { return time > 0 ? Json(Iso8601Text(time)) : Json(nullptr); }

Json TurnsJson(const std::vector<conversation::JournalTurn>& turns, int64_t first_turn) {
  Json out = Json::array();
  for (size_t i = 0; i < turns.size(); ++i) {
    out.push_back({{"turn", first_turn + static_cast<int64_t>(i)},
                   {"role", turns[i].role},
                   {"content", turns[i].content},
                   {"timestamp", TimestampJson(turns[i].time)},
                   {"tokens", turns[i].tokens.size()}});
  }
  return out;
}

// GET /v1/conversations/{id}/history[?branch=NAME]: the turns as stored (the journal's
// text), the archived branches, and the unanswered turn if any.
void HandleHistory(ServerState& state, RouteContext& context) {
  const std::string id = context.request.matches[1].str();
  if (Status same = CheckConversationIdHeader(context.request, id); !same.ok()) {
    return SendError(context.response, same);
  }
  Result<conversation::JournalEntry> entry = state.manager->history().Read(context.scope, id);
  if (!entry.ok()) return SendError(context.response, entry.status());
  const std::string branch = context.request.get_param_value("branch");
  if (!branch.empty()) {
    for (const conversation::JournalBranch& b : entry->branches) {
      if (b.name != branch) continue;
      return SendJson(context.response, {{"object", "conversation.branch"},
                                         {"conversation_id", id},
                                         {"branch", b.name},
                                         {"from_turn", b.from_turn},
                                         {"turns", TurnsJson(b.turns, b.from_turn)}});
    }
    return SendError(context.response,
                     NotFoundError("conversation '" + id + "' has no branch '" + branch + "'"));
  }
  Json branches = Json::array();
  for (const conversation::JournalBranch& b : entry->branches) {
    branches.push_back({{"name", b.name}, {"from_turn", b.from_turn}, {"turns", b.turns.size()}});
  }
  SendJson(context.response,
           {{"object", "conversation.history"},
            {"conversation_id", id},
            {"turns", TurnsJson(entry->turns, 0)},
            {"unanswered_turn",
             entry->unanswered_turn >= 0 ? Json(entry->unanswered_turn) : Json(nullptr)},
            {"branches", branches}});
}

void HandleSearch(ServerState& state, RouteContext& context) {
  Result<Json> body = RequestJsonWithConversationId(context.request);
  if (!body.ok()) return SendError(context.response, body.status());
  Result<std::string> id = RequiredConversationId(*body);
  if (!id.ok()) return SendError(context.response, id.status());
  Result<std::optional<std::string>> query = OptionalString(*body, "query", "query");
  if (!query.ok()) return SendError(context.response, query.status());
  if (!query->has_value() || (*query)->empty()) {
    return SendError(context.response, InvalidArgumentError("'query' is required"));
  }
  Result<std::optional<int64_t>> k = OptionalInteger(*body, "k", "k");
  if (!k.ok()) return SendError(context.response, k.status());
  if (k->value_or(5) < 1 || k->value_or(5) > 100) {
    return SendError(context.response, InvalidArgumentError("'k' must be in 1..100"));
  }
  Result<int64_t> asked = ParseTimestamp(*body, "timestamp");
  if (!asked.ok()) return SendError(context.response, asked.status());
  Result<std::vector<conversation::SearchResult>> results = state.manager->history().Search(
      context.scope, *id, **query, static_cast<int>(k->value_or(5)), *asked);
  if (!results.ok()) return SendError(context.response, results.status());
  Json out = Json::array();
  for (const conversation::SearchResult& r : *results) {
    out.push_back({{"score", r.score},
                   {"text", r.text},
                   {"first_turn", r.first_turn},
                   {"last_turn", r.last_turn},
                   {"first_position", r.first_pos},
                   {"timestamp", TimestampJson(r.time)},
                   {"tokens", r.n_tokens}});
  }
  SendJson(context.response, {{"object", "list"}, {"results", out}});
}

}  // namespace

void AddConversationRoutes(httplib::Server& http, ServerState& state) {
  AddRoute(http, state, "POST", "/v1/conversations/append", "conversations_append",
           RouteAuth::kRequired, [&state](RouteContext& context) { HandleAppend(state, context); });
  AddRoute(http, state, "POST", "/v1/conversations/search", "conversations_search",
           RouteAuth::kRequired, [&state](RouteContext& context) { HandleSearch(state, context); });
  AddRoute(http, state, "POST", "/v1/conversations/end", "conversations_end", RouteAuth::kRequired,
           [&state](RouteContext& context) {
             Result<Json> body = RequestJsonWithConversationId(context.request);
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
  AddRoute(http, state, "GET", R"(/v1/conversations/([^/]{1,256})/history)",
           "conversations_history", RouteAuth::kRequired,
           [&state](RouteContext& context) { HandleHistory(state, context); });
  AddRoute(http, state, "POST", "/v1/conversations/list", "conversations_list",
           RouteAuth::kRequired, [&state](RouteContext& context) {
             Json conversations = Json::array();
             for (const conversation::ConversationInfo& info : state.manager->List(context.scope)) {
               conversations.push_back({{"conversation_id", info.conversation_id},
                                        {"tokens", info.tokens},
                                        {"turns", info.turns},
                                        {"index_entries", info.index_entries},
                                        {"dropped_turns", info.dropped_turns},
                                        {"dropped_tokens", info.dropped_tokens},
                                        {"device_tokens", info.device_tokens},
                                        {"idle_seconds", info.idle_seconds}});
             }
             SendJson(context.response,
                      {{"conversations", conversations}, {"stats", ManagerStatsJson(state)}});
           });
}

}  // namespace kvault::server
