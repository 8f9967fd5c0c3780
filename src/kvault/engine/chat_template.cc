#include "kvault/engine/chat_template.h"

#include <vector>

#include <llama.h>

#include "kvault/engine/model.h"

namespace kvault::engine {
namespace {

constexpr char kChatMl[] = "chatml";

// Returns the rendered size, or a negative value if llama.cpp does not know the template.
int32_t Render(const std::string& source, std::span<const ChatMessage> messages,
               bool add_generation_prompt, std::string* out) {
  std::vector<llama_chat_message> chat;
  chat.reserve(messages.size());
  size_t n_chars = 0;
  for (const ChatMessage& m : messages) {
    chat.push_back({m.role.c_str(), m.content.c_str()});
    n_chars += m.role.size() + m.content.size();
  }
  out->assign(n_chars * 2 + 256, '\0');
  int32_t n =
      llama_chat_apply_template(source.c_str(), chat.data(), chat.size(), add_generation_prompt,
                                out->data(), static_cast<int32_t>(out->size()));
  if (n > static_cast<int32_t>(out->size())) {
    out->assign(static_cast<size_t>(n), '\0');
    n = llama_chat_apply_template(source.c_str(), chat.data(), chat.size(), add_generation_prompt,
                                  out->data(), n);
  }
  if (n >= 0) out->resize(static_cast<size_t>(n));
  return n;
}

}  // namespace

ChatTemplate ChatTemplate::ForModel(const Model& model) {
  std::optional<std::string> source = model.ChatTemplateSource();
  if (source && !source->empty()) {
    const ChatMessage probe[] = {{"system", "s"}, {"user", "u"}};
    std::string rendered;
    if (Render(*source, probe, true, &rendered) >= 0) return ChatTemplate(*source, "model");
  }
  return ChatTemplate(kChatMl, kChatMl);
}

Result<ChatTemplate> ChatTemplate::Named(const std::string& name) {
  const ChatMessage probe[] = {{"user", "u"}};
  std::string rendered;
  if (Render(name, probe, true, &rendered) < 0) {
    return InvalidArgumentError("unknown chat template '" + name + "'");
  }
  return ChatTemplate(name, name);
}

Result<std::string> ChatTemplate::Apply(std::span<const ChatMessage> messages,
                                        bool add_generation_prompt) const {
  std::string prompt;
  if (Render(source_, messages, add_generation_prompt, &prompt) < 0) {
    return InvalidArgumentError("chat template '" + name_ + "' cannot render these messages");
  }
  return prompt;
}

}  // namespace kvault::engine
