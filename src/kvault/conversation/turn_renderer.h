// conversation/turn_renderer.h: a conversation's messages as the model's tokens, one message
// at a time (memory::TurnRenderer), so that a long conversation's history is rendered once,
// stored as tokens (memory::TokenStore) and any window of it is a concatenation of turns.
//
// WART: each message is rendered on its own through the model's chat template. That is exact
// for templates that render messages independently (ChatML, Llama 3, and most others); a
// template that merges messages (e.g. a system prompt folded into the first user turn, as
// Llama 2's does) renders slightly differently than with all messages at once.
//
// Thread-safety: immutable after construction; safe to share.
#pragma once

#include <string>
#include <vector>

#include "kvault/base/result.h"
#include "kvault/engine/chat_template.h"
#include "kvault/engine/tokenizer.h"
#include "kvault/memory/window_builder.h"

namespace kvault::conversation {

class ChatTurnRenderer final : public memory::TurnRenderer {
 public:
  ChatTurnRenderer(const engine::Tokenizer* tokenizer, const engine::ChatTemplate* chat_template);

  Result<std::vector<int32_t>> Render(memory::Role role, std::string_view text) override;
  std::vector<int32_t> GenerationPrompt() override { return generation_prompt_; }
  Result<std::vector<int32_t>> Tokenize(std::string_view text) override;
  // Tokens every prompt starts with (BOS for vocabularies that want one; often none).
  const std::vector<int32_t>& prompt_start() const { return prompt_start_; }
  // A message's text without its template: for search results and recalled chunks.
  std::string Text(std::span<const int32_t> tokens) const;

 private:
  const engine::Tokenizer* tokenizer_;
  const engine::ChatTemplate* chat_template_;
  std::vector<int32_t> generation_prompt_;
  std::vector<int32_t> prompt_start_;
};

}  // namespace kvault::conversation
