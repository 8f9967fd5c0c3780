#include "cli/bench/bench_client.h"

#include <httplib.h>

namespace kvault::cli {
namespace {

double SecondsSince(BenchClock::time_point origin) {
  return std::chrono::duration<double>(BenchClock::now() - origin).count();
}

// Applies one "data: {...}" event to the timing. Content events are recognised without a
// JSON parse: the client shares the machine with the server it measures, so it stays cheap.
void OnEvent(std::string_view payload, BenchClock::time_point origin, bool want_text,
             StreamTiming* timing) {
  if (payload == "[DONE]") {
    timing->done = true;
    return;
  }
  // The fast path skips parsing (and the text) of plain content events, unless asked for it.
  const bool plain_content = !want_text &&
                             payload.find("\"content\":\"") != std::string_view::npos &&
                             payload.find("\"content\":\"\"") == std::string_view::npos &&
                             payload.find("\"usage\":{") == std::string_view::npos &&
                             payload.find("\"error\"") == std::string_view::npos;
  if (plain_content) {
    const double now = SecondsSince(origin);
    if (timing->first_token_s < 0) timing->first_token_s = now;
    timing->last_token_s = now;
    ++timing->n_content_events;
    timing->event_times_s.push_back(now);
    return;
  }
  Result<Json> event = ParseJson(payload);
  if (!event.ok() || !event->is_object()) return;
  if (event->contains("error")) {
    timing->error = DumpJson((*event)["error"]);
    return;
  }
  const Json* usage = event->contains("usage") ? &(*event)["usage"] : nullptr;
  if (usage != nullptr && usage->is_object()) {
    timing->completion_tokens = static_cast<int>(NumberOr(*usage, "completion_tokens", 0));
    timing->prompt_tokens = static_cast<int>(NumberOr(*usage, "prompt_tokens", 0));
    if (usage->contains("prompt_tokens_details")) {
      timing->cached_tokens =
          static_cast<int>(NumberOr((*usage)["prompt_tokens_details"], "cached_tokens", 0));
    }
  }
  const Json& choices = (*event)["choices"];
  if (!choices.is_array() || choices.empty() || !choices[0].is_object()) return;
  const Json& delta = choices[0]["delta"];
  if (!delta.is_object() || !delta.contains("content") || !delta["content"].is_string()) return;
  const std::string& content = delta["content"].get_ref<const std::string&>();
  if (content.empty()) return;
  const double now = SecondsSince(origin);
  if (timing->first_token_s < 0) timing->first_token_s = now;
  timing->last_token_s = now;
  ++timing->n_content_events;
  timing->event_times_s.push_back(now);
  timing->text += content;
}

}  // namespace

StreamTiming StreamChat(int port, Json body, BenchClock::time_point origin, bool want_text) {
  body["stream"] = true;
  body["stream_options"] = {{"include_usage", true}};
  StreamTiming timing;
  httplib::Client client("127.0.0.1", port);
  client.set_read_timeout(std::chrono::seconds(600));
  std::string buffer;
  httplib::Result result = client.Post("/v1/chat/completions", httplib::Headers{}, DumpJson(body),
                                       "application/json", [&](const char* data, size_t length) {
                                         buffer.append(data, length);
                                         size_t end = 0;
                                         while ((end = buffer.find("\n\n")) != std::string::npos) {
                                           std::string_view event(buffer.data(), end);
                                           if (event.substr(0, 6) == "data: ")
                                             OnEvent(event.substr(6), origin, want_text, &timing);
                                           buffer.erase(0, end + 2);
                                         }
                                         return true;
                                       });
  if (!result) {
    timing.error = "request failed: " + httplib::to_string(result.error());
    return timing;
  }
  timing.status = result->status;
  timing.ok = result->status == 200 && timing.error.empty() && timing.first_token_s >= 0;
  if (result->status != 200 && timing.error.empty()) timing.error = buffer;
  return timing;
}

Status StreamStatus(const StreamTiming& timing) {
  if (timing.ok) return Status::Ok();
  return InternalError("request failed (" + std::to_string(timing.status) + "): " + timing.error);
}

}  // namespace kvault::cli
