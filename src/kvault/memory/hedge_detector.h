// memory/hedge_detector.h: watches a streamed response for phrases with which a model admits
// it has lost part of the conversation ("if I recall", "I don't remember", ...). The
// conversation layer runs generated text through it before the client sees it; on a hit it
// stops the sequence, recalls from the fog with the question plus the text before the hit,
// rebuilds the prompt and resumes generation.
//
// Like a stop-string matcher, it holds back any tail that could be the start of a phrase, so
// the client never receives part of a hedge: the text before the hit is emitted, the phrase
// and whatever followed it in the same push are discarded, and generation resumes after the
// emitted text. Matching ignores ASCII case, treats runs of whitespace as one space and curly
// apostrophes (U+2018, U+2019, U+02BC) as "'", and needs a phrase to start at a word boundary
// ("wif I recall" is no hit). A phrase may be split across any number of pushes.
//
// Thread-safety: one detector per response stream.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace kvault::memory {

struct HedgeOutput {
  std::string text;        // safe to send to the client now
  bool hit = false;        // a phrase matched: `text` ends just before it
  std::string phrase;      // on a hit: the configured phrase (normalized) that matched
  std::string before_hit;  // on a hit: everything emitted since construction, `text` included
};

class HedgeDetector {
 public:
  // "if I recall", "I don't remember", "I'm not sure what you said", ... (see the .cc).
  static std::vector<std::string> DefaultPhrases();

  // Empty phrases are ignored; an empty list detects nothing and holds nothing back.
  explicit HedgeDetector(std::vector<std::string> phrases = DefaultPhrases());

  // Feeds the next piece of generated text. After a hit the detector keeps going: text pushed
  // later (the resumed generation) is watched afresh.
  HedgeOutput Push(std::string_view text);
  // Whatever is held back, at the end of the stream.
  std::string Flush();

  const std::vector<std::string>& phrases() const { return phrases_; }

 private:
  std::vector<std::string> phrases_;  // normalized
  std::string held_;                  // received, not yet emitted (original bytes)
  std::string emitted_;               // everything emitted so far
};

// Lowercase ASCII, curly apostrophes to "'", whitespace runs to one space, trimmed.
std::string NormalizeHedgeText(std::string_view text);

}  // namespace kvault::memory
