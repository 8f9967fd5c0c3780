#include "kvault/base/status.h"

#include <cerrno>
#include <cstring>

namespace kvault {

std::string_view StatusCodeName(StatusCode code) {
  switch (code) {
    case StatusCode::kOk: return "OK";
    case StatusCode::kInvalidArgument: return "InvalidArgument";
    case StatusCode::kNotFound: return "NotFound";
    case StatusCode::kAlreadyExists: return "AlreadyExists";
    case StatusCode::kResourceExhausted: return "ResourceExhausted";
    case StatusCode::kUnavailable: return "Unavailable";
    case StatusCode::kFailedPrecondition: return "FailedPrecondition";
    case StatusCode::kCorruption: return "Corruption";
    case StatusCode::kIOError: return "IOError";
    case StatusCode::kCancelled: return "Cancelled";
    case StatusCode::kUnauthenticated: return "Unauthenticated";
    case StatusCode::kInternal: return "Internal";
  }
  return "Unknown";
}

std::string_view ErrorDetailName(ErrorDetail detail) {
  switch (detail) {
    case ErrorDetail::kNone: return "";
    case ErrorDetail::kContextLengthExceeded: return "context_length_exceeded";
    case ErrorDetail::kServerOverloaded: return "server_overloaded";
    case ErrorDetail::kShuttingDown: return "shutting_down";
    case ErrorDetail::kPinsExhausted: return "pins_exhausted";
    case ErrorDetail::kConversationBusy: return "conversation_busy";
    case ErrorDetail::kConversationNotFound: return "conversation_not_found";
    case ErrorDetail::kSessionNotFound: return "session_not_found";
    case ErrorDetail::kInvalidApiKey: return "invalid_api_key";
    case ErrorDetail::kInvalidGrammar: return "invalid_grammar";
    case ErrorDetail::kInsufficientStorage: return "insufficient_storage";
    case ErrorDetail::kUpstreamUnavailable: return "upstream_unavailable";
    case ErrorDetail::kUpstreamTimeout: return "upstream_timeout";
  }
  return "";
}

std::string Status::ToString() const {
  if (ok()) return "OK";
  std::string out(StatusCodeName(code_));
  out += ": ";
  out += message_;
  return out;
}

Status Status::WithPrefix(std::string_view prefix) const {
  if (ok()) return *this;
  std::string message(prefix);
  message += ": ";
  message += message_;
  return Status(code_, std::move(message), detail_);
}

Status Status::WithDetail(ErrorDetail detail) const {
  if (ok()) return *this;
  return Status(code_, message_, detail);
}

Status InvalidArgumentError(std::string m) { return {StatusCode::kInvalidArgument, std::move(m)}; }
Status NotFoundError(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
Status AlreadyExistsError(std::string m) { return {StatusCode::kAlreadyExists, std::move(m)}; }
Status ResourceExhaustedError(std::string m) {
  return {StatusCode::kResourceExhausted, std::move(m)};
}
Status UnavailableError(std::string m) { return {StatusCode::kUnavailable, std::move(m)}; }
Status FailedPreconditionError(std::string m) {
  return {StatusCode::kFailedPrecondition, std::move(m)};
}
Status CorruptionError(std::string m) { return {StatusCode::kCorruption, std::move(m)}; }
Status IOError(std::string m) { return {StatusCode::kIOError, std::move(m)}; }
Status CancelledError(std::string m) { return {StatusCode::kCancelled, std::move(m)}; }
Status UnauthenticatedError(std::string m) { return {StatusCode::kUnauthenticated, std::move(m)}; }
Status InternalError(std::string m) { return {StatusCode::kInternal, std::move(m)}; }

Status ErrnoError(std::string_view what, int errno_value) {
  std::string message(what);
  message += ": ";
  message += std::strerror(errno_value);
  // A full disk or quota is an exhausted resource the caller may wait out, not a broken file.
  if (errno_value == ENOSPC || errno_value == EDQUOT) {
    return ResourceExhaustedError(std::move(message)).WithDetail(ErrorDetail::kInsufficientStorage);
  }
  if (errno_value == EROFS) {
    return IOError(std::move(message)).WithDetail(ErrorDetail::kInsufficientStorage);
  }
  return IOError(std::move(message));
}

}  // namespace kvault
