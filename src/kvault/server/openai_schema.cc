#include "kvault/server/openai_schema.h"

#include <chrono>
#include <cmath>
#include <random>

#include "kvault/base/status_macros.h"
#include "kvault/base/time_text.h"
#include "kvault/memory/token_store.h"

namespace kvault::server {
namespace {

constexpr size_t kMaxStops = 4;
constexpr size_t kMaxConversationIdBytes = 256;

Status FieldError(const std::string& path, const std::string& what) {
  return InvalidArgumentError("'" + path + "' " + what);
}

// Text of a message's content: a string, or an array of {"type": "text", "text": ...} parts.
Result<std::string> ContentText(const Json& message, const std::string& path) {
  auto it = message.find("content");
  if (it == message.end() || it->is_null()) return std::string();
  if (it->is_string()) return it->get_ref<const std::string&>();
  if (!it->is_array()) return FieldError(path + ".content", "must be a string or an array");
  std::string text;
  for (size_t i = 0; i < it->size(); ++i) {
    const Json& part = (*it)[i];
    const std::string part_path = path + ".content[" + std::to_string(i) + "]";
    KV_ASSIGN_OR_RETURN(std::optional<std::string> type, OptionalString(part, "type", part_path));
    if (!part.is_object() || type != "text") {
      return FieldError(part_path, "must be a text part ({\"type\": \"text\", \"text\": ...})");
    }
    KV_ASSIGN_OR_RETURN(std::optional<std::string> part_text,
                        OptionalString(part, "text", part_path + ".text"));
    if (!part_text) return FieldError(part_path + ".text", "is required");
    text += *part_text;
  }
  return text;
}

}  // namespace

Result<int64_t> ParseTimestamp(const Json& object, const std::string& path) {
  auto it = object.find("timestamp");
  if (it == object.end() || it->is_null()) return int64_t{0};
  constexpr const char* kForm =
      "must be an ISO 8601 date-time (\"2023-05-03T10:00:00Z\") or Unix seconds";
  std::optional<int64_t> seconds;
  if (it->is_string()) {
    seconds = ParseIso8601(it->get_ref<const std::string&>());
  } else if (it->is_number()) {
    const double value = it->get<double>();
    if (std::isfinite(value) && value >= 0 && value < 1e12) seconds = static_cast<int64_t>(value);
  }
  if (!seconds) return FieldError(path, kForm);
  if (*seconds < 1 || *seconds > memory::TokenStore::kMaxTime) {
    return FieldError(path, "must be between 1970 and 2106 (Unix seconds, not milliseconds)");
  }
  return *seconds;
}

Result<std::vector<engine::ChatMessage>> ParseMessages(const Json& body) {
  auto it = body.find("messages");
  if (it == body.end() || it->is_null()) return FieldError("messages", "is required");
  if (!it->is_array()) return FieldError("messages", "must be an array");
  if (it->empty()) return FieldError("messages", "must not be empty");
  std::vector<engine::ChatMessage> messages;
  for (size_t i = 0; i < it->size(); ++i) {
    const Json& message = (*it)[i];
    const std::string path = "messages[" + std::to_string(i) + "]";
    if (!message.is_object()) return FieldError(path, "must be an object");
    KV_ASSIGN_OR_RETURN(std::optional<std::string> role,
                        OptionalString(message, "role", path + ".role"));
    if (!role) return FieldError(path + ".role", "is required");
    if (*role == "developer") role = "system";
    if (*role != "system" && *role != "user" && *role != "assistant" && *role != "tool") {
      return FieldError(path + ".role",
                        "must be system, developer, user, assistant or tool, not '" + *role + "'");
    }
    KV_ASSIGN_OR_RETURN(std::string content, ContentText(message, path));
    if (content.empty() && *role != "assistant") return FieldError(path + ".content", "is empty");
    if (content.find('\0') != std::string::npos) {
      return FieldError(path + ".content", "contains a NUL character");
    }
    KV_ASSIGN_OR_RETURN(const int64_t time, ParseTimestamp(message, path + ".timestamp"));
    messages.push_back({*role, std::move(content), time});
  }
  return messages;
}

namespace {

Result<std::vector<std::string>> ParseStop(const Json& body) {
  auto it = body.find("stop");
  if (it == body.end() || it->is_null()) return std::vector<std::string>();
  if (it->is_string()) return std::vector<std::string>{it->get<std::string>()};
  if (!it->is_array()) return FieldError("stop", "must be a string or an array of strings");
  if (it->size() > kMaxStops) return FieldError("stop", "may hold at most 4 strings");
  std::vector<std::string> stops;
  for (const Json& stop : *it) {
    if (!stop.is_string()) return FieldError("stop", "must hold only strings");
    stops.push_back(stop.get<std::string>());
  }
  return stops;
}

Result<std::vector<llama_logit_bias>> ParseLogitBias(const Json& body) {
  std::vector<llama_logit_bias> biases;
  auto it = body.find("logit_bias");
  if (it == body.end() || it->is_null()) return biases;
  if (!it->is_object()) return FieldError("logit_bias", "must be an object");
  for (auto entry = it->begin(); entry != it->end(); ++entry) {
    const std::string& key = entry.key();
    char* end = nullptr;
    const long token = std::strtol(key.c_str(), &end, 10);
    if (key.empty() || *end != '\0' || token < 0 || token > INT32_MAX) {
      return FieldError("logit_bias", "keys must be token ids, not '" + key + "'");
    }
    if (!entry.value().is_number()) return FieldError("logit_bias", "values must be numbers");
    const double bias = entry.value().get<double>();
    if (!(bias >= -100 && bias <= 100))
      return FieldError("logit_bias", "values must be in [-100, 100]");
    biases.push_back({static_cast<llama_token>(token), static_cast<float>(bias)});
  }
  return biases;
}

// top_k, min_p and repeat_penalty as llama-server; presence_penalty and frequency_penalty as
// OpenAI (range [-2, 2]), over the last 64 tokens, as llama-server.
Status ParseSamplingExtras(const Json& body, engine::SamplingParams* sampling) {
  KV_ASSIGN_OR_RETURN(std::optional<int64_t> top_k, OptionalInteger(body, "top_k", "top_k"));
  if (top_k && (*top_k < 0 || *top_k > INT32_MAX)) return FieldError("top_k", "must be >= 0");
  sampling->top_k = static_cast<int32_t>(top_k.value_or(0));
  KV_ASSIGN_OR_RETURN(std::optional<double> min_p, OptionalNumber(body, "min_p", "min_p"));
  if (min_p && !(*min_p >= 0 && *min_p <= 1)) return FieldError("min_p", "must be in [0, 1]");
  sampling->min_p = static_cast<float>(min_p.value_or(0));
  KV_ASSIGN_OR_RETURN(std::optional<double> repeat,
                      OptionalNumber(body, "repeat_penalty", "repeat_penalty"));
  if (repeat && !(*repeat > 0 && *repeat <= 10)) {
    return FieldError("repeat_penalty", "must be in (0, 10]");
  }
  sampling->repeat_penalty = static_cast<float>(repeat.value_or(1));
  for (const auto& [name, field] :
       {std::pair{"presence_penalty", &engine::SamplingParams::presence_penalty},
        std::pair{"frequency_penalty", &engine::SamplingParams::frequency_penalty}}) {
    KV_ASSIGN_OR_RETURN(std::optional<double> penalty, OptionalNumber(body, name, name));
    if (penalty && !(*penalty >= -2 && *penalty <= 2))
      return FieldError(name, "must be in [-2, 2]");
    sampling->*field = static_cast<float>(penalty.value_or(0));
  }
  return Status::Ok();
}

// response_format: "text" (the default) or "json_object" (the reply is one JSON object, by
// grammar). A JSON schema is refused rather than ignored: the reply would not follow it.
Status ParseResponseFormat(const Json& body, engine::SamplingParams* sampling) {
  auto it = body.find("response_format");
  if (it == body.end() || it->is_null()) return Status::Ok();
  if (!it->is_object()) return FieldError("response_format", "must be an object");
  KV_ASSIGN_OR_RETURN(std::optional<std::string> type,
                      OptionalString(*it, "type", "response_format.type"));
  if (!type || *type == "text") return Status::Ok();
  if (*type == "json_schema") {
    return InvalidArgumentError(
        "response_format 'json_schema' is not supported; use 'json_object' or a GBNF 'grammar'");
  }
  if (*type != "json_object") {
    return FieldError("response_format.type", "must be 'text' or 'json_object'");
  }
  if (!sampling->grammar.empty()) {
    return FieldError("response_format", "cannot be combined with 'grammar'");
  }
  sampling->grammar = std::string(engine::JsonObjectGrammar());
  return Status::Ok();
}

// The fields chat and completion requests share.
Status ParseCommon(const Json& body, OpenAiRequest* request) {
  if (!body.is_object()) return InvalidArgumentError("the request body must be a JSON object");
  conversation::GenerateRequest& generate = request->generate;
  KV_ASSIGN_OR_RETURN(std::optional<std::string> model, OptionalString(body, "model", "model"));
  request->model = model.value_or("");
  KV_ASSIGN_OR_RETURN(std::optional<bool> stream, OptionalBool(body, "stream", "stream"));
  request->stream = stream.value_or(false);
  auto options = body.find("stream_options");
  if (options != body.end() && !options->is_null()) {
    if (!options->is_object()) return FieldError("stream_options", "must be an object");
    KV_ASSIGN_OR_RETURN(std::optional<bool> usage,
                        OptionalBool(*options, "include_usage", "stream_options.include_usage"));
    request->include_usage = usage.value_or(false);
  }
  KV_ASSIGN_OR_RETURN(std::optional<int64_t> n, OptionalInteger(body, "n", "n"));
  if (n && *n != 1) return FieldError("n", "must be 1 (kvault generates one choice)");

  KV_ASSIGN_OR_RETURN(std::optional<int64_t> max_tokens,
                      OptionalInteger(body, "max_tokens", "max_tokens"));
  KV_ASSIGN_OR_RETURN(std::optional<int64_t> max_completion_tokens,
                      OptionalInteger(body, "max_completion_tokens", "max_completion_tokens"));
  if (max_completion_tokens) max_tokens = max_completion_tokens;
  if (max_tokens) {
    if (*max_tokens < 1 || *max_tokens > INT32_MAX) {
      return FieldError("max_tokens", "must be a positive integer");
    }
    generate.max_tokens = static_cast<int>(*max_tokens);
  }

  engine::SamplingParams& sampling = generate.sampling;
  KV_ASSIGN_OR_RETURN(std::optional<double> temperature,
                      OptionalNumber(body, "temperature", "temperature"));
  if (temperature && (*temperature < 0 || *temperature > 2)) {
    return FieldError("temperature", "must be in [0, 2]");
  }
  sampling.temperature = static_cast<float>(temperature.value_or(1.0));
  KV_ASSIGN_OR_RETURN(std::optional<double> top_p, OptionalNumber(body, "top_p", "top_p"));
  if (top_p && (*top_p <= 0 || *top_p > 1)) return FieldError("top_p", "must be in (0, 1]");
  sampling.top_p = static_cast<float>(top_p.value_or(1.0));
  KV_ASSIGN_OR_RETURN(std::optional<int64_t> seed, OptionalInteger(body, "seed", "seed"));
  if (seed) sampling.seed = static_cast<uint32_t>(*seed);
  KV_ASSIGN_OR_RETURN(sampling.logit_bias, ParseLogitBias(body));
  KV_ASSIGN_OR_RETURN(generate.stop, ParseStop(body));

  KV_ASSIGN_OR_RETURN(std::optional<std::string> conversation_id,
                      OptionalString(body, "conversation_id", "conversation_id"));
  if (conversation_id) {
    if (conversation_id->empty() || conversation_id->size() > kMaxConversationIdBytes) {
      return FieldError("conversation_id", "must be 1 to 256 bytes");
    }
    generate.conversation_id = *conversation_id;
    generate.explicit_conversation = true;
  }
  KV_ASSIGN_OR_RETURN(std::optional<bool> ignore_eos,
                      OptionalBool(body, "ignore_eos", "ignore_eos"));
  generate.ignore_eos = ignore_eos.value_or(false);
  KV_ASSIGN_OR_RETURN(std::optional<bool> pin, OptionalBool(body, "pin", "pin"));
  request->generate.pin = pin.value_or(false);
  KV_ASSIGN_OR_RETURN(std::optional<bool> recall, OptionalBool(body, "recall", "recall"));
  request->generate.recall = recall.value_or(true);
  KV_ASSIGN_OR_RETURN(request->generate.history_mode, ParseHistoryMode(body));
  KV_ASSIGN_OR_RETURN(std::optional<bool> return_prompt,
                      OptionalBool(body, "return_prompt", "return_prompt"));
  request->generate.return_prompt = return_prompt.value_or(false);
  // GBNF, as llama-server's "grammar": constrains the reply (e.g. to a format).
  KV_ASSIGN_OR_RETURN(std::optional<std::string> grammar,
                      OptionalString(body, "grammar", "grammar"));
  if (grammar) sampling.grammar = *grammar;
  KV_RETURN_IF_ERROR(ParseResponseFormat(body, &sampling));
  return ParseSamplingExtras(body, &sampling);
}

}  // namespace

// What recall did with its chunks' KV (conversation/recall_kv.h): for responses and
// /v1/cache/stats.
Json RecallKvJson(const conversation::RecallKvCounts& kv) {
  Json json = {{"materialized_tokens", kv.tokens_materialized},
               {"prefilled_tokens", kv.tokens_prefilled},
               {"reused_tokens", kv.tokens_reused},
               {"materialized_chunks", kv.chunks_materialized},
               {"prefilled_chunks", kv.chunks_prefilled},
               {"missing_spans", kv.spans_missing},
               {"failed_spans", kv.spans_failed},
               {"materialize_ms", kv.materialize_ms}};
  if (!kv.refused.empty()) json["refused"] = kv.refused;
  return json;
}

namespace {

Json UsageFields(const conversation::GenerateResult& result) {
  return {{"prompt_tokens", result.prompt_tokens},
          {"completion_tokens", result.completion_tokens},
          {"total_tokens", result.prompt_tokens + result.completion_tokens},
          {"prompt_tokens_details", {{"cached_tokens", result.cached_tokens}}}};
}

// kvault's own account of a response (OpenAI clients ignore unknown fields): where the
// prompt's KV came from and what was recalled.
Json KvaultFields(const conversation::GenerateResult& result) {
  Json recalls = Json::array();
  for (const conversation::RecallEvent& event : result.recalls) {
    recalls.push_back({{"phrase", event.phrase}, {"turns", event.turns}});
  }
  Json fields = {{"cache_source", std::string(conversation::PrefixSourceName(result.cache_source))},
                 {"recalled_chunks", result.recalled_chunks},
                 {"mid_generation_recalls", recalls}};
  const conversation::RecallKvCounts& kv = result.recall_kv;
  if (kv.chunks_materialized + kv.chunks_prefilled + kv.tokens_reused + kv.tokens_prefilled > 0) {
    fields["recall_kv"] = RecallKvJson(kv);
  }
  if (result.history) fields["history"] = HistoryJson(*result.history);
  if (!result.prompt_text.empty()) fields["prompt"] = result.prompt_text;
  return fields;
}

}  // namespace

Result<conversation::HistoryMode> ParseHistoryMode(const Json& body) {
  KV_ASSIGN_OR_RETURN(std::optional<std::string> name, OptionalString(body, "history", "history"));
  if (!name) return conversation::HistoryMode::kAuto;
  return conversation::HistoryModeFromName(*name);
}

Json HistoryJson(const conversation::IngestResult& result) {
  Json json = {{"action", std::string(conversation::HistoryActionName(result.action))},
               {"reason", std::string(result.reason)},
               {"new_turns", result.new_turns},
               {"new_tokens", result.new_tokens}};
  if (result.replaced) {
    json["from_turn"] = result.from_turn;
    json["archived_turns"] = result.archived_turns;
    json["archived_branch"] = result.archived_branch;
  }
  return json;
}

Result<OpenAiRequest> ParseChatCompletionRequest(const Json& body) {
  OpenAiRequest request;
  KV_RETURN_IF_ERROR(ParseCommon(body, &request));
  KV_ASSIGN_OR_RETURN(request.generate.messages, ParseMessages(body));
  return request;
}

Result<OpenAiRequest> ParseCompletionRequest(const Json& body) {
  OpenAiRequest request;
  KV_RETURN_IF_ERROR(ParseCommon(body, &request));
  auto it = body.find("prompt");
  if (it == body.end() || it->is_null()) return FieldError("prompt", "is required");
  std::string prompt;
  if (it->is_string()) {
    prompt = it->get<std::string>();
  } else if (it->is_array() && it->size() == 1 && (*it)[0].is_string()) {
    prompt = (*it)[0].get<std::string>();
  } else {
    return FieldError("prompt", "must be a string (or an array of one string)");
  }
  if (prompt.empty()) return FieldError("prompt", "is empty");
  if (prompt.find('\0') != std::string::npos) return FieldError("prompt", "contains a NUL");
  request.generate.raw_prompt = std::move(prompt);
  if (!request.generate.explicit_conversation) request.generate.conversation_id = "completions";
  return request;
}

std::string NewResponseId(const std::string& prefix) {
  static thread_local std::mt19937_64 rng(std::random_device{}());
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), "%016llx%08llx", static_cast<unsigned long long>(rng()),
                static_cast<unsigned long long>(rng() & 0xffffffffull));
  return prefix + "-" + buffer;
}

