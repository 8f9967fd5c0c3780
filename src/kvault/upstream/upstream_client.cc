#include "kvault/upstream/upstream_client.h"

#include <charconv>
#include <utility>

#include <httplib.h>

#include "kvault/base/log.h"
#include "kvault/base/status_macros.h"
#include "kvault/upstream/sse.h"

namespace kvault::upstream {
namespace {

using Clock = std::chrono::steady_clock;

Status ShuttingDown() {
  return UnavailableError("kvault is shutting down").WithDetail(ErrorDetail::kShuttingDown);
}

Status Unreachable(const std::string& what) {
  return UnavailableError("the upstream " + what).WithDetail(ErrorDetail::kUpstreamUnavailable);
}

// The upstream's own words for an error body (OpenAI's {"error": {"message"}}, or text).
std::string ErrorMessageOf(const std::string& body) {
  Result<Json> json = ParseJson(body);
  if (json.ok() && json->is_object() && json->contains("error")) {
    const Json& error = (*json)["error"];
    if (error.is_object() && error.contains("message") && error["message"].is_string()) {
      return error["message"].get<std::string>();
    }
    if (error.is_string()) return error.get<std::string>();
  }
  return body.substr(0, 300);
}

// An upstream that answered with an error status. The request's own fault (400, 413, 422:
// too long, a bad field) is a 400 with its message; too busy (429) a 503 to retry; anything
// else (401/403: a wrong --upstream-key, 404: a wrong URL or model, 5xx) is the upstream or
// its configuration failing: 502.
Status FromHttpStatus(int status, const std::string& body) {
  const std::string message =
      "the upstream answered " + std::to_string(status) + ": " + ErrorMessageOf(body);
  if (status == 400 || status == 413 || status == 422) return InvalidArgumentError(message);
  if (status == 429) {
    return ResourceExhaustedError(message + "; retry later")
        .WithDetail(ErrorDetail::kServerOverloaded);
  }
  return UnavailableError(message).WithDetail(ErrorDetail::kUpstreamUnavailable);
}

int64_t IntOr(const Json& object, const char* key, int64_t fallback) {
  if (!object.is_object() || !object.contains(key) || !object[key].is_number_integer()) {
    return fallback;
  }
  return object[key].get<int64_t>();
}

}  // namespace

std::string UpstreamEndpoint::ToString() const {
  return "http://" + host + ":" + std::to_string(port) + base;
}

Result<UpstreamEndpoint> ParseUpstreamUrl(std::string_view url) {
  const auto bad = [&](const std::string& why) {
    return InvalidArgumentError("--upstream " + std::string(url) + ": " + why +
                                " (expected http://host:port[/v1])");
  };
  if (url.starts_with("https://")) return bad("https is not supported; run kvault beside it");
  if (!url.starts_with("http://")) return bad("not an http:// URL");
  std::string_view rest = url.substr(7);
  UpstreamEndpoint endpoint;
  const size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  if (slash != std::string_view::npos) {
    std::string_view base = rest.substr(slash);
    while (base.size() > 1 && base.ends_with('/')) base.remove_suffix(1);
    endpoint.base = base == "/" ? "" : std::string(base);
  }
  const size_t colon = authority.rfind(':');
  if (colon != std::string_view::npos && authority.find(']') == std::string_view::npos) {
    const std::string_view port = authority.substr(colon + 1);
    int value = 0;
    const auto [end, error] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (error != std::errc() || end != port.data() + port.size() || value < 1 || value > 65535) {
      return bad("bad port");
    }
    endpoint.port = value;
    authority = authority.substr(0, colon);
  }
  if (authority.empty()) return bad("no host");
  endpoint.host = std::string(authority);
  return endpoint;
}

Result<std::unique_ptr<UpstreamClient>> UpstreamClient::Create(UpstreamOptions options) {
  KV_ASSIGN_OR_RETURN(UpstreamEndpoint endpoint, ParseUpstreamUrl(options.url));
  if (options.timeout.count() <= 0) return InvalidArgumentError("--upstream-timeout must be > 0");
  std::unique_ptr<UpstreamClient> client(new UpstreamClient(std::move(options), endpoint));
  MutexLock lock(&client->mu_);
  client->model_ = client->options_.model;
  return client;
}

std::string UpstreamClient::model() const {
  MutexLock lock(&mu_);
  return model_;
}

Status UpstreamClient::Fail(Status status) {
  errors_.fetch_add(1);
  MutexLock lock(&mu_);
  if (up_ || last_error_.empty()) {
    KV_LOG(kWarning) << "upstream " << endpoint_.ToString() << ": " << status.message();
  }
  up_ = false;
  last_error_ = status.message();
  return status;
}

void UpstreamClient::NoteUp() {
  MutexLock lock(&mu_);
  if (!up_ && !last_error_.empty()) {
    KV_LOG(kInfo) << "upstream " << endpoint_.ToString() << " answers again";
  }
  up_ = true;
}

UpstreamStats UpstreamClient::stats() const {
  MutexLock lock(&mu_);
  return {up_, requests_.load(), errors_.load(), last_error_};
}

void UpstreamClient::Stop() { stopping_.store(true); }

Result<std::vector<std::string>> UpstreamClient::Models(std::chrono::milliseconds timeout) {
  requests_.fetch_add(1);
  httplib::Client client(endpoint_.host, endpoint_.port);
  client.set_connection_timeout(std::min(options_.connect_timeout, timeout));
  client.set_read_timeout(timeout);
  httplib::Headers headers;
  if (!options_.api_key.empty()) headers.emplace("Authorization", "Bearer " + options_.api_key);
  httplib::Result result = client.Get(endpoint_.base + "/models", headers);
  if (!result) {
    return Fail(Unreachable("at " + endpoint_.ToString() +
                            " does not answer: " + httplib::to_string(result.error())));
  }
  if (result->status != 200) return Fail(FromHttpStatus(result->status, result->body));
  Result<Json> json = ParseJson(result->body);
  std::vector<std::string> names;
  if (json.ok() && json->is_object() && (*json)["data"].is_array()) {
    for (const Json& model : (*json)["data"]) {
      if (model.is_object() && model["id"].is_string()) names.push_back(model["id"]);
    }
  }
  if (names.empty()) return Fail(Unreachable("lists no models at " + endpoint_.base + "/models"));
  NoteUp();
  MutexLock lock(&mu_);
  if (model_.empty()) model_ = names.front();
  return names;
}

Result<CompletionOutcome> UpstreamClient::Complete(
    const CompletionCall& call, const std::function<bool(std::string_view)>& on_text) {
  if (stopping_.load()) return ShuttingDown();
  if (model().empty()) KV_RETURN_IF_ERROR(Models().status());
  requests_.fetch_add(1);
  Json body = call.sampling.is_object() ? call.sampling : Json::object();
  body["model"] = model();
  body["prompt"] = call.prompt;
  body["max_tokens"] = call.max_tokens;
  body["stream"] = true;
  body["stream_options"] = {{"include_usage", true}};  // vLLM reports usage only when asked

  httplib::Client client(endpoint_.host, endpoint_.port);
  client.set_connection_timeout(options_.connect_timeout);
  client.set_read_timeout(options_.timeout);
  client.set_write_timeout(options_.timeout);
  httplib::Request request;
  request.method = "POST";
  request.path = endpoint_.base + "/completions";
  request.set_header("Content-Type", "application/json");
  request.set_header("Accept", "text/event-stream");
  if (!options_.api_key.empty()) request.set_header("Authorization", "Bearer " + options_.api_key);
  request.body = DumpJson(body);

  int status = 0;
  std::string error_body;
  SseParser parser;
  CompletionOutcome outcome;
  Status stream_error;
  bool done = false, stopped = false;
  Clock::time_point last_byte = Clock::now();
  request.response_handler = [&](const httplib::Response& response) {
    status = response.status;
    return true;
  };
  request.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
    last_byte = Clock::now();
    if (stopping_.load()) {
      stream_error = ShuttingDown();  // the grace period is over: the stream is closed
      return false;
    }
    if (status != 200) {
      if (error_body.size() < 65536) error_body.append(data, n);
      return true;
    }
    for (const std::string& event : parser.Push(std::string_view(data, n))) {
      if (event == "[DONE]") {
        done = true;
        continue;
      }
      Result<Json> json = ParseJson(event);
      if (!json.ok() || !json->is_object()) continue;  // keep-alives and the like
      if (json->contains("error")) {
        stream_error = Unreachable("failed mid-stream: " + ErrorMessageOf(event));
        return false;
      }
      const Json& usage = (*json)["usage"];
      if (usage.is_object()) {
        outcome.prompt_tokens = IntOr(usage, "prompt_tokens", outcome.prompt_tokens);
        outcome.completion_tokens = IntOr(usage, "completion_tokens", outcome.completion_tokens);
        if (usage.contains("prompt_tokens_details")) {
          outcome.cached_tokens =
              IntOr(usage["prompt_tokens_details"], "cached_tokens", outcome.cached_tokens);
        }
      }
      const Json& choices = (*json)["choices"];
      if (!choices.is_array() || choices.empty() || !choices[0].is_object()) continue;
      const Json& choice = choices[0];
      if (choice["finish_reason"].is_string()) outcome.finish_reason = choice["finish_reason"];
      if (choice["text"].is_string()) {
        const std::string& text = choice["text"].get_ref<const std::string&>();
        if (!text.empty() && !on_text(text)) {
          stopped = true;
          return false;  // closes the connection: the upstream stops generating
        }
      }
    }
    return true;
  };
  const Clock::time_point started = Clock::now();
  httplib::Response response;
  httplib::Error error = httplib::Error::Success;
  const bool sent = client.send(request, response, error);
  if (stopped) {
    NoteUp();
    outcome.finish_reason.clear();
    return outcome;
  }
  if (!stream_error.ok()) {
    if (stream_error.detail() == ErrorDetail::kShuttingDown) return stream_error;
    return Fail(stream_error);
  }
  if (status != 0 && status != 200) return Fail(FromHttpStatus(status, error_body));
  if (!sent && !done) {
    const bool silent = Clock::now() - last_byte >= options_.timeout * 9 / 10;
    if (silent && (error == httplib::Error::Read || error == httplib::Error::Timeout)) {
      return Fail(UnavailableError("the upstream sent nothing for " +
                                   std::to_string(options_.timeout.count() / 1000) +
                                   " s (--upstream-timeout)")
                      .WithDetail(ErrorDetail::kUpstreamTimeout));
    }
    if (status == 0) {
      return Fail(Unreachable("at " + endpoint_.ToString() +
                              " does not answer: " + httplib::to_string(error)));
    }
    return Fail(Unreachable(
        "closed the stream after " +
        std::to_string(
            std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count()) +
        " ms: " + httplib::to_string(error)));
  }
  if (!done && outcome.finish_reason.empty()) {
    // Not a stream (an upstream that ignored "stream"), or one cut without its end.
    return Fail(
        Unreachable("ended its answer without a finish_reason or [DONE] (not an "
                    "OpenAI completion stream)"));
  }
  NoteUp();
  return outcome;
}

}  // namespace kvault::upstream
