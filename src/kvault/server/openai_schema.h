// server/openai_schema.h: the OpenAI request and response shapes kvault speaks: parsing and
// validating /v1/chat/completions and /v1/completions bodies (every wrong type, range or
// unknown role becomes InvalidArgument naming the field), and building responses and stream
// chunks exactly as OpenAI's API does.
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "kvault/base/json.h"
#include "kvault/base/result.h"
#include "kvault/conversation/manager.h"
#include "kvault/engine/chat_template.h"
#include "kvault/engine/sampler.h"

namespace kvault::server {

// The parts of a chat or completion request kvault acts on.
struct OpenAiRequest {
  std::string model;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  conversation::GenerateRequest generate;
};

Result<OpenAiRequest> ParseChatCompletionRequest(const Json& body);
// The "messages" array of a body (also POST /v1/conversations/append).
// The object's "timestamp" (kvault's extension: ISO 8601 or Unix seconds, 1970 to 2106) in
// Unix seconds; 0 when absent or null. InvalidArgument naming `path` otherwise.
Result<int64_t> ParseTimestamp(const Json& object, const std::string& path);
Result<std::vector<engine::ChatMessage>> ParseMessages(const Json& body);
Result<OpenAiRequest> ParseCompletionRequest(const Json& body);
// The body's "history" field (absent: auto); InvalidArgument for another value.
Result<conversation::HistoryMode> ParseHistoryMode(const Json& body);
// kvault.history of a response: {action, reason, new_turns, new_tokens[, from_turn,
// archived_turns, archived_branch]}.
Json HistoryJson(const conversation::IngestResult& result);
// kvault.recall_kv of a response, and the totals of /v1/cache/stats.
Json RecallKvJson(const conversation::RecallKvCounts& counts);

// "chatcmpl-<24 hex>" or "cmpl-<24 hex>".
std::string NewResponseId(const std::string& prefix);
int64_t UnixSeconds();

struct ResponseMeta {
  std::string id;
  std::string model;
  int64_t created = 0;
  std::string system_fingerprint;
};

Json UsageJson(const conversation::GenerateResult& result);
// OpenAI's finish_reason for an outcome ("stop", "length").
std::string FinishReasonText(engine::FinishReason reason);

Json ChatCompletionJson(const ResponseMeta& meta, const conversation::GenerateResult& result);
// A chat.completion.chunk. `delta` is {"role": ...} / {"content": ...} / {}; finish_reason
// null unless given; usage null unless include_usage (then the final usage chunk carries it).
Json ChatChunkJson(const ResponseMeta& meta, Json delta, const Json& finish_reason,
                   bool include_usage);
Json ChatUsageChunkJson(const ResponseMeta& meta, const conversation::GenerateResult& result);

Json CompletionJson(const ResponseMeta& meta, const conversation::GenerateResult& result);
Json CompletionChunkJson(const ResponseMeta& meta, const std::string& text,
                         const Json& finish_reason, bool include_usage);
Json CompletionUsageChunkJson(const ResponseMeta& meta, const conversation::GenerateResult& result);

}  // namespace kvault::server
