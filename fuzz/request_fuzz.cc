// libFuzzer target: the chat and completion request parsers (server/openai_schema.h) on
// arbitrary bytes, as an HTTP body would bring them. Any crash, leak or UB is a finding.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "kvault/base/json.h"
#include "kvault/server/openai_schema.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  kvault::Result<kvault::Json> json = kvault::ParseJson(text);
  if (!json.ok()) return 0;
  kvault::server::ParseChatCompletionRequest(*json).status().IgnoreError();
  kvault::server::ParseCompletionRequest(*json).status().IgnoreError();
  return 0;
}
