#include "kvault/upstream/sse.h"

namespace kvault::upstream {

std::vector<std::string> SseParser::Push(std::string_view bytes) {
  buffer_.append(bytes);
  std::vector<std::string> events;
  size_t pos = 0;
  while (true) {
    const size_t newline = buffer_.find('\n', pos);
    if (newline == std::string::npos) break;
    std::string_view line = std::string_view(buffer_).substr(pos, newline - pos);
    pos = newline + 1;
    if (line.ends_with('\r')) line.remove_suffix(1);
    if (line.empty()) {  // the blank line that ends an event
      if (has_data_) events.push_back(std::move(data_));
      data_.clear();
      has_data_ = false;
      continue;
    }
    if (!line.starts_with("data:")) continue;  // comments, event:, id:, retry:
    line.remove_prefix(5);
    if (line.starts_with(' ')) line.remove_prefix(1);
    if (has_data_) data_ += '\n';
    data_.append(line);
    has_data_ = true;
  }
  buffer_.erase(0, pos);
  return events;
}

}  // namespace kvault::upstream
