// server/http_errors.h: the one place a Status becomes an HTTP status and an OpenAI-shaped
// error body: {"error": {"message", "type", "code", "param"}}.
//
// The HTTP status and `type` follow the Status code; `error.code` is the Status's
// ErrorDetail when it has one (base/status.h: "context_length_exceeded",
// "server_overloaded", ...), else a word for the code:
//
//   InvalidArgument     400 invalid_request_error / invalid_request
//   Unauthenticated     401 authentication_error / invalid_api_key
//   NotFound            404 not_found_error / not_found
//   AlreadyExists,
//   FailedPrecondition  409 invalid_request_error / conflict
//   ResourceExhausted   503 server_error / resource_exhausted (server_overloaded from admission)
//   Unavailable         503 server_error / unavailable
//   Cancelled           499 (the client went away; nobody reads it) / cancelled
//   anything else       500 server_error / internal_error
//   (any code) with kInsufficientStorage: 507 server_error / insufficient_storage
//
// Thread-safety: pure functions.
#pragma once

#include <string>

#include "kvault/base/json.h"
#include "kvault/base/status.h"

namespace kvault::server {

struct HttpError {
  int status = 500;
  std::string type;
  std::string code;
  std::string message;
};

HttpError ToHttpError(const Status& status);
Json ErrorJson(const HttpError& error);
// An error for a status httplib produced itself (404 no route, 413 too large, ...).
HttpError HttpErrorForStatus(int status);

}  // namespace kvault::server
