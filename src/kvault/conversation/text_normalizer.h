// conversation/text_normalizer.h: template normalisation rules (the KVern seed): regular
// expressions applied to message text before it is tokenized, so a system prompt that injects
// today's date or a request id renders to the same tokens every time and its prefix stays
// cached. Off unless rules are given (--normalize-rules FILE.json).
//
// A rule is {"pattern": RE2 syntax, "placeholder": its RE2 rewrite (\1 .. \9 refer to groups),
// "model": optional}: a rule with a model applies only when the served model's name contains
// it. Rules apply in order, each to every match. RE2 runs in time linear in the text, so a
// rule cannot make a request slow whatever it is sent.
//
// What it changes for the model: it sees the placeholder, not the text (a model asked "what
// is the date?" no longer knows it), and the conversation's stored history holds the
// normalised text, as the model saw it.
//
// Thread-safety: immutable after Create; Apply may be called from any thread.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "kvault/base/json.h"
#include "kvault/base/result.h"
#include "kvault/engine/chat_template.h"

namespace re2 {
class RE2;
}

namespace kvault::conversation {

struct NormalizeRule {
  std::string pattern;
  std::string placeholder;
  std::string model;  // "" = every model
};

// The rules of a JSON array; InvalidArgument naming the entry for anything malformed.
Result<std::vector<NormalizeRule>> ParseNormalizeRules(const Json& json);

class TextNormalizer {
 public:
  // Compiles the rules that apply to `model_name`; InvalidArgument naming the first rule
  // whose pattern or placeholder is bad.
  static Result<std::unique_ptr<TextNormalizer>> Create(const std::vector<NormalizeRule>& rules,
                                                        const std::string& model_name);
  ~TextNormalizer();

  // `text` with every rule applied; counts what was replaced.
  std::string Apply(std::string_view text) const;
  void ApplyTo(std::vector<engine::ChatMessage>* messages) const;
  size_t rules() const { return rules_.size(); }
  int64_t replacements() const { return replacements_.load(); }

 private:
  struct Compiled;
  TextNormalizer() = default;
  std::vector<std::unique_ptr<Compiled>> rules_;
  mutable std::atomic<int64_t> replacements_{0};
};

}  // namespace kvault::conversation
