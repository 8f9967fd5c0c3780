// The analytics routes (analytics/analytics_store.h):
//
//   GET /v1/analytics?since=&until=&group_by=conversation|key|prefix|hour
//       {"object": "analytics", "since", "until", "group_by", "data": [summary, ...]}
//   GET /v1/analytics/requests?since=&until=&limit=   the rows themselves, oldest first
//
// `since` and `until` are Unix seconds or ISO 8601 UTC ("2026-12-03T08:00:00Z"); default:
// everything kept, up to now. With --api-key a key sees its own requests only.
#include <chrono>
#include <cstdlib>
#include <ctime>

#include "kvault/base/status_macros.h"
#include "kvault/server/http_errors.h"
#include "kvault/server/http_route.h"
#include "kvault/server/routes.h"

namespace kvault::server {
namespace {

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Unix seconds (a fraction allowed) or ISO 8601 UTC, as milliseconds.
Result<int64_t> ParseTime(const std::string& name, const std::string& text) {
  const auto bad = [&] {
    return InvalidArgumentError("'" + name +
                                "' must be Unix seconds or an ISO 8601 UTC time such as "
                                "2026-12-03T08:00:00Z");
  };
  if (text.empty()) return bad();
  char* end = nullptr;
  const double seconds = std::strtod(text.c_str(), &end);
  if (*end == '\0') {
    if (!(seconds >= 0) || seconds > 1e11) return bad();
    return static_cast<int64_t>(seconds * 1000);
  }
  std::tm tm{};
  const char* rest = strptime(text.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
  if (rest == nullptr) rest = strptime(text.c_str(), "%Y-%m-%d", &tm);
  if (rest == nullptr || !(std::string(rest).empty() || std::string(rest) == "Z")) return bad();
  return static_cast<int64_t>(timegm(&tm)) * 1000;
}

struct Window {
  int64_t since_ms = 0;
  int64_t until_ms = 0;
};

Result<Window> WindowOf(const httplib::Request& request) {
  Window window{0, NowMs() + 1};
  if (request.has_param("since")) {
    KV_ASSIGN_OR_RETURN(window.since_ms, ParseTime("since", request.get_param_value("since")));
  }
  if (request.has_param("until")) {
    KV_ASSIGN_OR_RETURN(window.until_ms, ParseTime("until", request.get_param_value("until")));
  }
  if (window.until_ms < window.since_ms) return InvalidArgumentError("'until' is before 'since'");
  return window;
}

Json SummaryJson(const analytics::Summary& s) {
  return {
      {"group", s.group},
      {"requests", s.requests},
      {"prompt_tokens", s.prompt_tokens},
      {"completion_tokens", s.completion_tokens},
      {"cached_tokens", s.cached_tokens},
      {"trie_matched_tokens", s.trie_matched_tokens},
      {"tokens_saved", s.cached_tokens},
      {"cache_hit_rate", s.cache_hit_rate},
      {"trie_hit_rate", s.trie_hit_rate},
      {"ttft_ms", {{"p50", s.ttft_p50_ms}, {"p95", s.ttft_p95_ms}, {"p99", s.ttft_p99_ms}}},
      {"total_ms", {{"p50", s.total_p50_ms}, {"p95", s.total_p95_ms}, {"p99", s.total_p99_ms}}}};
}

Json RowJson(const analytics::RequestRow& r) {
  return {{"id", r.id},
          {"time_ms", r.ts_ms},
          {"conversation_id", r.conversation},
          {"key", r.key},
          {"prefix", r.prefix},
          {"prompt_tokens", r.prompt_tokens},
          {"completion_tokens", r.completion_tokens},
          {"trie_matched_tokens", r.trie_matched_tokens},
          {"cached_tokens", r.cached_tokens},
          {"ttft_ms", r.ttft_ms},
          {"total_ms", r.total_ms},
          {"finish_reason", r.finish_reason}};
}

Status NotEnabled() { return FailedPreconditionError("analytics are off (--no-analytics)"); }

}  // namespace

void AddAnalyticsRoutes(httplib::Server& http, ServerState& state) {
  AddRoute(http, state, "GET", "/v1/analytics", "analytics", RouteAuth::kRequired,
           [&state](RouteContext& context) {
             if (state.analytics == nullptr) return SendError(context.response, NotEnabled());
             Result<Window> window = WindowOf(context.request);
             if (!window.ok()) return SendError(context.response, window.status());
             const std::string group = context.request.get_param_value("group_by");
             Result<analytics::GroupBy> group_by = analytics::ParseGroupBy(group);
             if (!group_by.ok()) return SendError(context.response, group_by.status());
             state.analytics->Flush();  // what was answered before this request counts
             const bool keyed = state.auth->enabled();
             Result<std::vector<analytics::Summary>> summaries = state.analytics->Summarize(
                 window->since_ms, window->until_ms, *group_by, keyed ? &context.scope : nullptr);
             if (!summaries.ok()) return SendError(context.response, summaries.status());
             Json data = Json::array();
             for (const analytics::Summary& s : *summaries) data.push_back(SummaryJson(s));
             SendJson(context.response, {{"object", "analytics"},
                                         {"since_ms", window->since_ms},
                                         {"until_ms", window->until_ms},
                                         {"group_by", group.empty() ? Json(nullptr) : Json(group)},
                                         {"data", data}});
           });
  AddRoute(http, state, "GET", "/v1/analytics/requests", "analytics_requests", RouteAuth::kRequired,
           [&state](RouteContext& context) {
             if (state.analytics == nullptr) return SendError(context.response, NotEnabled());
             Result<Window> window = WindowOf(context.request);
             if (!window.ok()) return SendError(context.response, window.status());
             Result<int64_t> limit = IntParam(context.request, "limit", 1000, 1, 100000);
             if (!limit.ok()) return SendError(context.response, limit.status());
             state.analytics->Flush();
             const bool keyed = state.auth->enabled();
             Result<std::vector<analytics::RequestRow>> rows = state.analytics->Rows(
                 window->since_ms, window->until_ms, *limit, keyed ? &context.scope : nullptr);
             if (!rows.ok()) return SendError(context.response, rows.status());
             Json data = Json::array();
             for (const analytics::RequestRow& r : *rows) data.push_back(RowJson(r));
             SendJson(context.response, {{"object", "list"}, {"data", data}});
           });
}

}  // namespace kvault::server
