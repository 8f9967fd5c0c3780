#include "kvault/memory/search_terms.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <unordered_set>

#include "kvault/memory/thesaurus.h"

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

// Capitalized in every sentence, so they name no one in particular.
constexpr std::array kCalendarWords = {
    "monday",   "tuesday",  "wednesday", "thursday", "friday", "saturday", "sunday", "january",
    "february", "march",    "april",     "may",      "june",   "july",     "august", "september",
    "october",  "november", "december",  "dr",       "mr",     "mrs",      "ms",     "hi",
    "hello",    "today",    "yesterday", "tomorrow", "yes",    "oh"};

bool IsCalendarWord(std::string_view word) {
  return std::find(kCalendarWords.begin(), kCalendarWords.end(), word) != kCalendarWords.end();
}

// Related words per query term at most: synonyms come first in Thesaurus::Related.
constexpr size_t kRelatedPerTerm = 4;

}  // namespace

SearchQuery ParseSearchQuery(std::string_view text, size_t max_terms) {
  SearchQuery query;
  std::unordered_set<std::string> seen;
  std::string previous;              // the last content word ("" before the first)
  std::vector<std::string> between;  // the words after it, up to kMaxGap + 1 of them
  std::string word;
  auto flush = [&] {
    if (word.empty()) return;
    const bool content = word.size() >= 2 && !IsStopWord(word) &&
                         (seen.contains(word) || query.terms.size() < max_terms);
    if (!content) {
      if (between.size() <= SearchQuery::kMaxGap) between.push_back(std::move(word));
      word.clear();
      return;
    }
    if (seen.insert(word).second) query.terms.push_back(word);
    if (!previous.empty() && previous != word && between.size() <= SearchQuery::kMaxGap &&
        query.phrases.size() < max_terms) {
      std::string phrase = previous;
      for (const std::string& w : between) phrase += " " + w;
      query.phrases.push_back(phrase + " " + word);
    }
    previous = std::move(word);
    between.clear();
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
  return query;
}

std::vector<std::string> SearchTerms(std::string_view text, size_t max_terms) {
  return ParseSearchQuery(text, max_terms).terms;
}

SearchQuery WithoutWords(const SearchQuery& query, std::span<const std::string> words) {
  auto listed = [&words](std::string_view word) {
    return std::find(words.begin(), words.end(), word) != words.end();
  };
  SearchQuery out;
  for (const std::string& term : query.terms) {
    if (!listed(term)) out.terms.push_back(term);
  }
  for (const std::string& phrase : query.phrases) {
    bool keep = true;
    size_t start = 0;
    while (keep && start <= phrase.size()) {
      const size_t space = std::min(phrase.find(' ', start), phrase.size());
      keep = !listed(std::string_view(phrase).substr(start, space - start));
      start = space + 1;
    }
    if (keep) out.phrases.push_back(phrase);
  }
  return out;
}

std::string MatchExpression(const SearchQuery& query) {
  // Terms hold no '"' (it separates words), so quoting them makes them plain strings.
  std::string expression;
  auto add = [&](const std::string& clause) {
    expression += (expression.empty() ? "" : " OR ") + clause;
  };
  for (const std::string& term : query.terms) add('"' + term + '"');
  for (const std::string& phrase : query.phrases) add('"' + phrase + '"');
  return expression;
}

std::string PlainMatchExpression(std::string_view text, size_t max_terms) {
  std::vector<std::string> words;
  std::string word;
  auto flush = [&] {
    if (!word.empty() && words.size() < max_terms &&
        std::find(words.begin(), words.end(), word) == words.end()) {
      words.push_back(word);
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
  std::string expression;
  for (const std::string& w : words) expression += (expression.empty() ? "\"" : " OR \"") + w + '"';
  return expression;
}

std::string ExpansionExpression(const SearchQuery& query, const Thesaurus& thesaurus,
                                size_t max_terms) {
  std::string expression;
  for (const std::string& word : ExpansionWords(query, thesaurus, max_terms)) {
    expression += (expression.empty() ? "\"" : " OR \"") + word + '"';
  }
  return expression;
}

std::vector<std::string> ExpansionWords(const SearchQuery& query, const Thesaurus& thesaurus,
                                        size_t max_terms) {
  std::unordered_set<std::string> seen(query.terms.begin(), query.terms.end());
  std::vector<std::string> sources = query.terms;
  for (const std::string& phrase : query.phrases) {
    if (std::count(phrase.begin(), phrase.end(), ' ') == 1) sources.push_back(phrase);
  }
  std::vector<std::string> words;
  for (const std::string& source : sources) {
    size_t from_source = 0;
    for (const std::string& related : thesaurus.Related(source)) {
      if (words.size() >= max_terms || from_source >= kRelatedPerTerm) break;
      // A related word the parser would drop (a stop word, one letter) adds nothing.
      const SearchQuery parsed = ParseSearchQuery(related);
      if (parsed.terms.empty() || !seen.insert(related).second) continue;
      words.push_back(related);
      ++from_source;
    }
  }
  return words;
}

std::vector<std::string> SeedNames(std::string_view text, const SearchQuery& query,
                                   const Thesaurus* thesaurus) {
  std::vector<std::string> names;
  bool sentence_start = true;
  std::string word;
  bool capitalized = false;
  auto flush = [&] {
    if (word.empty()) return;
    const bool name_like = !sentence_start || (thesaurus != nullptr && !thesaurus->Knows(word));
    if (capitalized && name_like && word.size() >= 3 && !IsStopWord(word) &&
        !IsCalendarWord(word) &&
        std::find(query.terms.begin(), query.terms.end(), word) == query.terms.end() &&
        std::find(names.begin(), names.end(), word) == names.end()) {
      names.push_back(word);
    }
    sentence_start = false;
    word.clear();
  };
  for (char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (IsWordByte(c)) {
      if (word.empty()) capitalized = std::isupper(c) != 0;
      word.push_back(static_cast<char>(c < 0x80 ? std::tolower(c) : c));
      continue;
    }
    flush();
    if (ch == '.' || ch == '!' || ch == '?' || ch == '\n' || ch == ':') sentence_start = true;
  }
  flush();
  return names;
}

}  // namespace kvault::memory
