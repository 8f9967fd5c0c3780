// The knowledge store over HTTP (memory/knowledge_store.h), scoped per API key like
// conversations:
//
//   GET  /v1/knowledge                 {"object": "list", "data": [{"topic", "facts"}],
//                                       "stats": {"topics", "facts"}}  (facts: a count)
//   GET  /v1/knowledge?topic=NAME      {"object": "list", "topic", "data": [{"key", "value"}]}
//                                      (404 if the topic has no facts)
//   POST /v1/knowledge/{topic}         body {"key", "value"} or {"facts": [{"key", "value"}]};
//                                      {"object": "knowledge.facts", "topic",
//                                       "data": [{"key", "value"}]}: what was stored
//   GET  /v1/knowledge/search?q=&k=    {"results": [{"topic", "key", "value", "score"}]},
//                                      best first; k in 1..100, default 10
//
// Topic names: memory::CheckTopicName. Keys and values are non-empty strings; storing a key
// again replaces its value.
#include <charconv>

#include "kvault/base/status_macros.h"
#include "kvault/server/http_route.h"
#include "kvault/server/routes.h"

namespace kvault::server {
namespace {

constexpr int kDefaultResults = 10;
constexpr int kMaxResults = 100;

// One {"key", "value"} object; `path` names it in messages.
Result<memory::Fact> ParseFact(const Json& item, const std::string& topic,
                               const std::string& path) {
  if (!item.is_object()) return InvalidArgumentError("'" + path + "' must be an object");
  memory::Fact fact{topic, "", "", 0};
  for (auto [name, field] : {std::pair{"key", &fact.key}, std::pair{"value", &fact.value}}) {
    const std::string field_path = path.empty() ? name : path + "." + name;
    KV_ASSIGN_OR_RETURN(std::optional<std::string> text, OptionalString(item, name, field_path));
    if (!text || text->empty()) {
      return InvalidArgumentError("'" + field_path + "' must be a non-empty string");
    }
    *field = std::move(*text);
  }
  return fact;
}

// {"key", "value"} or {"facts": [{"key", "value"}, ...]}, not both.
Result<std::vector<memory::Fact>> ParseFacts(const httplib::Request& request,
                                             const std::string& topic) {
  KV_ASSIGN_OR_RETURN(Json body, RequestJson(request));
  if (!body.is_object()) return InvalidArgumentError("the body must be a JSON object");
  if (!body.contains("facts")) {
    KV_ASSIGN_OR_RETURN(memory::Fact fact, ParseFact(body, topic, ""));
    return std::vector<memory::Fact>{std::move(fact)};
  }
  if (body.contains("key") || body.contains("value")) {
    return InvalidArgumentError("give either 'key' and 'value' or 'facts', not both");
  }
  const Json& items = body["facts"];
  if (!items.is_array() || items.empty()) {
    return InvalidArgumentError("'facts' must be a non-empty array of {\"key\", \"value\"}");
  }
  std::vector<memory::Fact> facts;
  for (size_t i = 0; i < items.size(); ++i) {
    KV_ASSIGN_OR_RETURN(memory::Fact fact,
                        ParseFact(items[i], topic, "facts[" + std::to_string(i) + "]"));
    facts.push_back(std::move(fact));
  }
  return facts;
}

// ?k=: a whole number in 1..kMaxResults, or the default if absent.
Result<int> ParseResultCount(const httplib::Request& request) {
  if (!request.has_param("k")) return kDefaultResults;
  const std::string text = request.get_param_value("k");
  int k = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), k);
  if (error != std::errc() || end != text.data() + text.size() || k < 1 || k > kMaxResults) {
    return InvalidArgumentError("'k' must be a whole number from 1 to " +
                                std::to_string(kMaxResults));
  }
  return k;
}

Json FactsJson(const std::vector<memory::Fact>& facts) {
  Json data = Json::array();
  for (const memory::Fact& fact : facts) {
    data.push_back({{"key", fact.key}, {"value", fact.value}});
  }
  return data;
}

