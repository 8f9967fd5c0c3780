#include "kvault/conversation/turn_renderer.h"

#include "kvault/base/status_macros.h"

namespace kvault::conversation {

ChatTurnRenderer::ChatTurnRenderer(const engine::Tokenizer* tokenizer,
                                   const engine::ChatTemplate* chat_template)
    : tokenizer_(tokenizer), chat_template_(chat_template) {
  // The generation prompt is what add_generation_prompt appends after the last message.
  const engine::ChatMessage probe{"user", "x"};
  const Result<std::string> without = chat_template->Apply({&probe, 1}, false);
  const Result<std::string> with = chat_template->Apply({&probe, 1}, true);
  if (without.ok() && with.ok() && with->starts_with(*without)) {
    generation_prompt_ = tokenizer->Tokenize(with->substr(without->size()), {false, true})
                             .value_or(std::vector<llama_token>{});
  }
  prompt_start_ = tokenizer->Tokenize("", {true, true}).value_or(std::vector<llama_token>{});
}

Result<std::vector<int32_t>> ChatTurnRenderer::Render(memory::Role role, std::string_view text) {
  const engine::ChatMessage message{std::string(memory::RoleName(role)), std::string(text)};
  KV_ASSIGN_OR_RETURN(std::string rendered, chat_template_->Apply({&message, 1}, false));
  KV_ASSIGN_OR_RETURN(
      std::vector<llama_token> tokens,
      tokenizer_->Tokenize(rendered, {.add_special = false, .parse_special = true}));
  if (tokens.empty()) return InvalidArgumentError("a message rendered to no tokens");
  return tokens;
}

Result<std::vector<int32_t>> ChatTurnRenderer::Tokenize(std::string_view text) {
  return tokenizer_->Tokenize(std::string(text), {.add_special = false, .parse_special = false});
}

std::string ChatTurnRenderer::Text(std::span<const int32_t> tokens) const {
  return tokenizer_->Detokenize(tokens, /*render_special=*/false);
}

}  // namespace kvault::conversation
