// engine/grammar_check.h: bounds on a GBNF grammar before llama.cpp's parser sees it.
// llama.cpp parses grammars by recursive descent, one stack frame per nesting level, and
// checks no depth: a request with 100,000 nested parentheses overflows the engine's stack
// and kills the server. This scan is iterative and refuses what the parser cannot take.
//
// Thread-safety: pure functions.
#pragma once

#include <cstddef>
#include <string_view>

#include "kvault/base/status.h"

namespace kvault::engine {

inline constexpr size_t kMaxGrammarBytes = 256 * 1024;
inline constexpr int kMaxGrammarDepth = 64;  // nested ( ... ) groups

// OK if `gbnf` is within the bounds above, has no NUL byte, no empty character range (such
// as [z-a]: llama.cpp parses it, then throws at the first token that reaches it), and its
// quotes, character classes and groups are closed; InvalidArgument (ErrorDetail::kInvalidGrammar)
// saying what is wrong and where otherwise. Passing says nothing of the grammar's meaning:
// llama.cpp parses it.
Status CheckGrammarText(std::string_view gbnf);

}  // namespace kvault::engine
