// ConversationManager::GenerateUpstream: one generation round on the --upstream server.
// The prompt is the one the manager built (the window, recall included), sent as token ids;
// the reply streams back as text through the same stop strings and hedge detector as a
// local round, and a hedge closes the upstream's stream so that the next round resumes,
// under a rebuilt prompt that ends with the reply so far (the upstream continues tokens, so
// no server-specific "continue the last message" option is needed).
#include <chrono>

#include "kvault/base/log.h"
#include "kvault/base/status_macros.h"
#include "kvault/conversation/manager_pending.h"
#include "kvault/engine/stop_matcher.h"

namespace kvault::conversation {
namespace {

using Clock = std::chrono::steady_clock;

// kvault's sampling fields by the names llama-server and vLLM take on /v1/completions.
Json UpstreamSampling(const engine::SamplingParams& s, bool ignore_eos) {
  Json json = {{"temperature", std::max(0.0f, s.temperature)}, {"top_p", s.top_p}};
  if (s.top_k > 0) json["top_k"] = s.top_k;
  if (s.min_p > 0) json["min_p"] = s.min_p;
  if (s.seed != LLAMA_DEFAULT_SEED) json["seed"] = s.seed;
  if (s.repeat_penalty != 1.0f) json["repetition_penalty"] = s.repeat_penalty;
  if (s.frequency_penalty != 0) json["frequency_penalty"] = s.frequency_penalty;
  if (s.presence_penalty != 0) json["presence_penalty"] = s.presence_penalty;
  if (!s.logit_bias.empty()) {
    Json bias = Json::object();
    for (const llama_logit_bias& b : s.logit_bias) bias[std::to_string(b.token)] = b.bias;
    json["logit_bias"] = bias;
  }
  if (!s.grammar.empty()) json["grammar"] = s.grammar;  // llama-server's name
  if (ignore_eos) json["ignore_eos"] = true;
  return json;
}

double MillisSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

}  // namespace

Status ConversationManager::GenerateUpstream(Pending& pending, Generation& g, ReplySink* sink) {
  const std::vector<llama_token>& prompt = pending.prompt;
  upstream::CompletionCall call;
  call.prompt.assign(prompt.begin(), prompt.end());
  call.max_tokens = g.remaining_tokens;
  call.sampling = UpstreamSampling(pending.request.sampling, pending.request.ignore_eos);

  engine::StopMatcher stops(pending.request.stop);
  bool hedged = false, stopped = false, cancelled = false;
  std::string phrase, round_text;
  const auto deliver = [&](std::string text) {
    if (text.empty()) return;
    if (g.result.first_token_ms < 0) g.result.first_token_ms = MillisSince(pending.start);
    round_text += text;
    g.result.text += text;
    g.result.text_times_ms.push_back(MillisSince(pending.start));
    if (sink != nullptr && !cancelled && !sink->OnText(text)) cancelled = true;
  };
  const auto pass = [&](std::string text) {
    if (hedged) return;
    memory::HedgeOutput out = g.hedge.Push(text);
    if (out.hit) {
      hedged = true;
      phrase = out.phrase;
    }
    deliver(std::move(out.text));
  };
  if (g.rounds == 0) g.result.queue_ms = MillisSince(pending.start);
  Result<upstream::CompletionOutcome> outcome =
      deps_.upstream->Complete(call, [&](std::string_view piece) {
        engine::StopMatcher::Output out = stops.Push(piece);
        pass(std::move(out.text));
        stopped = stopped || out.stopped;
        return !(stopped || hedged || cancelled);
      });
  if (!outcome.ok()) {
    // Text already streamed stays the client's: the error ends the stream after it.
    return outcome.status();
  }
  if (!hedged) {
    if (!stopped) pass(stops.Flush());
    if (!hedged) deliver(g.hedge.Flush());
  }
  const int reported_prompt = static_cast<int>(outcome->prompt_tokens);
  if (g.rounds++ == 0) {
    g.result.prompt_tokens =
        reported_prompt > 0 ? reported_prompt : static_cast<int>(prompt.size());
    g.result.cached_tokens = static_cast<int>(std::max<int64_t>(0, outcome->cached_tokens));
    g.result.cache_source =
        g.result.cached_tokens > 0 ? PrefixSource::kUpstream : PrefixSource::kNone;
  }
  // What the upstream generated this round: its count when it reported one (not when the
  // stream was closed early), else the text's tokens.
  const int generated =
      outcome->completion_tokens >= 0 && outcome->finish_reason != ""
          ? static_cast<int>(outcome->completion_tokens)
          : static_cast<int>(
                tokenizer_.Tokenize(round_text).value_or(std::vector<llama_token>{}).size());
  g.result.completion_tokens += generated;
  g.remaining_tokens -= std::max(1, generated);
  g.reason = cancelled                            ? engine::FinishReason::kCancelled
             : outcome->finish_reason == "length" ? engine::FinishReason::kLength
                                                  : engine::FinishReason::kStop;
  g.hedged = hedged && !cancelled;
  g.phrase = phrase;
  return Status::Ok();
}

}  // namespace kvault::conversation
