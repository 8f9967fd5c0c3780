#include "kvault/server/http_route.h"

#include <cstdlib>
#include <optional>

#include "kvault/base/log.h"
#include "kvault/base/status_macros.h"
#include "kvault/server/http_errors.h"

namespace kvault::server {
namespace {

// The X-Conversation-Id header's value; nullopt without one. Twice is refused rather than one
// picked: HAProxy's hdr() hashes the last occurrence, nginx's $http_ variable the first.
Result<std::optional<std::string>> ConversationIdHeader(const httplib::Request& request) {
  const size_t count = request.get_header_value_count(kConversationIdHeader);
  if (count == 0) return std::optional<std::string>();
  if (count > 1) {
    return InvalidArgumentError(std::string("the ") + kConversationIdHeader +
                                " header is given more than once");
  }
  return std::optional<std::string>(request.get_header_value(kConversationIdHeader));
}

Status MismatchError(std::string_view where, std::string_view id, std::string_view header) {
  constexpr size_t kShown = 64;  // enough to tell them apart; the ids may be 256 bytes
  return InvalidArgumentError("'conversation_id' is '" + std::string(id.substr(0, kShown)) +
                              "' in the " + std::string(where) + " but '" +
                              std::string(header.substr(0, kShown)) + "' in the " +
                              kConversationIdHeader + " header");
}

}  // namespace

void SendJson(httplib::Response& response, const Json& body, int status) {
  response.status = status;
  response.set_content(DumpJson(body), "application/json");
}

void SendError(httplib::Response& response, const Status& status) {
  const HttpError error = ToHttpError(status);
  SendJson(response, ErrorJson(error), error.status);
}

Result<int64_t> IntParam(const httplib::Request& request, const std::string& name, int64_t fallback,
                         int64_t min, int64_t max) {
  if (!request.has_param(name)) return fallback;
  const std::string text = request.get_param_value(name);
  char* end = nullptr;
  const long long value = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || value < min || value > max) {
    return InvalidArgumentError("'" + name + "' must be an integer in " + std::to_string(min) +
                                ".." + std::to_string(max));
  }
  return value;
}

Result<Json> RequestJson(const httplib::Request& request) {
  if (request.body.empty()) return InvalidArgumentError("the request body is empty");
  Result<Json> body = ParseJson(request.body);
  if (!body.ok()) return body.status().WithPrefix("request body");
  return body;
}

Result<Json> RequestJsonWithConversationId(const httplib::Request& request) {
  KV_ASSIGN_OR_RETURN(Json body, RequestJson(request));
  KV_ASSIGN_OR_RETURN(std::optional<std::string> header, ConversationIdHeader(request));
  if (!header || !body.is_object()) return body;
  auto it = body.find("conversation_id");
  if (it == body.end() || it->is_null()) {
    body["conversation_id"] = *header;
  } else if (it->is_string() && it->get_ref<const std::string&>() != *header) {
    return MismatchError("body", it->get_ref<const std::string&>(), *header);
  }
  // A field of another type is left for the route's parser to name.
  return body;
}

Status CheckConversationIdHeader(const httplib::Request& request, std::string_view id) {
  KV_ASSIGN_OR_RETURN(std::optional<std::string> header, ConversationIdHeader(request));
  if (header && *header != id) return MismatchError("path", id, *header);
  return Status::Ok();
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
