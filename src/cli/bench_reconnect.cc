// kvault bench reconnect: a client comes back with a long history (--tokens of generated
// multi-session dialogue, cli/dialogue_generator) to a server that has never seen it, then
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
#include <filesystem>

#include "cli/bench_client.h"
#include "cli/bench_common.h"
#include "cli/child_process.h"
#include "cli/cli_util.h"
#include "cli/dialogue_generator.h"
#include <httplib.h>
#include <unistd.h>

#include "kvault/base/status_macros.h"
#include "kvault/engine/model.h"
#include "kvault/engine/tokenizer.h"

namespace kvault::cli {
namespace {

struct ReconnectOptions {
  std::string model_path;
  int64_t tokens = 1'000'000;
  int window = 4096;
  int threads = 0;
  bool json = false;
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

class Server {
 public:
  static Result<std::unique_ptr<Server>> Start(const ReconnectOptions& o, const std::string& tag) {
    auto server = std::unique_ptr<Server>(new Server);
    server->dir_ = (std::filesystem::temp_directory_path() /
                    ("kvault-bench-reconnect-" + std::to_string(::getpid()) + "-" + tag))
                       .string();
    std::filesystem::remove_all(server->dir_);
    KV_ASSIGN_OR_RETURN(int port, FreePort());
    const std::vector<std::string> argv = {SelfPath(),      "serve",
                                           "--model",       o.model_path,
                                           "--port",        std::to_string(port),
                                           "--window",      std::to_string(o.window),
                                           "--threads",     std::to_string(o.threads),
                                           "--max-body-mb", "1024",
                                           "--cache-dir",   server->dir_ + "/blocks",
                                           "--data-dir",    server->dir_ + "/data"};
    KV_ASSIGN_OR_RETURN(server->child_, ChildServer::Start(argv, port, server->dir_ + ".log", 600));
    return server;
  }
  ~Server() {
    child_.reset();
    std::filesystem::remove_all(dir_);
  }
  int port() const { return child_->port(); }
  std::string log_path() const { return dir_ + ".log"; }

 private:
  Server() = default;
  std::string dir_;
  std::unique_ptr<ChildServer> child_;
};

Result<StreamTiming> Ask(const Server& server, const Json& messages) {
  const Json body = {{"conversation_id", "reconnect"},
                     {"messages", messages},
                     {"max_tokens", 8},
                     {"temperature", 0}};
  StreamTiming timing = StreamChat(server.port(), body, BenchClock::now());
  if (!timing.ok)
    return InternalError("request failed (" + std::to_string(timing.status) + "): " + timing.error);
  return timing;
}

int RunReconnect(ReconnectOptions o) {
  if (o.threads == 0) o.threads = DefaultThreadCount();
  int64_t n_tokens = 0;
  Result<Json> history = MakeHistory(o, &n_tokens);
  if (!history.ok()) return ReportError(history.status());
  Json messages = *history;
  messages.push_back({{"role", "user"}, {"content", "Where did we leave off last time?"}});

  Result<std::unique_ptr<Server>> server = Server::Start(o, "chat");
  if (!server.ok()) return ReportError(server.status());
  Result<StreamTiming> first = Ask(**server, messages);
  if (!first.ok()) return ReportError(first.status());
  messages.push_back({{"role", "assistant"}, {"content", first->text}});
  messages.push_back({{"role", "user"}, {"content", "And what did I say about my garden?"}});
  Result<StreamTiming> second = Ask(**server, messages);
  if (!second.ok()) return ReportError(second.status());
  Result<std::string> log =
      RunCommand("grep -c 'ingesting history' " + ShellQuote((*server)->log_path()) + " || true");
  server->reset();

  Result<std::unique_ptr<Server>> ingest = Server::Start(o, "append");
  if (!ingest.ok()) return ReportError(ingest.status());
  httplib::Client client("127.0.0.1", (*ingest)->port());
  client.set_read_timeout(std::chrono::seconds(3600));
  const auto start = BenchClock::now();
  httplib::Result appended = client.Post(
      "/v1/conversations/append",
      DumpJson({{"conversation_id", "reconnect"}, {"messages", *history}}), "application/json");
  const double append_s = std::chrono::duration<double>(BenchClock::now() - start).count();
  if (!appended || appended->status != 200) {
    return ReportError(InternalError("append failed: " + (appended ? appended->body : "no reply")));
  }
  const Json ingested = ParseJson(appended->body).value_or(Json::object());
  const double ingested_tokens = NumberOr(ingested, "new_tokens", 0);
  const Json report = {
      {"model", o.model_path},
      {"history_tokens", ingested_tokens},
      {"history_messages", history->size()},
      {"window", o.window},
      {"first_reconnect_ttft_s", first->first_token_s},
      {"first_reconnect_prompt_tokens", first->prompt_tokens},
      {"second_reconnect_ttft_s", second->first_token_s},
      {"second_reconnect_prompt_tokens", second->prompt_tokens},
      {"second_reconnect_uncached_tokens", second->prompt_tokens - second->cached_tokens},
      {"progress_lines_in_log", log.ok() ? std::atoi(log->c_str()) : -1},
      {"append_seconds", append_s},
      {"append_tokens_per_second", ingested_tokens / append_s}};
  if (o.json) {
    std::printf("%s\n", DumpJson(report, 2).c_str());
    return 0;
  }
  std::printf("model %s, history %.0f tokens in %zu messages, window %d\n", o.model_path.c_str(),
              ingested_tokens, history->size(), o.window);
  std::printf("first reconnect (fresh server):   TTFT %8.2f s, prompt %d tokens\n",
              first->first_token_s, first->prompt_tokens);
  std::printf("second reconnect (one new turn):  TTFT %8.2f s, prompt %d tokens, %d not cached\n",
              second->first_token_s, second->prompt_tokens,
              second->prompt_tokens - second->cached_tokens);
  std::printf("ingestion alone (append):         %8.2f s, %.0f tokens/s\n", append_s,
              ingested_tokens / append_s);
  return 0;
}

}  // namespace

int RunBenchReconnect(int argc, char** argv) {
  CLI::App app("A client reconnecting with a long history: first time and with one new turn.",
               "bench reconnect");
  ReconnectOptions o;
  app.add_option("-m,--model", o.model_path, "GGUF model file")->required();
  app.add_option("--tokens", o.tokens, "tokens of history")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1000}, int64_t{100'000'000}));
  app.add_option("--window", o.window, "kvault --window")
      ->capture_default_str()
      ->check(CLI::Range(256, 1 << 20));
  app.add_option("-t,--threads", o.threads, "CPU threads; 0 = all cores")->capture_default_str();
  app.add_flag("--json", o.json, "print the report as JSON");
  if (auto exit_code = ParseArgs(app, argc, argv)) return *exit_code;
  return RunReconnect(o);
}

}  // namespace kvault::cli
