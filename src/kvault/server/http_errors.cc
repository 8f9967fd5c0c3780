#include "kvault/server/http_errors.h"

namespace kvault::server {
namespace {

constexpr std::string_view kContextLengthPrefix = "context_length_exceeded: ";

}  // namespace

HttpError ToHttpError(const Status& status) {
  const std::string& message = status.message();
  switch (status.code()) {
    case StatusCode::kInvalidArgument:
      if (message.rfind(kContextLengthPrefix, 0) == 0) {
        return {400, "invalid_request_error", "context_length_exceeded",
                message.substr(kContextLengthPrefix.size())};
      }
      return {400, "invalid_request_error", "invalid_request", message};
    case StatusCode::kUnauthenticated:
      return {401, "authentication_error", "invalid_api_key", message};
    case StatusCode::kNotFound: return {404, "not_found_error", "not_found", message};
    case StatusCode::kAlreadyExists:
    case StatusCode::kFailedPrecondition:
      return {409, "invalid_request_error", "conflict", message};
    case StatusCode::kResourceExhausted: return {503, "server_error", "server_overloaded", message};
    case StatusCode::kUnavailable: return {503, "server_error", "unavailable", message};
    default: return {500, "server_error", "internal_error", message};
  }
}

Json ErrorJson(const HttpError& error) {
  return {{"error",
           {{"message", error.message},
            {"type", error.type},
            {"code", error.code},
            {"param", nullptr}}}};
}

HttpError HttpErrorForStatus(int status) {
  switch (status) {
    case 400: return {400, "invalid_request_error", "invalid_request", "bad request"};
    case 404: return {404, "not_found_error", "not_found", "no such route"};
    case 405: return {405, "invalid_request_error", "method_not_allowed", "method not allowed"};
    case 413:
      return {413, "invalid_request_error", "payload_too_large",
              "request body exceeds the server's limit (--max-body-mb)"};
    case 414: return {414, "invalid_request_error", "uri_too_long", "request URI too long"};
    default:
      if (status >= 500) return {status, "server_error", "internal_error", "server error"};
      return {status, "invalid_request_error", "invalid_request", "request rejected"};
  }
}

}  // namespace kvault::server
