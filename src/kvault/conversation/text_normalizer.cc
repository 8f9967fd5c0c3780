#include "kvault/conversation/text_normalizer.h"

#include <re2/re2.h>

#include "kvault/base/status_macros.h"

namespace kvault::conversation {

struct TextNormalizer::Compiled {
  Compiled(const std::string& pattern, std::string rewrite)
      : re(pattern, RE2::Quiet), placeholder(std::move(rewrite)) {}
  RE2 re;
  std::string placeholder;
};

Result<std::vector<NormalizeRule>> ParseNormalizeRules(const Json& json) {
  if (!json.is_array()) {
    return InvalidArgumentError(
        "normalisation rules: expected a JSON array of {\"pattern\", \"placeholder\", "
        "\"model\"?}");
  }
  std::vector<NormalizeRule> rules;
  for (size_t i = 0; i < json.size(); ++i) {
    const Json& entry = json[i];
    const std::string where = "normalisation rule " + std::to_string(i + 1);
    if (!entry.is_object()) return InvalidArgumentError(where + ": not an object");
    for (const auto& [key, value] : entry.items()) {
      if (key != "pattern" && key != "placeholder" && key != "model") {
        return InvalidArgumentError(where + ": unknown key '" + key + "'");
      }
      if (!value.is_string())
        return InvalidArgumentError(where + ": '" + key + "' must be a string");
    }
    if (!entry.contains("pattern") || entry["pattern"].get<std::string>().empty()) {
      return InvalidArgumentError(where + ": 'pattern' is required");
    }
    if (!entry.contains("placeholder")) {
      return InvalidArgumentError(where + ": 'placeholder' is required");
    }
    rules.push_back({entry["pattern"], entry["placeholder"], entry.value("model", "")});
  }
  return rules;
}

Result<std::unique_ptr<TextNormalizer>> TextNormalizer::Create(
    const std::vector<NormalizeRule>& rules, const std::string& model_name) {
  std::unique_ptr<TextNormalizer> normalizer(new TextNormalizer);
  for (size_t i = 0; i < rules.size(); ++i) {
    const NormalizeRule& rule = rules[i];
    const std::string where = "normalisation rule " + std::to_string(i + 1);
    auto compiled = std::make_unique<Compiled>(rule.pattern, rule.placeholder);
    if (!compiled->re.ok()) {
      return InvalidArgumentError(where + ": bad pattern '" + rule.pattern +
                                  "': " + compiled->re.error());
    }
    std::string error;
    if (!compiled->re.CheckRewriteString(rule.placeholder, &error)) {
      return InvalidArgumentError(where + ": bad placeholder '" + rule.placeholder + "': " + error);
    }
    if (!rule.model.empty() && model_name.find(rule.model) == std::string::npos) continue;
    normalizer->rules_.push_back(std::move(compiled));
  }
  return normalizer;
}

TextNormalizer::~TextNormalizer() = default;

std::string TextNormalizer::Apply(std::string_view text) const {
  std::string out(text);
  for (const std::unique_ptr<Compiled>& rule : rules_) {
    replacements_.fetch_add(RE2::GlobalReplace(&out, rule->re, rule->placeholder));
  }
  return out;
}

void TextNormalizer::ApplyTo(std::vector<engine::ChatMessage>* messages) const {
  if (rules_.empty()) return;
  for (engine::ChatMessage& message : *messages) message.content = Apply(message.content);
}

}  // namespace kvault::conversation
