// base/utf8.h: UTF-8 validity. What kvault sends a client and what it stores must be the same
// text, or a client that resends exactly what it received no longer matches the stored
// history (conversation/history_plan.h). Replies are therefore made valid before either
// happens: each maximal invalid subsequence becomes U+FFFD, the way the Unicode standard
// recommends (and nlohmann::json's replace handler, browsers and Python's "replace" do).
//
// Thread-safety: pure functions.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace kvault {

inline constexpr std::string_view kReplacementCharacter = "\xEF\xBF\xBD";  // U+FFFD

// Length of the valid UTF-8 sequence starting at text[pos], or 0 if none starts there
// (a stray continuation byte, an overlong form, a surrogate, a value above U+10FFFF, or a
// sequence cut short). REQUIRES: pos < text.size().
size_t ValidUtf8SequenceLength(std::string_view text, size_t pos);

// True if every byte of `text` belongs to a valid sequence.
bool IsValidUtf8(std::string_view text);

// `text` with each maximal invalid subsequence replaced by U+FFFD; `text` itself if valid.
std::string SanitizeUtf8(std::string_view text);

}  // namespace kvault
