// memory/search_terms.h: turns free text (a user's question, or a question plus the text a
// model generated before hedging) into the full-text query the chunk index runs.
//
// Words are split at anything that is not a letter, digit or non-ASCII byte (as FTS5's
// unicode61 tokenizer splits the indexed text) and lowercased. Content words are the words
// left after dropping English stop words, words about the act of remembering ("say", "told",
// "remember", "recall"...: a recall question is full of them and they say nothing about what
// is being recalled) and single characters. Stemming is FTS5's porter tokenizer, applied to
// both sides.
//
// The query ORs the content words (BM25 ranks by them) with a phrase for each two content
// words that follow each other closely in the text, with the words between them as written
// ("sister s dog" for "my sister's dog's name"). A chunk that keeps the question's phrasing
// ("my sister's dog is called Biscuit") then scores above chunks that only mention both words
// ("the dog my sister chose", "your sister. A dog needs..."): the ordered window of the
// sequential dependence model (ref: Metzler and Croft, "A Markov random field model for term
// dependencies", SIGIR 2005). Only the question's own words are used.
//
// Thread-safety: pure functions.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace kvault::memory {

class Thesaurus;

struct SearchQuery {
  std::vector<std::string> terms;  // distinct content words, in order of first appearance
  // Consecutive content words at most kMaxGap words apart, with the words between them:
  // "locker at the gym".
  std::vector<std::string> phrases;

  static constexpr size_t kMaxGap = 3;
  bool empty() const { return terms.empty(); }
};

// At most max_terms terms and max_terms phrases.
SearchQuery ParseSearchQuery(std::string_view text, size_t max_terms = 64);

// The distinct content words of `text` (ParseSearchQuery(text).terms).
std::vector<std::string> SearchTerms(std::string_view text, size_t max_terms = 64);

// `query` without the terms in `words` and the phrases holding one of them: the words of a
// period the question names ("may", "2023"), which the period itself stands for.
SearchQuery WithoutWords(const SearchQuery& query, std::span<const std::string> words);

// An FTS5 MATCH expression: each term and phrase quoted (FTS5 syntax in the text stays inert),
// joined by OR. Empty for an empty query.
std::string MatchExpression(const SearchQuery& query);

// The words a thesaurus relates to the query's terms (and to two adjacent terms it knows as one
// lemma: "family name"), lowercased content words and phrases that are not terms already, as
// an FTS5 expression ORing them; "" for none. At most `max_terms`, a few per term, so one
// term with many relatives does not crowd out the others.
std::string ExpansionExpression(const SearchQuery& query, const Thesaurus& thesaurus,
                                size_t max_terms = 12);
// The same words, as a list.
std::vector<std::string> ExpansionWords(const SearchQuery& query, const Thesaurus& thesaurus,
                                        size_t max_terms = 12);

// Names in `text` to seed a second retrieval step: capitalized words that are not stop words,
// weekdays or months, nor terms of `query`, and that either do not start a sentence or are
// unknown to `thesaurus` ("Ottoline adopted...", not "Yesterday I..."; none that start a
// sentence without a thesaurus); distinct, lowercased, in order.
std::vector<std::string> SeedNames(std::string_view text, const SearchQuery& query,
                                   const Thesaurus* thesaurus = nullptr);

// Every word of `text` (stop words too), lowercased, quoted and ORed: plain BM25's query.
std::string PlainMatchExpression(std::string_view text, size_t max_terms = 64);

}  // namespace kvault::memory
