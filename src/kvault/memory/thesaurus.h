// memory/thesaurus.h: related words from WordNet, for query expansion in the chunk index
// (lexical search that bridges "car" and "automobile", "doctor" and "physician", "movie" and
// "film" without an embedding model). WordNet's relations are what they are: "sailboat" is a
// "sailing vessel", not a "boat", and an "apartment" is only the sixth sense of "flat". Reads the
// WordNet 3.0 database files as Debian's `wordnet-base` package installs them (/usr/share/wordnet:
// index.noun, data.noun, ..., noun.exc, ...); no other library.
//
// For a word, Related() gives: the base form (WordNet's "morphy": exception lists, then
// suffix rules, "bought" -> "buy", "sisters" -> "sister"), the other words of the synsets of
// its two most frequent senses as a noun, a verb, an adjective and an adverb, and the words of the
// direct hypernyms and hyponyms of its most frequent sense. Multi-word lemmas come with spaces
// ("moving picture"). The words are what a query may OR in at a lower weight; they are not
// filtered for stop words (the caller's parser does that).
//
// The index files are read into memory at Open (about 6 MB); synsets are read from the data
// files on demand with pread, so Related() costs a few binary searches and reads.
//
// Thread-safety: immutable after Open; Related() may be called from any thread.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "kvault/base/result.h"

namespace kvault::memory {

class Thesaurus {
 public:
  // Opens the WordNet files in `dir`. NotFound if index.noun or data.noun is missing.
  static Result<std::unique_ptr<Thesaurus>> Open(const std::string& dir);
  // The process-wide thesaurus from $KVAULT_WORDNET_DIR or /usr/share/wordnet, opened on first
  // use; null when the files are absent (query expansion is then off; logged once).
  static const Thesaurus* Default();
  ~Thesaurus();
  Thesaurus(const Thesaurus&) = delete;
  Thesaurus& operator=(const Thesaurus&) = delete;

  // Words related to `word` (lowercase, one word or words joined by spaces), `word` itself
  // excluded, most closely related first, at most `max_words`. Empty for a word WordNet lacks.
  std::vector<std::string> Related(std::string_view word, size_t max_words = 24) const;
  // Whether WordNet has `word` (lowercase), or its base form, as a noun, verb or adjective:
  // an everyday word rather than a name ("yesterday" yes, "ottoline" no).
  bool Knows(std::string_view word) const;

 private:
  struct Part;  // one part of speech: its index lines, exceptions and data file
  Thesaurus();
  std::vector<std::unique_ptr<Part>> parts_;  // noun, verb, adjective, adverb
};

}  // namespace kvault::memory