void ListTopics(ServerState& state, RouteContext& context) {
  Result<std::vector<memory::TopicSummary>> topics = state.knowledge->Topics(context.scope);
  if (!topics.ok()) return SendError(context.response, topics.status());
  Json data = Json::array();
  int64_t n_facts = 0;
  for (const memory::TopicSummary& topic : *topics) {
    data.push_back({{"topic", topic.name}, {"facts", topic.n_facts}});
    n_facts += topic.n_facts;
  }
  SendJson(context.response, {{"object", "list"},
                              {"data", data},
                              {"stats", {{"topics", topics->size()}, {"facts", n_facts}}}});
}

void ListTopicFacts(ServerState& state, RouteContext& context, const std::string& topic) {
  if (Status valid = memory::CheckTopicName(topic); !valid.ok()) {
    return SendError(context.response, valid);
  }
  Result<std::vector<memory::Fact>> facts = state.knowledge->TopicFacts(context.scope, topic);
  if (!facts.ok()) return SendError(context.response, facts.status());
  if (facts->empty()) {
    return SendError(context.response, NotFoundError("no knowledge topic '" + topic + "'"));
  }
  SendJson(context.response, {{"object", "list"}, {"topic", topic}, {"data", FactsJson(*facts)}});
}

void StoreFacts(ServerState& state, RouteContext& context) {
  const std::string topic = context.request.matches[1].str();
  if (Status valid = memory::CheckTopicName(topic); !valid.ok()) {
    return SendError(context.response, valid);
  }
  Result<std::vector<memory::Fact>> facts = ParseFacts(context.request, topic);
  if (!facts.ok()) return SendError(context.response, facts.status());
  if (Status stored = state.storage_health->Note(StorageArea::kKnowledge,
                                                 state.knowledge->Put(context.scope, *facts));
      !stored.ok()) {
    return SendError(context.response, stored);
  }
  SendJson(context.response,
           {{"object", "knowledge.facts"}, {"topic", topic}, {"data", FactsJson(*facts)}});
}

void SearchFacts(ServerState& state, RouteContext& context) {
  const std::string query = context.request.get_param_value("q");
  if (query.empty()) {
    return SendError(context.response, InvalidArgumentError("'q' (the search text) is required"));
  }
  Result<int> k = ParseResultCount(context.request);
  if (!k.ok()) return SendError(context.response, k.status());
  Result<std::vector<memory::Fact>> found = state.knowledge->Search(context.scope, query, *k);
  if (!found.ok()) return SendError(context.response, found.status());
  Json results = Json::array();
  for (const memory::Fact& fact : *found) {
    results.push_back(
        {{"topic", fact.topic}, {"key", fact.key}, {"value", fact.value}, {"score", fact.score}});
  }
  SendJson(context.response, {{"results", results}});
}

}  // namespace

Json KnowledgeStatsJson(const ServerState& state) {
  Result<memory::KnowledgeStats> stats = state.knowledge->TotalStats();
  if (!stats.ok()) return {{"error", stats.status().message()}};
  return {{"topics", stats->topics}, {"facts", stats->facts}};
}

void AddKnowledgeRoutes(httplib::Server& http, ServerState& state) {
  AddRoute(http, state, "GET", "/v1/knowledge", "knowledge_list", RouteAuth::kRequired,
           [&state](RouteContext& context) {
             if (!context.request.has_param("topic")) return ListTopics(state, context);
             ListTopicFacts(state, context, context.request.get_param_value("topic"));
           });
  AddRoute(http, state, "GET", "/v1/knowledge/search", "knowledge_search", RouteAuth::kRequired,
           [&state](RouteContext& context) { SearchFacts(state, context); });
  // (.*), not ([^/]+): the path arrives decoded, so "a%2Fb" and "" get a 400 that says why.
  AddRoute(http, state, "POST", "/v1/knowledge/(.*)", "knowledge_store", RouteAuth::kRequired,
           [&state](RouteContext& context) { StoreFacts(state, context); });
}

}  // namespace kvault::server
