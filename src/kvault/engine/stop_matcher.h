// engine/stop_matcher.h: finds OpenAI-style stop strings in generated text that arrives in
// pieces. Text that could still become the start of a stop string is held back, so the
// client never receives part of a stop string; the stop string itself is never emitted.
//
// Thread-safety: one matcher per stream.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace kvault::engine {

class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops);

  struct Output {
    std::string text;      // safe to emit now
    bool stopped = false;  // a stop string matched; text ends just before it
  };
  Output Push(std::string_view text);
  // Whatever was held back (at the end of the stream).
  std::string Flush();

 private:
  std::vector<std::string> stops_;
  std::string held_;
  bool stopped_ = false;
};

}  // namespace kvault::engine