int64_t UnixSeconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Json UsageJson(const conversation::GenerateResult& result) { return UsageFields(result); }

std::string FinishReasonText(engine::FinishReason reason) {
  return reason == engine::FinishReason::kLength ? "length" : "stop";
}

Json ChatCompletionJson(const ResponseMeta& meta, const conversation::GenerateResult& result) {
  return {{"id", meta.id},
          {"object", "chat.completion"},
          {"created", meta.created},
          {"model", meta.model},
          {"system_fingerprint", meta.system_fingerprint},
          {"choices", Json::array({{{"index", 0},
                                    {"message", {{"role", "assistant"}, {"content", result.text}}},
                                    {"logprobs", nullptr},
                                    {"finish_reason", FinishReasonText(result.finish_reason)}}})},
          {"usage", UsageFields(result)},
          {"kvault", KvaultFields(result)}};
}

Json ChatChunkJson(const ResponseMeta& meta, Json delta, const Json& finish_reason,
                   bool include_usage) {
  Json chunk = {{"id", meta.id},
                {"object", "chat.completion.chunk"},
                {"created", meta.created},
                {"model", meta.model},
                {"system_fingerprint", meta.system_fingerprint},
                {"choices", Json::array({{{"index", 0},
                                          {"delta", std::move(delta)},
                                          {"logprobs", nullptr},
                                          {"finish_reason", finish_reason}}})}};
  if (include_usage) chunk["usage"] = nullptr;
  return chunk;
}

