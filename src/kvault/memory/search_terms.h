// memory/search_terms.h: turns free text (a user's question, or a question plus the text a
// model generated before hedging) into the full-text query the chunk index runs.
//
// Words are split at anything that is not a letter, digit or non-ASCII byte (as FTS5's
// unicode61 tokenizer splits the indexed text), lowercased, and dropped if they are English
// stop words, words about the act of remembering ("say", "told", "remember", "recall"...;
// a recall question is full of them and they say nothing about what is being recalled) or
// single characters. Stemming is left to FTS5's porter tokenizer, applied to both sides.
//
// Thread-safety: pure functions.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace kvault::memory {

// The distinct content words of `text` in order of first appearance, at most max_terms.
std::vector<std::string> SearchTerms(std::string_view text, size_t max_terms = 64);

// An FTS5 MATCH expression: each term quoted (FTS5 syntax in the text stays inert), joined by
// OR. Empty for no terms.
std::string MatchExpression(std::span<const std::string> terms);

}  // namespace kvault::memory
