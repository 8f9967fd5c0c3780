// cli/bench/bench_client.h: the HTTP side of `kvault bench`: one streamed OpenAI chat request,
// timed at the client the way a user experiences it (first token, last token), against kvault or
// llama-server alike.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "kvault/base/json.h"
#include "kvault/base/status.h"

namespace kvault::cli {

using BenchClock = std::chrono::steady_clock;

struct StreamTiming {
  bool ok = false;
  int status = 0;
  std::string error;
  double first_token_s = -1;  // since `origin`
  double last_token_s = -1;
  int n_content_events = 0;
  std::vector<double> event_times_s;  // arrival of each content event, since `origin`
  int completion_tokens = 0;          // from the usage chunk
  int prompt_tokens = 0;
  int cached_tokens = 0;
  std::string text;   // the content (plain content events only with want_text)
  bool done = false;  // the stream ended with [DONE]: the whole response arrived
};

// POSTs `body` (stream and stream_options.include_usage are set) to /v1/chat/completions.
StreamTiming StreamChat(int port, Json body, BenchClock::time_point origin, bool want_text = false);
// OK for a stream that succeeded; otherwise "request failed (<HTTP status>): <error>".
Status StreamStatus(const StreamTiming& timing);

}  // namespace kvault::cli
