// server/http_head.h: checking an HTTP/1.1 request head, and finding where its body ends,
// before any of it reaches httplib (http_front.h says why). Pure functions of the bytes
// received so far, so they are unit-tested and fuzzed without sockets.
//
// What a head must be (RFC 9112, with the limits nginx and most servers apply):
//   - a request line "METHOD SP target SP HTTP/1.x"; longer than max_request_line: 414 (its
//     URI is what makes it long), otherwise malformed: 400;
//   - header field lines "name: value", at most max_headers of them, none longer than
//     max_header_line, all of the head within max_head_bytes: otherwise 431; a line without a
//     colon, a space before the colon, a folded (obsolete) continuation line, a control
//     character (NUL included): 400;
//   - lines end with CRLF or a bare LF (RFC 9112 2.2 lets a server accept LF, as nginx does);
//     httplib only accepts CRLF, so the head it gets is rewritten with CRLF;
//   - the body is framed by one Content-Length (digits only; several different ones: 400) or
//     by Transfer-Encoding ending in chunked (any other coding, or both headers: 400, which
//     also closes the request-smuggling doors), and is at most max_body_bytes: 413, decided
//     from the Content-Length before any of the body is read.
//
// Thread-safety: pure functions; a ChunkedBodyScanner is used by one thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "kvault/server/http_errors.h"

namespace kvault::server {

struct HeadLimits {
  size_t max_request_line = 8 * 1024;
  size_t max_header_line = 8 * 1024;
  size_t max_head_bytes = 64 * 1024;
  size_t max_headers = 100;
  uint64_t max_body_bytes = 64ull * 1024 * 1024;
};

enum class BodyFraming { kNone, kLength, kChunked };

struct RequestHead {
  size_t size = 0;        // bytes of the head as received, through its empty line
  std::string forwarded;  // the head as httplib gets it: every line ending in CRLF
  BodyFraming body = BodyFraming::kNone;
  uint64_t content_length = 0;  // with kLength
  bool expects_continue = false;
};

struct HeadParse {
  enum class State { kNeedMore, kComplete, kError };
  State state = State::kNeedMore;
  RequestHead head;  // with kComplete
  HttpError error;   // with kError: 400, 413, 414 or 431 and why
  // With kNeedMore: more bytes without a line feed can change the answer only once the
  // received size reaches this (a limit is crossed); a caller fed byte by byte re-parses only
  // then or on a new line feed, so a slow head costs O(size), not O(size^2).
  size_t recheck_at = 0;
};

// Parses the head at the start of `received`. kNeedMore while it may still become a valid
// head; an error as soon as the bytes so far cannot (a 1 MB request line is refused after
// its first 8 KB, without waiting for the rest).
HeadParse ParseRequestHead(std::string_view received, const HeadLimits& limits);

// Follows a chunked body through the bytes it is given, to find where it ends (the next
// request starts there) and to count its size against the limit.
class ChunkedBodyScanner {
 public:
  explicit ChunkedBodyScanner(uint64_t max_body_bytes) : max_body_bytes_(max_body_bytes) {}

  // Consumes bytes of `data` up to the end of the body; returns how many belong to the body
  // (all of them unless it ended inside). After it, done() or failed() may be true.
  size_t Consume(std::string_view data);
  bool done() const { return state_ == State::kDone; }
  bool failed() const { return state_ == State::kFailed; }
  const HttpError& error() const { return error_; }  // with failed(): 400 or 413

 private:
  enum class State {
    kSize,
    kSizeExtension,
    kSizeLf,
    kData,
    kDataCr,
    kDataLf,
    kTrailer,
    kDone,
    kFailed
  };
  // Records the error; returns `consumed`, for Consume to return.
  size_t Fail(int status, std::string message, size_t consumed);

  const uint64_t max_body_bytes_;
  State state_ = State::kSize;
  uint64_t chunk_left_ = 0;
  uint64_t size_digits_ = 0;
  uint64_t total_ = 0;
  size_t trailer_line_ = 0;  // bytes of the current trailer line
  size_t trailer_bytes_ = 0;
  HttpError error_;
};

}  // namespace kvault::server
