#include "kvault/server/http_route.h"

#include "kvault/base/log.h"
#include "kvault/server/http_errors.h"

namespace kvault::server {

void SendJson(httplib::Response& response, const Json& body, int status) {
  response.status = status;
  response.set_content(DumpJson(body), "application/json");
}

void SendError(httplib::Response& response, const Status& status) {
  const HttpError error = ToHttpError(status);
  SendJson(response, ErrorJson(error), error.status);
}

Result<Json> RequestJson(const httplib::Request& request) {
  if (request.body.empty()) return InvalidArgumentError("the request body is empty");
  Result<Json> body = ParseJson(request.body);
  if (!body.ok()) return body.status().WithPrefix("request body");
  return body;
}

void AddRoute(httplib::Server& http, ServerState& state, const std::string& method,
              const std::string& pattern, const std::string& route_name, RouteAuth auth,
              RouteHandler handler) {
  auto wrapped = [&state, route_name, auth, handler = std::move(handler)](
                     const httplib::Request& request, httplib::Response& response) {
    RouteContext context{request, response, ""};
    Result<std::string> scope =
        auth == RouteAuth::kRequired
            ? state.auth->Authorize(request.get_header_value("Authorization"))
            : Result<std::string>(std::string());
    if (scope.ok()) {
      context.scope = *scope;
      handler(context);
    } else {
      SendError(response, scope.status());
    }
    state.metrics->Increment("kvault_requests_total",
                             {route_name, std::to_string(response.status)});
  };
  if (method == "GET")
    http.Get(pattern, wrapped);
  else if (method == "POST")
    http.Post(pattern, wrapped);
  else if (method == "DELETE")
    http.Delete(pattern, wrapped);
}

}  // namespace kvault::server
