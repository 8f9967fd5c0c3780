#include "kvault/base/utf8.h"

#include <cstdint>

namespace kvault {
namespace {

// The allowed range of the second byte after each lead byte (Unicode table 3-7); the
// further bytes are plain continuation bytes 0x80-0xBF.
struct LeadRule {
  int length;  // 0: not a lead byte
  uint8_t second_min;
  uint8_t second_max;
};

LeadRule RuleFor(uint8_t lead) {
  if (lead < 0x80) return {1, 0, 0};
  if (lead >= 0xC2 && lead <= 0xDF) return {2, 0x80, 0xBF};
  if (lead == 0xE0) return {3, 0xA0, 0xBF};  // no overlong forms
  if (lead == 0xED) return {3, 0x80, 0x9F};  // no surrogates
  if (lead >= 0xE1 && lead <= 0xEF) return {3, 0x80, 0xBF};
  if (lead == 0xF0) return {4, 0x90, 0xBF};  // no overlong forms
  if (lead == 0xF4) return {4, 0x80, 0x8F};  // nothing above U+10FFFF
  if (lead >= 0xF1 && lead <= 0xF3) return {4, 0x80, 0xBF};
  return {0, 0, 0};
}

// Bytes of the maximal subpart of an ill-formed sequence at `pos` (at least 1): the lead
// byte and the continuation bytes that were still allowed when the sequence broke off.
size_t InvalidSubpartLength(std::string_view text, size_t pos) {
  const LeadRule rule = RuleFor(static_cast<uint8_t>(text[pos]));
  if (rule.length == 0) return 1;
  size_t n = 1;
  while (n < static_cast<size_t>(rule.length) && pos + n < text.size()) {
    const auto byte = static_cast<uint8_t>(text[pos + n]);
    const bool allowed =
        n == 1 ? byte >= rule.second_min && byte <= rule.second_max : byte >= 0x80 && byte <= 0xBF;
    if (!allowed) break;
    ++n;
  }
  return n;
}

}  // namespace

size_t ValidUtf8SequenceLength(std::string_view text, size_t pos) {
  const LeadRule rule = RuleFor(static_cast<uint8_t>(text[pos]));
  if (rule.length == 0) return 0;
  if (rule.length == 1) return 1;
  if (pos + static_cast<size_t>(rule.length) > text.size()) return 0;
  for (int i = 1; i < rule.length; ++i) {
    const auto byte = static_cast<uint8_t>(text[pos + static_cast<size_t>(i)]);
    const bool allowed =
        i == 1 ? byte >= rule.second_min && byte <= rule.second_max : byte >= 0x80 && byte <= 0xBF;
    if (!allowed) return 0;
  }
  return static_cast<size_t>(rule.length);
}

bool IsValidUtf8(std::string_view text) {
  for (size_t pos = 0; pos < text.size();) {
    const size_t n = ValidUtf8SequenceLength(text, pos);
    if (n == 0) return false;
    pos += n;
  }
  return true;
}

std::string SanitizeUtf8(std::string_view text) {
  if (IsValidUtf8(text)) return std::string(text);
  std::string out;
  out.reserve(text.size() + 8);
  for (size_t pos = 0; pos < text.size();) {
    const size_t n = ValidUtf8SequenceLength(text, pos);
    if (n > 0) {
      out.append(text.substr(pos, n));
      pos += n;
    } else {
      out.append(kReplacementCharacter);
      pos += InvalidSubpartLength(text, pos);
    }
  }
  return out;
}

}  // namespace kvault
