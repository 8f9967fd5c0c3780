// server/http_errors.h: the one place a Status becomes an HTTP status and an OpenAI-shaped
// error body: {"error": {"message", "type", "code", "param"}}.
//
//   InvalidArgument     400 invalid_request_error (code context_length_exceeded when the
//                           message starts with "context_length_exceeded: ")
//   Unauthenticated     401 authentication_error / invalid_api_key
//   NotFound            404 not_found_error
//   FailedPrecondition  409 invalid_request_error / conflict
//   ResourceExhausted   503 server_error / server_overloaded (threads and queue are full)
//   Unavailable         503 server_error / unavailable (shutting down)
//   anything else       500 server_error
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
