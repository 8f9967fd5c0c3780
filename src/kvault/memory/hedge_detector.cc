#include "kvault/memory/hedge_detector.h"

#include <algorithm>
#include <cctype>

namespace kvault::memory {
namespace {

// Text in matching form, with the byte offset in the original text of every character.
struct Normalized {
  std::string text;
  std::vector<size_t> offsets;  // offsets[i] for text[i]; offsets[size] = bytes consumed
};

size_t Utf8Length(unsigned char lead) {
  if (lead < 0x80) return 1;
  if ((lead & 0xe0) == 0xc0) return 2;
  if ((lead & 0xf0) == 0xe0) return 3;
  if ((lead & 0xf8) == 0xf0) return 4;
  return 1;  // a stray continuation byte: passed through as is
}

bool IsSpace(unsigned char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

// U+2018, U+2019 (curly quotes) and U+02BC (modifier apostrophe).
bool IsApostrophe(std::string_view character) {
  return character == "\xe2\x80\x98" || character == "\xe2\x80\x99" || character == "\xca\xbc";
}

// Stops before an incomplete UTF-8 character at the end, which waits for the next push.
Normalized Normalize(std::string_view text) {
  Normalized out;
  out.text.reserve(text.size());
  out.offsets.reserve(text.size() + 1);
  bool in_space = false;
  size_t i = 0;
  while (i < text.size()) {
    const auto lead = static_cast<unsigned char>(text[i]);
    const size_t length = Utf8Length(lead);
    if (i + length > text.size()) break;
    const bool space = IsSpace(lead);
    if (space && in_space) {
      ++i;
      continue;
    }
    in_space = space;
    if (space || IsApostrophe(text.substr(i, length))) {
      out.text.push_back(space ? ' ' : '\'');
      out.offsets.push_back(i);
      i += length;
      continue;
    }
    for (size_t k = 0; k < length; ++k, ++i) {
      const auto c = static_cast<unsigned char>(text[i]);
      out.text.push_back(c < 0x80 ? static_cast<char>(std::tolower(c)) : static_cast<char>(c));
      out.offsets.push_back(i);
    }
  }
  out.offsets.push_back(i);
  return out;
}

bool IsWordByte(char c) {
  const auto u = static_cast<unsigned char>(c);
  return u >= 0x80 || std::isalnum(u);
}

// True if a phrase may start at text[pos]: the character before it is not part of a word.
bool StartsWord(const std::string& text, size_t pos, char before_text) {
  return !IsWordByte(pos > 0 ? text[pos - 1] : before_text);
}

}  // namespace

std::vector<std::string> HedgeDetector::DefaultPhrases() {
  return {"if I recall",
          "if I remember correctly",
          "if I remember right",
          "as I recall",
          "I don't remember",
          "I do not remember",
          "I don't recall",
          "I do not recall",
          "I can't recall",
          "I cannot recall",
          "I can't remember",
          "I cannot remember",
          "I'm not sure what you said",
          "I am not sure what you said",
          "I'm not sure what you told me",
          "remind me what",
          "remind me again"};
}

std::string NormalizeHedgeText(std::string_view text) {
  std::string normalized = Normalize(text).text;
  while (!normalized.empty() && normalized.back() == ' ') normalized.pop_back();
  const size_t first = normalized.find_first_not_of(' ');
  return first == std::string::npos ? std::string() : normalized.substr(first);
}

HedgeDetector::HedgeDetector(std::vector<std::string> phrases) {
  for (const std::string& phrase : phrases) {
    std::string normalized = NormalizeHedgeText(phrase);
    if (!normalized.empty()) phrases_.push_back(std::move(normalized));
  }
}

HedgeOutput HedgeDetector::Push(std::string_view text) {
  HedgeOutput out;
  held_ += text;
  const Normalized norm = Normalize(held_);
  const char before = emitted_.empty() ? ' ' : emitted_.back();
  // The earliest phrase occurrence that starts a word.
  size_t hit_pos = std::string::npos;
  for (const std::string& phrase : phrases_) {
    for (size_t pos = norm.text.find(phrase); pos < hit_pos;
         pos = norm.text.find(phrase, pos + 1)) {
      if (StartsWord(norm.text, pos, before)) {
        hit_pos = pos;
        out.phrase = phrase;
        break;
      }
    }
  }
  if (hit_pos != std::string::npos) {
    out.hit = true;
    out.text = held_.substr(0, norm.offsets[hit_pos]);
    emitted_ += out.text;
    out.before_hit = emitted_;
    held_.clear();
    return out;
  }
  // Hold back the longest tail that could still grow into a phrase.
  size_t keep = 0;
  for (const std::string& phrase : phrases_) {
    for (size_t n = std::min(phrase.size() - 1, norm.text.size()); n > keep; --n) {
      const size_t start = norm.text.size() - n;
      if (norm.text.compare(start, n, phrase, 0, n) == 0 && StartsWord(norm.text, start, before)) {
        keep = n;
        break;
      }
    }
  }
  const size_t n_bytes = norm.offsets[norm.text.size() - keep];
  out.text = held_.substr(0, n_bytes);
  held_.erase(0, n_bytes);
  emitted_ += out.text;
  return out;
}

std::string HedgeDetector::Flush() {
  std::string rest;
  rest.swap(held_);
  emitted_ += rest;
  return rest;
}

}  // namespace kvault::memory
