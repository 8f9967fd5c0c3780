#include "kvault/server/http_head.h"

#include <algorithm>
#include <cctype>
#include <optional>
#include <vector>

namespace kvault::server {
namespace {

// Longest chunk size line extension and trailer section accepted (nobody sends either).
constexpr size_t kMaxChunkExtension = 4096;
constexpr size_t kMaxTrailerBytes = 8192;
// Empty lines tolerated before a request line (RFC 9112 2.2: "SHOULD ignore at least one").
constexpr int kMaxLeadingEmptyLines = 4;

HeadParse Error(int status, std::string message) {
  HeadParse parse;
  parse.state = HeadParse::State::kError;
  parse.error = HttpErrorForStatus(status);
  parse.error.message = std::move(message);
  return parse;
}

// RFC 9110 5.6.2 token characters.
bool IsTokenChar(unsigned char c) {
  if (std::isalnum(c) != 0) return true;
  switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '.':
    case '^':
    case '_':
    case '`':
    case '|':
    case '~': return true;
    default: return false;
  }
}

bool IsToken(std::string_view text) {
  return !text.empty() && std::all_of(text.begin(), text.end(), [](char c) {
    return IsTokenChar(static_cast<unsigned char>(c));
  });
}

// Field values: visible characters, spaces, tabs and obs-text; no control characters.
bool IsFieldValue(std::string_view text) {
  return std::all_of(text.begin(), text.end(), [](char ch) {
    const auto c = static_cast<unsigned char>(ch);
    return c == '\t' || (c >= 0x20 && c != 0x7f);
  });
}

// Request targets: visible ASCII only (a space would end it; anything else is encoded).
bool IsTarget(std::string_view text) {
  return !text.empty() && std::all_of(text.begin(), text.end(), [](char ch) {
    const auto c = static_cast<unsigned char>(ch);
    return c > 0x20 && c < 0x7f;
  });
}

std::string_view Trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

// The comma-separated elements of a list-valued field, trimmed, empty ones skipped.
std::vector<std::string_view> ListElements(std::string_view value) {
  std::vector<std::string_view> elements;
  while (!value.empty()) {
    const size_t comma = value.find(',');
    const std::string_view element = Trim(value.substr(0, comma));
    if (!element.empty()) elements.push_back(element);
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
  return elements;
}

std::optional<uint64_t> ParseLength(std::string_view text) {
  if (text.empty() || text.size() > 18) return std::nullopt;  // 10^18 bytes is no body
  uint64_t value = 0;
  for (const char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + static_cast<uint64_t>(c - '0');
  }
  return value;
}

// What the header fields say about the body, checked once the head is complete.
struct Framing {
  std::optional<uint64_t> content_length;
  bool has_length = false;
  bool has_transfer_encoding = false;
  std::string_view last_coding;
  bool expects_continue = false;
};

}  // namespace

HeadParse ParseRequestHead(std::string_view received, const HeadLimits& limits) {
  HeadParse parse;
  RequestHead& head = parse.head;
  size_t pos = 0;
  int leading_empty = 0;
  bool have_request_line = false;
  bool http10 = false;
  size_t n_headers = 0;
  Framing framing;
  while (true) {
    const size_t lf = received.find('\n', pos);
    const size_t line_limit = have_request_line ? limits.max_header_line : limits.max_request_line;
    if (lf == std::string_view::npos) {
      // Incomplete: refuse at once what can no longer fit, wait for the rest otherwise.
      const size_t partial = received.size() - pos;
      if (partial > line_limit) {
        return have_request_line ? Error(431, "a request header line exceeds " +
                                                  std::to_string(limits.max_header_line) + " bytes")
                                 : Error(414, "the request line exceeds " +
                                                  std::to_string(limits.max_request_line) +
                                                  " bytes (URI too long)");
      }
      if (received.size() > limits.max_head_bytes) {
        return Error(
            431, "the request head exceeds " + std::to_string(limits.max_head_bytes) + " bytes");
      }
      parse.recheck_at = std::min(pos + line_limit, limits.max_head_bytes) + 1;
      return parse;  // kNeedMore
    }
    std::string_view line = received.substr(pos, lf - pos);
    pos = lf + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.size() > line_limit) {
      return have_request_line ? Error(431, "a request header line exceeds " +
                                                std::to_string(limits.max_header_line) + " bytes")
                               : Error(414, "the request line exceeds " +
                                                std::to_string(limits.max_request_line) +
                                                " bytes (URI too long)");
    }
    if (pos > limits.max_head_bytes) {
      return Error(431,
                   "the request head exceeds " + std::to_string(limits.max_head_bytes) + " bytes");
    }
    if (line.find('\r') != std::string_view::npos) {
      return Error(400, "a bare CR inside a request head line");
    }
    if (!have_request_line) {
      if (line.empty()) {
        if (++leading_empty > kMaxLeadingEmptyLines) return Error(400, "no request line");
        continue;
      }
      // METHOD SP target SP HTTP/1.x
      const size_t sp1 = line.find(' ');
      const size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
      if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos) {
        return Error(400, "malformed request line (expected: METHOD target HTTP/1.1)");
      }
      const std::string_view method = line.substr(0, sp1);
      const std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
      const std::string_view version = line.substr(sp2 + 1);
      if (!IsToken(method)) return Error(400, "malformed request method");
      if (!IsTarget(target)) return Error(400, "malformed request target");
      if (version != "HTTP/1.1" && version != "HTTP/1.0") {
        return Error(400, "unsupported HTTP version (HTTP/1.1 and HTTP/1.0 are served)");
      }
      http10 = version == "HTTP/1.0";
      have_request_line = true;
      head.forwarded.append(line).append("\r\n");
      continue;
    }
    if (line.empty()) break;  // the end of the head
    if (line.front() == ' ' || line.front() == '\t') {
      return Error(400, "folded header lines (obs-fold) are not accepted");
    }
    if (++n_headers > limits.max_headers) {
      return Error(431, "more than " + std::to_string(limits.max_headers) + " request headers");
    }
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos || !IsToken(line.substr(0, colon))) {
      return Error(400, "malformed request header line");
    }
    const std::string_view name = line.substr(0, colon);
    const std::string_view value = Trim(line.substr(colon + 1));
    if (!IsFieldValue(value)) return Error(400, "a control character in a request header");
    if (EqualsIgnoreCase(name, "Content-Length")) {
      const std::optional<uint64_t> length = ParseLength(value);
      if (!length) return Error(400, "malformed Content-Length");
      if (framing.has_length && framing.content_length != length) {
        return Error(400, "conflicting Content-Length headers");
      }
      framing.has_length = true;
      framing.content_length = length;
    } else if (EqualsIgnoreCase(name, "Transfer-Encoding")) {
      const std::vector<std::string_view> codings = ListElements(value);
      framing.has_transfer_encoding = true;
      if (!codings.empty()) framing.last_coding = codings.back();
    } else if (EqualsIgnoreCase(name, "Expect")) {
      for (const std::string_view expectation : ListElements(value)) {
        if (EqualsIgnoreCase(expectation, "100-continue")) framing.expects_continue = true;
      }
    }
    head.forwarded.append(line).append("\r\n");
  }
  head.forwarded.append("\r\n");
  head.size = pos;
  if (framing.has_transfer_encoding) {
    if (framing.has_length) {
      return Error(400, "both Content-Length and Transfer-Encoding (ambiguous framing)");
    }
    if (http10) return Error(400, "Transfer-Encoding in an HTTP/1.0 request");
    if (!EqualsIgnoreCase(framing.last_coding, "chunked")) {
      return Error(400, "a Transfer-Encoding whose last coding is not chunked");
    }
    head.body = BodyFraming::kChunked;
  } else if (framing.has_length && *framing.content_length > 0) {
    if (*framing.content_length > limits.max_body_bytes) {
      return Error(413, "the request body (" + std::to_string(*framing.content_length) +
                            " bytes) exceeds the server's limit of " +
                            std::to_string(limits.max_body_bytes) + " bytes (--max-body-mb)");
    }
    head.body = BodyFraming::kLength;
    head.content_length = *framing.content_length;
  }
  head.expects_continue = framing.expects_continue && !http10;
  parse.state = HeadParse::State::kComplete;
  return parse;
}