Json ChatUsageChunkJson(const ResponseMeta& meta, const conversation::GenerateResult& result) {
  return {{"id", meta.id},
          {"object", "chat.completion.chunk"},
          {"created", meta.created},
          {"model", meta.model},
          {"system_fingerprint", meta.system_fingerprint},
          {"choices", Json::array()},
          {"usage", UsageFields(result)},
          {"kvault", KvaultFields(result)}};
}

Json CompletionJson(const ResponseMeta& meta, const conversation::GenerateResult& result) {
  return {{"id", meta.id},
          {"object", "text_completion"},
          {"created", meta.created},
          {"model", meta.model},
          {"system_fingerprint", meta.system_fingerprint},
          {"choices", Json::array({{{"index", 0},
                                    {"text", result.text},
                                    {"logprobs", nullptr},
                                    {"finish_reason", FinishReasonText(result.finish_reason)}}})},
          {"usage", UsageFields(result)}};
}

Json CompletionChunkJson(const ResponseMeta& meta, const std::string& text,
                         const Json& finish_reason, bool include_usage) {
  Json chunk = {{"id", meta.id},
                {"object", "text_completion"},
                {"created", meta.created},
                {"model", meta.model},
                {"system_fingerprint", meta.system_fingerprint},
                {"choices", Json::array({{{"index", 0},
                                          {"text", text},
                                          {"logprobs", nullptr},
                                          {"finish_reason", finish_reason}}})}};
  if (include_usage) chunk["usage"] = nullptr;
  return chunk;
}

Json CompletionUsageChunkJson(const ResponseMeta& meta,
                              const conversation::GenerateResult& result) {
  return {{"id", meta.id},
          {"object", "text_completion"},
          {"created", meta.created},
          {"model", meta.model},
          {"system_fingerprint", meta.system_fingerprint},
          {"choices", Json::array()},
          {"usage", UsageFields(result)}};
}

}  // namespace kvault::server
