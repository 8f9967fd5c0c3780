#include "kvault/memory/search_terms.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <unordered_set>

namespace kvault::memory {
namespace {

// English function words (after NLTK's list), contractions as unicode61 splits them ("don't"
// -> "don", "t"), and the vocabulary of asking about the past.
constexpr std::array kStopWords = {
    "a",       "about",      "above",     "after",     "again",    "against",    "ago",
    "all",     "also",       "am",        "an",        "and",      "any",        "are",
    "aren",    "as",         "asked",     "at",        "be",       "because",    "been",
    "before",  "being",      "below",     "between",   "both",     "but",        "by",
    "can",     "could",      "couldn",    "did",       "didn",     "do",         "does",
    "doesn",   "doing",      "don",       "down",      "during",   "each",       "earlier",
    "else",    "ever",       "few",       "for",       "forgot",   "forgotten",  "from",
    "further", "had",        "hadn",      "has",       "hasn",     "have",       "haven",
    "having",  "he",         "her",       "here",      "hers",     "herself",    "him",
    "himself", "his",        "how",       "i",         "if",       "in",         "into",
    "is",      "isn",        "it",        "its",       "itself",   "just",       "know",
    "ll",      "me",         "mention",   "mentioned", "might",    "more",       "most",
    "must",    "my",         "myself",    "no",        "nor",      "not",        "now",
    "of",      "off",        "on",        "once",      "only",     "or",         "other",
    "our",     "ours",       "ourselves", "out",       "over",     "own",        "please",
    "re",      "recall",     "remember",  "remind",    "s",        "said",       "same",
    "say",     "she",        "should",    "shouldn",   "so",       "some",       "such",
    "t",       "tell",       "than",      "that",      "the",      "their",      "theirs",
    "them",    "themselves", "then",      "there",     "these",    "they",       "this",
    "those",   "through",    "to",        "told",      "too",      "under",      "until",
    "up",      "us",         "ve",        "very",      "was",      "wasn",       "we",
    "were",    "weren",      "what",      "when",      "where",    "which",      "while",
    "who",     "whom",       "why",       "will",      "with",     "won",        "would",
    "wouldn",  "you",        "your",      "yours",     "yourself", "yourselves",
};

bool IsStopWord(const std::string& word) {
  static const std::unordered_set<std::string_view> kSet(kStopWords.begin(), kStopWords.end());
  return kSet.contains(word);
}

bool IsWordByte(unsigned char c) { return std::isalnum(c) || c >= 0x80; }

}  // namespace

std::vector<std::string> SearchTerms(std::string_view text, size_t max_terms) {
  std::vector<std::string> terms;
  std::unordered_set<std::string> seen;
  std::string word;
  auto flush = [&] {
    if (word.size() >= 2 && !IsStopWord(word) && terms.size() < max_terms &&
        seen.insert(word).second) {
      terms.push_back(word);
    }
    word.clear();
  };
  for (char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (IsWordByte(c)) {
      word.push_back(static_cast<char>(c < 0x80 ? std::tolower(c) : c));
    } else {
      flush();
    }
  }
  flush();
  return terms;
}

std::string MatchExpression(std::span<const std::string> terms) {
  std::string expression;
  for (const std::string& term : terms) {
    if (!expression.empty()) expression += " OR ";
    expression += '"' + term + '"';  // terms hold no '"': it splits words
  }
  return expression;
}

}  // namespace kvault::memory
