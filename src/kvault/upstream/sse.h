// upstream/sse.h: the Server-Sent Events an OpenAI-compatible server streams a completion
// in ("data: {json}\n\n" ... "data: [DONE]\n\n"), split out of bytes as they arrive, in
// whatever pieces the network cuts them. Lines end in "\n" or "\r\n".
//
// Thread-safety: a value; one thread at a time.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace kvault::upstream {

class SseParser {
 public:
  // The data of every event `bytes` completes, in order (comments and other fields
  // skipped; several data lines of one event joined by "\n").
  std::vector<std::string> Push(std::string_view bytes);
  // Bytes held for an event not yet complete.
  size_t pending() const { return buffer_.size() + data_.size(); }

 private:
  std::string buffer_;  // a line not yet complete
  std::string data_;    // the event's data so far
  bool has_data_ = false;
};

}  // namespace kvault::upstream
