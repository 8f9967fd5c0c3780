#include "kvault/engine/grammar_check.h"

#include <cctype>
#include <cstdint>
#include <string>

#include "kvault/base/status_macros.h"

namespace kvault::engine {
namespace {

Status GrammarError(const std::string& what, size_t offset) {
  return InvalidArgumentError("grammar: " + what + " at byte " + std::to_string(offset))
      .WithDetail(ErrorDetail::kInvalidGrammar);
}

// One character of a character class at text[*i], escapes decoded as llama.cpp's parser does
// (\x.., \u...., \U........, \n \r \t, any other escaped character as itself); advances
// *i past it. -1 for an escape it cannot read.
int64_t ClassChar(std::string_view text, size_t* i) {
  auto hex = [&](size_t digits) -> int64_t {
    int64_t value = 0;
    for (size_t k = 0; k < digits; ++k, ++*i) {
      if (*i >= text.size() || !std::isxdigit(static_cast<unsigned char>(text[*i]))) return -1;
      const char c = static_cast<char>(std::tolower(static_cast<unsigned char>(text[*i])));
      value = value * 16 + (c <= '9' ? c - '0' : c - 'a' + 10);
    }
    return value;
  };
  if (text[*i] == '\\' && *i + 1 < text.size()) {
    const char e = text[*i + 1];
    *i += 2;
    switch (e) {
      case 'x': return hex(2);
      case 'u': return hex(4);
      case 'U': return hex(8);
      case 'n': return '\n';
      case 'r': return '\r';
      case 't': return '\t';
      default: return static_cast<unsigned char>(e);
    }
  }
  // A UTF-8 sequence, decoded to its code point (ranges compare code points).
  const auto lead = static_cast<unsigned char>(text[*i]);
  const int length = lead < 0x80 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4;
  int64_t value = length == 1 ? lead : lead & (0x3F >> (length - 1));
  ++*i;
  for (int k = 1; k < length && *i < text.size(); ++k, ++*i) {
    value = (value << 6) | (static_cast<unsigned char>(text[*i]) & 0x3F);
  }
  return value;
}

// The body of a character class from text[start] (after '[') to its ']': an empty range
// such as [z-a] passes llama.cpp's parser and then throws while sampling.
Status CheckClass(std::string_view text, size_t start, size_t end) {
  size_t i = start;
  if (i < end && text[i] == '^') ++i;
  while (i < end) {
    const size_t at = i;
    const int64_t first = ClassChar(text, &i);
    if (first < 0) return GrammarError("bad escape in a character class", at);
    if (i + 1 < end && text[i] == '-') {
      ++i;
      const int64_t last = ClassChar(text, &i);
      if (last < 0) return GrammarError("bad escape in a character class", at);
      if (last < first) return GrammarError("empty character range", at);
    }
  }
  return Status::Ok();
}

}  // namespace

Status CheckGrammarText(std::string_view gbnf) {
  if (gbnf.size() > kMaxGrammarBytes) {
    return InvalidArgumentError("grammar: " + std::to_string(gbnf.size()) +
                                " bytes, more than the " + std::to_string(kMaxGrammarBytes) +
                                " allowed")
        .WithDetail(ErrorDetail::kInvalidGrammar);
  }
  int depth = 0;
  for (size_t i = 0; i < gbnf.size(); ++i) {
    const char c = gbnf[i];
    if (c == '\0') return GrammarError("NUL byte", i);
    if (c == '#') {  // a comment runs to the end of the line
      while (i < gbnf.size() && gbnf[i] != '\n' && gbnf[i] != '\r') ++i;
      continue;
    }
    if (c == '"' || c == '[') {  // a literal or a character class: brackets inside are text
      const char close = c == '"' ? '"' : ']';
      const size_t start = i;
      for (++i; i < gbnf.size() && gbnf[i] != close; ++i) {
        if (gbnf[i] == '\\') ++i;  // an escaped character, whatever it is
        if (i < gbnf.size() && gbnf[i] == '\0') return GrammarError("NUL byte", i);
      }
      if (i >= gbnf.size()) {
        return GrammarError(c == '"' ? "unterminated string" : "unterminated character class",
                            start);
      }
      if (c == '[') KV_RETURN_IF_ERROR(CheckClass(gbnf, start + 1, i));
      continue;
    }
    if (c == '(') {
      if (++depth > kMaxGrammarDepth) {
        return GrammarError("groups nested deeper than " + std::to_string(kMaxGrammarDepth), i);
      }
    } else if (c == ')') {
      if (--depth < 0) return GrammarError("')' without '('", i);
    }
  }
  if (depth != 0) return GrammarError("unclosed '('", gbnf.size());
  return Status::Ok();
}

}  // namespace kvault::engine
