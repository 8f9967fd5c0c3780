// kvault bench reconnect: a client comes back with a long history (--tokens of generated
// multi-session dialogue, testing/dialogue_generator) to a server that has never seen it, then
// again with one new turn. Measured at the client, through the OpenAI chat API (streamed):
//
//   1. first reconnect: the whole history plus a question, to a fresh server. The server
//      renders and indexes the history (a progress line in its log), builds the window and
//      prefills it: time to first token.
//   2. second reconnect: the same history, the reply and one new question. Matched turn by
//      turn, only the new turn is processed; the window's prefix KV is reused: time to first
//      token, and the prompt tokens that were not cached.
//   3. ingestion alone: the history through POST /v1/conversations/append on another fresh
//      server (tokens/s of render + store + index + journal).
#include <cstdio>

#include "cli/bench/bench_client.h"
#include "cli/bench/bench_common.h"
#include "cli/bench/bench_harness.h"
#include "cli/cli_util.h"
#include <httplib.h>

#include "kvault/base/status_macros.h"
#include "kvault/engine/model.h"
#include "kvault/engine/tokenizer.h"
#include "kvault/testing/dialogue_generator.h"

namespace kvault::cli {
namespace {

using testing::DialogueGenerator;
using testing::DialogueTurn;

struct ReconnectOptions : BenchOptions {
  int64_t tokens = 1'000'000;
  int window = 4096;
};

// The dialogue as OpenAI messages, about `tokens` tokens by the model's tokenizer.
Result<Json> MakeHistory(const ReconnectOptions& o, int64_t* n_tokens) {
  KV_ASSIGN_OR_RETURN(std::unique_ptr<engine::Model> model,
                      engine::Model::Load({.path = o.model_path, .vocab_only = true}));
  const engine::Tokenizer tokenizer(*model);
  DialogueGenerator generator(7);
  Json messages = Json::array();
  messages.push_back({{"role", "system"}, {"content", "You are a helpful long-term companion."}});
  *n_tokens = 0;
  while (*n_tokens < o.tokens) {
    const DialogueTurn turn = generator.NextTurn();
    KV_ASSIGN_OR_RETURN(std::vector<llama_token> tokens, tokenizer.Tokenize(turn.text));
    *n_tokens += static_cast<int64_t>(tokens.size()) + 5;  // + the template's few tokens
    messages.push_back(
        {{"role", std::string(memory::RoleName(turn.role))}, {"content", turn.text}});
  }
  if (messages.back()["role"] == "user")
    messages.push_back({{"role", "assistant"}, {"content", "OK."}});
  return messages;
}

// A fresh kvault at the default log level (its progress lines are counted), with a state
// folder of its own.
Result<std::unique_ptr<BenchServer>> StartServer(const ReconnectOptions& o,
                                                 const std::string& tag) {
  return BenchServer::Start({.model_path = o.model_path,
                             .threads = o.threads,
                             .window = o.window,
                             .log_level = "",
                             .extra_args = {"--max-body-mb", "1024"}},
                            BenchDir::Scratch("reconnect", tag));
}

Result<StreamTiming> Ask(const BenchServer& server, const Json& messages) {
  return server.Chat({{"conversation_id", "reconnect"},
                      {"messages", messages},
                      {"max_tokens", 8},
                      {"temperature", 0}});
}

Result<Json> Measure(ReconnectOptions o) {
  if (o.threads == 0) o.threads = DefaultThreadCount();
  int64_t n_tokens = 0;
  KV_ASSIGN_OR_RETURN(const Json history, MakeHistory(o, &n_tokens));
  Json messages = history;
  messages.push_back({{"role", "user"}, {"content", "Where did we leave off last time?"}});

  KV_ASSIGN_OR_RETURN(std::unique_ptr<BenchServer> server, StartServer(o, "chat"));
  KV_ASSIGN_OR_RETURN(const StreamTiming first, Ask(*server, messages));
  messages.push_back({{"role", "assistant"}, {"content", first.text}});
  messages.push_back({{"role", "user"}, {"content", "And what did I say about my garden?"}});
  KV_ASSIGN_OR_RETURN(const StreamTiming second, Ask(*server, messages));
  Result<std::string> log =
      RunCommand("grep -c 'ingesting history' " + ShellQuote(server->log_path()) + " || true");
  server.reset();

  KV_ASSIGN_OR_RETURN(std::unique_ptr<BenchServer> ingest, StartServer(o, "append"));
  httplib::Client client("127.0.0.1", ingest->port());
  client.set_read_timeout(std::chrono::seconds(3600));
  const auto start = BenchClock::now();
  httplib::Result appended = client.Post(
      "/v1/conversations/append",
      DumpJson({{"conversation_id", "reconnect"}, {"messages", history}}), "application/json");
  const double append_s = std::chrono::duration<double>(BenchClock::now() - start).count();
  if (!appended || appended->status != 200) {
    return InternalError("append failed: " + (appended ? appended->body : "no reply"));
  }
  const Json ingested = ParseJson(appended->body).value_or(Json::object());
  const double ingested_tokens = NumberOr(ingested, "new_tokens", 0);
  return Json{{"model", o.model_path},
              {"history_tokens", ingested_tokens},
              {"history_messages", history.size()},
              {"window", o.window},
              {"first_reconnect_ttft_s", first.first_token_s},
              {"first_reconnect_prompt_tokens", first.prompt_tokens},
              {"second_reconnect_ttft_s", second.first_token_s},
              {"second_reconnect_prompt_tokens", second.prompt_tokens},
              {"second_reconnect_uncached_tokens", second.prompt_tokens - second.cached_tokens},
              {"progress_lines_in_log", log.ok() ? std::atoi(log->c_str()) : -1},
              {"append_seconds", append_s},
              {"append_tokens_per_second", ingested_tokens / append_s}};
}

void PrintTable(const Json& r) {
  std::printf("model %s, history %.0f tokens in %zu messages, window %d\n",
              r["model"].get_ref<const std::string&>().c_str(), NumberOr(r, "history_tokens", 0),
              r["history_messages"].get<size_t>(), r["window"].get<int>());
  std::printf("first reconnect (fresh server):   TTFT %8.2f s, prompt %d tokens\n",
              NumberOr(r, "first_reconnect_ttft_s", 0),
              r["first_reconnect_prompt_tokens"].get<int>());
  std::printf("second reconnect (one new turn):  TTFT %8.2f s, prompt %d tokens, %d not cached\n",
              NumberOr(r, "second_reconnect_ttft_s", 0),
              r["second_reconnect_prompt_tokens"].get<int>(),
              r["second_reconnect_uncached_tokens"].get<int>());
  std::printf("ingestion alone (append):         %8.2f s, %.0f tokens/s\n",
              NumberOr(r, "append_seconds", 0), NumberOr(r, "append_tokens_per_second", 0));
}

}  // namespace

int RunBenchReconnect(int argc, char** argv) {
  CLI::App app("A client reconnecting with a long history: first time and with one new turn.",
               "bench reconnect");
  ReconnectOptions o;
  AddModelOption(app, o);
  AddBoundedOption(app, "--tokens", o.tokens, "tokens of history", 1000, 100'000'000);
  AddBoundedOption(app, "--window", o.window, "kvault --window", 256, 1 << 20);
  AddThreadsOption(app, o);
  return RunDriver(
      app, o, argc, argv, [&] { return Measure(o); }, PrintTable);
}

}  // namespace kvault::cli
