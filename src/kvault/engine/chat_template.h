// engine/chat_template.h: renders chat messages into the prompt text the model was trained on,
// with llama.cpp's built-in template support (llama_chat_apply_template: it recognises the
// common templates by their Jinja source). A model without a template, or with one llama.cpp
// does not recognise, gets ChatML.
//
// Thread-safety: immutable; safe to share.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "kvault/base/result.h"

namespace kvault::engine {

class Model;

struct ChatMessage {
  std::string role;  // "system", "user", "assistant", "tool"
  std::string content;
  int64_t time = 0;  // Unix seconds when it was said (the request's "timestamp"); 0 = now
};

class ChatTemplate {
 public:
  // The model's template if llama.cpp supports it, ChatML otherwise.
  static ChatTemplate ForModel(const Model& model);
  // A built-in template by llama.cpp's name ("chatml", "llama3", ...).
  static Result<ChatTemplate> Named(const std::string& name);

  // The prompt for `messages`, ending with the assistant's turn opener if
  // add_generation_prompt.
  Result<std::string> Apply(std::span<const ChatMessage> messages,
                            bool add_generation_prompt) const;

  // "model" when the model's own template is used, otherwise the built-in name.
  const std::string& name() const { return name_; }

 private:
  ChatTemplate(std::string source, std::string name)
      : source_(std::move(source)), name_(std::move(name)) {}

  std::string source_;  // what llama_chat_apply_template receives
  std::string name_;
};

}  // namespace kvault::engine
