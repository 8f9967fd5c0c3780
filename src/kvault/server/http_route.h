// server/http_route.h: registering a route with what every route gets: API key check (all
// routes but /health), OpenAI-shaped errors, and the requests_total metric.
//
// Thread-safety: handlers run on httplib's worker threads, concurrently.
#pragma once

#include <functional>
#include <string>

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

}  // namespace kvault::server
