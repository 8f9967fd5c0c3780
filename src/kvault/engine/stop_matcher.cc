#include "kvault/engine/stop_matcher.h"

#include <algorithm>

#include "kvault/engine/tokenizer.h"

namespace kvault::engine {

StopMatcher::StopMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {
  stops_.erase(std::remove(stops_.begin(), stops_.end(), std::string()), stops_.end());
}

StopMatcher::Output StopMatcher::Push(std::string_view text) {
  Output out;
  if (stopped_) return out;
  held_ += text;
  size_t first_match = std::string::npos;
  for (const std::string& stop : stops_) first_match = std::min(first_match, held_.find(stop));
  if (first_match != std::string::npos) {
    out.text = held_.substr(0, first_match);
    out.stopped = stopped_ = true;
    held_.clear();
    return out;
  }
  // Hold back the longest tail that is a proper prefix of some stop string.
  size_t keep = 0;
  for (const std::string& stop : stops_) {
    for (size_t n = std::min(stop.size() - 1, held_.size()); n > keep; --n) {
      if (std::string_view(held_).substr(held_.size() - n) == std::string_view(stop).substr(0, n)) {
        keep = n;
        break;
      }
    }
  }
  // Never split a UTF-8 character between what is emitted and what is held.
  size_t emit = held_.size() - keep;
  emit = CompleteUtf8Prefix(std::string_view(held_).substr(0, emit));
  out.text = held_.substr(0, emit);
  held_.erase(0, emit);
  return out;
}

std::string StopMatcher::Flush() {
  std::string rest;
  rest.swap(held_);
  return stopped_ ? std::string() : rest;
}

}  // namespace kvault::engine
