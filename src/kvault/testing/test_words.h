// testing/test_words.h: a trivial word-level tokenizer for memory/'s unit tests (tests only):
// each distinct space-separated word gets the next id, ids below kFirstWordId are "special"
// tokens that detokenize to nothing, as a chat template's markers do.
//
// Thread-safety: not thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace kvault::testing {

class TestWords {
 public:
  static constexpr int32_t kFirstWordId = 16;

  static std::vector<std::string> Split(std::string_view text) {
    std::vector<std::string> words;
    std::istringstream stream{std::string(text)};
    for (std::string word; stream >> word;) words.push_back(word);
    return words;
  }

  std::vector<int32_t> Tokenize(std::string_view text) {
    std::vector<int32_t> ids;
    for (const std::string& word : Split(text)) {
      auto [it, added] = ids_.try_emplace(word, kFirstWordId + static_cast<int32_t>(words_.size()));
      if (added) words_.push_back(word);
      ids.push_back(it->second);
    }
    return ids;
  }

  // Words joined by single spaces; special ids are left out.
  std::string Detokenize(std::span<const int32_t> ids) const {
    std::string text;
    for (int32_t id : ids) {
      if (id < kFirstWordId) continue;
      if (!text.empty()) text += ' ';
      text += words_.at(static_cast<size_t>(id - kFirstWordId));
    }
    return text;
  }

 private:
  std::map<std::string, int32_t, std::less<>> ids_;
  std::vector<std::string> words_;
};

}  // namespace kvault::testing
