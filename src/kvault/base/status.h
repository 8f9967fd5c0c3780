// base/status.h: the outcome of an operation that can fail because of input, files, the disk,
// the network or a model mismatch. kvault code never throws; it returns a Status (or a
// Result<T>, see result.h) and the caller decides: server/http_errors.cc maps codes to HTTP,
// cli/ maps them to exit codes.
//
// Thread-safety: a Status is a value; distinct objects may be used from distinct threads.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

namespace kvault {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,
  kNotFound,
  kAlreadyExists,
  kResourceExhausted,
  kUnavailable,
  kFailedPrecondition,
  kCorruption,
  kIOError,
  kCancelled,
  kUnauthenticated,
  kInternal,
};

// "InvalidArgument", "NotFound", ... ("Ok" for kOk).
std::string_view StatusCodeName(StatusCode code);

// What exactly went wrong, beyond the code, for callers that act on it: the HTTP layer maps
// it to OpenAI's `error.code` (server/http_errors.cc), clients retry or shorten on it. Data,
// never parsed out of a message. kNone: the code alone says enough.
enum class ErrorDetail : uint8_t {
  kNone = 0,
  kContextLengthExceeded,  // the prompt does not fit the window
  kServerOverloaded,       // threads and queue are full
  kShuttingDown,           // the server no longer takes requests
  kPinsExhausted,          // every sequence that may be dedicated is taken
  kConversationBusy,       // another request holds the conversation
  kConversationNotFound,
  kSessionNotFound,
  kInvalidApiKey,
  kInvalidGrammar,  // a grammar (or response_format) the sampler cannot use
  // A folder cannot be written: a full disk or quota, a read-only file system (HTTP 507).
  kInsufficientStorage,
  kUpstreamUnavailable,  // --upstream: the server kvault forwards to does not answer (502)
  kUpstreamTimeout,      // --upstream: it answered nothing within --upstream-timeout (504)
};
inline constexpr ErrorDetail kLastErrorDetail = ErrorDetail::kUpstreamTimeout;

// "context_length_exceeded", "server_overloaded", ... ("" for kNone): OpenAI's words where
// OpenAI has one.
std::string_view ErrorDetailName(ErrorDetail detail);

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  Status(StatusCode code, std::string message, ErrorDetail detail = ErrorDetail::kNone)
      : code_(code), detail_(detail), message_(std::move(message)) {}

  static Status Ok() { return Status(); }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  ErrorDetail detail() const { return detail_; }
  // The message without the code name, e.g. "kv: snapshot has 24 layers, model has 28".
  const std::string& message() const { return message_; }
  // "NotFound: no conversation 'abc'" or "OK".
  std::string ToString() const;

  // Returns a copy whose message is "<prefix>: <message>"; OK stays OK.
  Status WithPrefix(std::string_view prefix) const;
  // Returns a copy carrying `detail`; OK stays OK.
  Status WithDetail(ErrorDetail detail) const;

  // Marks a status as intentionally dropped.
  void IgnoreError() const {}

  friend bool operator==(const Status& a, const Status& b) {
    return a.code_ == b.code_ && a.detail_ == b.detail_ && a.message_ == b.message_;
  }

 private:
  StatusCode code_ = StatusCode::kOk;
  ErrorDetail detail_ = ErrorDetail::kNone;
  std::string message_;
};

Status InvalidArgumentError(std::string message);
Status NotFoundError(std::string message);
Status AlreadyExistsError(std::string message);
Status ResourceExhaustedError(std::string message);
Status UnavailableError(std::string message);
Status FailedPreconditionError(std::string message);
Status CorruptionError(std::string message);
Status IOError(std::string message);
Status CancelledError(std::string message);
Status UnauthenticatedError(std::string message);
Status InternalError(std::string message);

// An IOError carrying strerror(errno_value): "<what>: <strerror>"; a full disk or quota is
// ResourceExhausted; those and a read-only file system carry kInsufficientStorage.
Status ErrnoError(std::string_view what, int errno_value);

}  // namespace kvault
