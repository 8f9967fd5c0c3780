// server/http_route.h: registering a route with what every route gets: API key check (all
// routes but /health), OpenAI-shaped errors, and the requests_total metric.
//
// Thread-safety: handlers run on httplib's worker threads, concurrently.
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include <httplib.h>

#include "kvault/base/json.h"
#include "kvault/base/status.h"
#include "kvault/server/server_state.h"

namespace kvault::server {

struct RouteContext {
  const httplib::Request& request;
  httplib::Response& response;
  std::string scope;  // API key scope
};

using RouteHandler = std::function<void(RouteContext&)>;

enum class RouteAuth { kRequired, kPublic };

void AddRoute(httplib::Server& http, ServerState& state, const std::string& method,
              const std::string& pattern, const std::string& route_name, RouteAuth auth,
              RouteHandler handler);

void SendJson(httplib::Response& response, const Json& body, int status = 200);
void SendError(httplib::Response& response, const Status& status);
// The request body as JSON; InvalidArgument (400) if malformed.
Result<Json> RequestJson(const httplib::Request& request);
// Query parameter `name` as an integer in [min, max], `fallback` if absent; InvalidArgument
// ("'limit' must be an integer in 1..10000") otherwise.
Result<int64_t> IntParam(const httplib::Request& request, const std::string& name, int64_t fallback,
                         int64_t min, int64_t max);

// The header a router (deploy/haproxy.cfg, nginx) hashes so that one conversation's requests
// reach one replica; a client may send it instead of the body's "conversation_id".
inline constexpr char kConversationIdHeader[] = "X-Conversation-Id";
// RequestJson, with the X-Conversation-Id header's value as the body's "conversation_id" when
// the body has none (the route's parser then validates it like the field). InvalidArgument if
// both are given and differ, or the header is given twice. A body that is not an object is
// returned as it is, for its parser to refuse.
Result<Json> RequestJsonWithConversationId(const httplib::Request& request);
// For a route with the id in its path: InvalidArgument if an X-Conversation-Id header names
// another conversation (or is given twice).
Status CheckConversationIdHeader(const httplib::Request& request, std::string_view id);

}  // namespace kvault::server
