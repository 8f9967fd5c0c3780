#include "kvault/server/http_errors.h"

namespace kvault::server {
namespace {

// The HTTP status, OpenAI `type` and default `code` of a Status code.
HttpError ForCode(StatusCode code) {
  switch (code) {
    case StatusCode::kInvalidArgument: return {400, "invalid_request_error", "invalid_request", ""};
    case StatusCode::kUnauthenticated: return {401, "authentication_error", "invalid_api_key", ""};
    case StatusCode::kNotFound: return {404, "not_found_error", "not_found", ""};
    case StatusCode::kAlreadyExists:
    case StatusCode::kFailedPrecondition: return {409, "invalid_request_error", "conflict", ""};
    case StatusCode::kResourceExhausted: return {503, "server_error", "resource_exhausted", ""};
    case StatusCode::kUnavailable: return {503, "server_error", "unavailable", ""};
    case StatusCode::kCancelled: return {499, "invalid_request_error", "cancelled", ""};
    default: return {500, "server_error", "internal_error", ""};
  }
}

}  // namespace

HttpError ToHttpError(const Status& status) {
  HttpError error = ForCode(status.code());
  if (status.detail() == ErrorDetail::kInsufficientStorage) {
    error.status = 507;
    error.type = "server_error";
  } else if (status.detail() == ErrorDetail::kUpstreamUnavailable) {
    error.status = 502;
    error.type = "server_error";
  } else if (status.detail() == ErrorDetail::kUpstreamTimeout) {
    error.status = 504;
    error.type = "server_error";
  }
  if (status.detail() != ErrorDetail::kNone) error.code = ErrorDetailName(status.detail());
  error.message = status.message();
  return error;
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
    case 431:
      return {431, "invalid_request_error", "headers_too_large", "request headers too large"};
    default:
      if (status >= 500) return {status, "server_error", "internal_error", "server error"};
      return {status, "invalid_request_error", "invalid_request", "request rejected"};
  }
}

}  // namespace kvault::server
