// upstream/upstream_client.h: the OpenAI-compatible server kvault sits in front of with
// `kvault serve --upstream URL` (llama-server, vLLM, SGLang). kvault renders every prompt
// itself, as token ids (its conversation memory decides what the window holds), and asks the
// upstream to continue them on `/v1/completions` (a token array as `prompt`, streamed), so
// the reply of a hedge-interrupted round continues exactly where it stopped, and the
// upstream's own prefix cache sees the same tokens turn after turn.
//
// Faults never hang a request: connecting is bounded by `connect_timeout`, every read by
// `timeout`; the upstream unreachable is Unavailable with ErrorDetail::kUpstreamUnavailable
// (HTTP 502), silent for `timeout` the same with kUpstreamTimeout (504), and an upstream
// 4xx is InvalidArgument (400) carrying the upstream's own message.
//
// Thread-safety: all methods may be called from any thread (a connection per call).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "kvault/base/json.h"
#include "kvault/base/mutex.h"
#include "kvault/base/result.h"

namespace kvault::upstream {

struct UpstreamOptions {
  std::string url;      // http://host:port[/base], e.g. http://127.0.0.1:8000/v1
  std::string api_key;  // sent as "Authorization: Bearer"; "" = none
  std::string model;    // the upstream's model name; "" = the first of its /v1/models
  std::chrono::milliseconds timeout{600000};  // the longest silence while it generates
  std::chrono::milliseconds connect_timeout{3000};
};

// http://host[:port][/base]; the base path defaults to "/v1". https is refused (no TLS in
// this build: put kvault beside the upstream).
struct UpstreamEndpoint {
  std::string host;
  int port = 80;
  std::string base = "/v1";
  std::string ToString() const;
};
Result<UpstreamEndpoint> ParseUpstreamUrl(std::string_view url);

struct CompletionCall {
  std::vector<int32_t> prompt;  // token ids of the upstream model's vocabulary
  int max_tokens = 16;
  // Sampling fields by their OpenAI / llama-server names (temperature, top_p, seed, ...).
  Json sampling = Json::object();
};

struct CompletionOutcome {
  std::string finish_reason;  // "stop", "length"; "" when kvault stopped reading
  // As the upstream reported them (in its last event); -1 when it did not.
  int64_t prompt_tokens = -1;
  int64_t completion_tokens = -1;
  int64_t cached_tokens = -1;  // usage.prompt_tokens_details.cached_tokens
};

struct UpstreamStats {
  bool up = false;  // the last call reached it
  int64_t requests = 0;
  int64_t errors = 0;
  std::string last_error;
};

class UpstreamClient {
 public:
  static Result<std::unique_ptr<UpstreamClient>> Create(UpstreamOptions options);

  // GET <base>/models: the upstream's model names. The first becomes model() when none was
  // named. Start-up calls it once; an upstream not up yet is retried at each request.
  // `timeout` bounds the call (/health probes with a short one).
  Result<std::vector<std::string>> Models(
      std::chrono::milliseconds timeout = std::chrono::milliseconds(10000));
  // Shutdown: completions in flight end at their next piece, new ones are refused
  // (Unavailable, kShuttingDown).
  void Stop();
  std::string model() const;
  // Streams a completion of `call.prompt`. `on_text` gets each piece of text as it comes and
  // returns false to stop: the connection is then closed (the upstream stops generating)
  // and the outcome's finish_reason is "".
  Result<CompletionOutcome> Complete(const CompletionCall& call,
                                     const std::function<bool(std::string_view)>& on_text);
  UpstreamStats stats() const;
  const UpstreamEndpoint& endpoint() const { return endpoint_; }

 private:
  UpstreamClient(UpstreamOptions options, UpstreamEndpoint endpoint)
      : options_(std::move(options)), endpoint_(std::move(endpoint)) {}
  Status Fail(Status status);
  void NoteUp();

  const UpstreamOptions options_;
  const UpstreamEndpoint endpoint_;
  mutable Mutex mu_;
  std::string model_ KV_GUARDED_BY(mu_);
  bool up_ KV_GUARDED_BY(mu_) = false;
  std::string last_error_ KV_GUARDED_BY(mu_);
  std::atomic<int64_t> requests_{0}, errors_{0};
  std::atomic<bool> stopping_{false};
};

}  // namespace kvault::upstream