size_t ChunkedBodyScanner::Fail(int status, std::string message, size_t consumed) {
  state_ = State::kFailed;
  error_ = HttpErrorForStatus(status);
  error_.message = std::move(message);
  return consumed;
}

size_t ChunkedBodyScanner::Consume(std::string_view data) {
  size_t i = 0;
  while (i < data.size() && state_ != State::kDone && state_ != State::kFailed) {
    const char c = data[i];
    switch (state_) {
      case State::kSize: {
        int digit = -1;
        if (c >= '0' && c <= '9') digit = c - '0';
        if (c >= 'a' && c <= 'f') digit = c - 'a' + 10;
        if (c >= 'A' && c <= 'F') digit = c - 'A' + 10;
        ++i;
        if (digit >= 0) {
          if (++size_digits_ > 15) return Fail(400, "a chunk size is too large", i);
          chunk_left_ = chunk_left_ * 16 + static_cast<uint64_t>(digit);
          break;
        }
        if (size_digits_ == 0) return Fail(400, "malformed chunk size", i);
        if (c == ';' || c == ' ' || c == '\t') {
          trailer_line_ = 0;
          state_ = State::kSizeExtension;
        } else if (c == '\r') {
          state_ = State::kSizeLf;
        } else if (c == '\n') {
          state_ = State::kSizeLf;
          --i;  // handled as the LF below
        } else {
          return Fail(400, "malformed chunk size", i);
        }
        break;
      }
      case State::kSizeExtension:
        ++i;
        if (c == '\n') {
          state_ = State::kSizeLf;
          --i;
        } else if (++trailer_line_ > kMaxChunkExtension) {
          return Fail(400, "a chunk extension is too long", i);
        }
        break;
      case State::kSizeLf:
        ++i;
        if (c != '\n') return Fail(400, "malformed chunk size line", i);
        size_digits_ = 0;
        trailer_line_ = 0;
        if (chunk_left_ == 0) {
          state_ = State::kTrailer;
          break;
        }
        total_ += chunk_left_;
        if (total_ > max_body_bytes_) {
          return Fail(413,
                      "the request body exceeds the server's limit of " +
                          std::to_string(max_body_bytes_) + " bytes (--max-body-mb)",
                      i);
        }
        state_ = State::kData;
        break;
      case State::kData: {
        const size_t take = static_cast<size_t>(
            std::min<uint64_t>(chunk_left_, static_cast<uint64_t>(data.size() - i)));
        i += take;
        chunk_left_ -= take;
        if (chunk_left_ == 0) state_ = State::kDataCr;
        break;
      }
      case State::kDataCr:
        ++i;
        if (c == '\r') {
          state_ = State::kDataLf;
        } else if (c == '\n') {
          state_ = State::kSize;
        } else {
          return Fail(400, "a chunk does not end with CRLF", i);
        }
        break;
      case State::kDataLf:
        ++i;
        if (c != '\n') return Fail(400, "a chunk does not end with CRLF", i);
        state_ = State::kSize;
        break;
      case State::kTrailer:
        ++i;
        if (++trailer_bytes_ > kMaxTrailerBytes) return Fail(431, "chunk trailers too large", i);
        if (c == '\n') {
          if (trailer_line_ == 0) state_ = State::kDone;
          trailer_line_ = 0;
        } else if (c != '\r') {
          ++trailer_line_;
        }
        break;
      case State::kDone:
      case State::kFailed: break;
    }
  }
  return i;
}

}  // namespace kvault::server
