// kvault bench serve: aggregate generation tokens/s of N concurrent streams over HTTP, for
// each N, next to llama.cpp's llama-batched-bench (same model, threads, batch sizes, prompt
// length) and llama-server (--parallel N) serving the same requests.
//
// HTTP figures: N streams start together; each asks for exactly --tokens tokens (ignore_eos)
// at temperature 0. Aggregate tokens/s is measured over the window in which all N streams
// are generating (from the last stream's first token to the first stream's last token):
// tokens received in that window / its length. That is llama-batched-bench's S_TG situation
// (N sequences decoding together, prompt processing excluded), seen from the client.
// Rounds alternate the order of kvault and llama-server.
#include <cstdio>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "cli/bench/bench_client.h"
#include "cli/bench/bench_common.h"
#include "cli/bench/bench_harness.h"
#include "cli/cli_util.h"

#include "kvault/base/status_macros.h"
#include "kvault/engine/chat_template.h"
#include "kvault/engine/model.h"
#include "kvault/engine/tokenizer.h"

namespace kvault::cli {
namespace {

struct ServeBenchOptions : BenchOptions {
  std::vector<int> conversations = {1, 4, 8};
  int tokens = 128;
  int rounds = 3;
};

Json Request(int stream, int tokens) {
  return {{"model", "bench"},
          {"messages",
           {{{"role", "user"},
             {"content", "Write a long story about ship number " + std::to_string(stream) +
                             " crossing the ocean."}}}},
          {"max_tokens", tokens},
          {"temperature", 0},
          {"ignore_eos", true},
          {"conversation_id", "bench-" + std::to_string(stream)}};
}

// N streams at once against a server on `port`; aggregate generation tokens/s.
Result<double> MeasureHttp(int port, int n_streams, int tokens) {
  std::vector<StreamTiming> timings(static_cast<size_t>(n_streams));
  const auto origin = BenchClock::now();
  std::vector<std::thread> threads;
  for (int i = 0; i < n_streams; ++i) {
    threads.emplace_back([&, i] { timings[i] = StreamChat(port, Request(i, tokens), origin); });
  }
  for (std::thread& t : threads) t.join();
  double start = 0, end = 1e30;
  for (const StreamTiming& t : timings) {
    if (!t.ok) return InternalError("stream failed (" + std::to_string(t.status) + "): " + t.error);
    if (t.completion_tokens != tokens) {
      return InternalError("a stream generated " + std::to_string(t.completion_tokens) +
                           " tokens, not " + std::to_string(tokens));
    }
    start = std::max(start, t.first_token_s);
    end = std::min(end, t.last_token_s);
  }
  if (end <= start) return InternalError("the streams did not overlap");
  double received = 0;
  for (const StreamTiming& t : timings) {
    for (double at : t.event_times_s) received += at > start && at <= end;
  }
  return received / (end - start);
}

// One HTTP measurement with a fresh server (a warm-up stream first, as llama-bench warms up).
// Its log is <tmp>/kvault-bench.log or <tmp>/llama-server-bench.log.
Result<double> MeasureServer(bool kvault, const ServeBenchOptions& options, int n, int threads) {
  const std::string name = kvault ? "kvault" : "llama-server";
  KV_ASSIGN_OR_RETURN(
      std::unique_ptr<BenchServer> server,
      BenchServer::Start({.kind = kvault ? ServerKind::kKvault : ServerKind::kLlamaServer,
                          .model_path = options.model_path,
                          .threads = threads,
                          .window = 1024,
                          .slots = n,
                          .log_path = TempPath(name + "-bench.log"),
                          .timeout_seconds = 120}));
  KV_RETURN_IF_ERROR(MeasureHttp(server->port(), 1, 8).status());
  return MeasureHttp(server->port(), n, options.tokens);
}

// The prompt length the HTTP requests have, for llama-batched-bench's -npp.
Result<int> PromptTokens(const std::string& model_path) {
  KV_ASSIGN_OR_RETURN(std::unique_ptr<engine::Model> model,
                      engine::Model::Load({.path = model_path, .vocab_only = true}));
  const Json request = Request(0, 1);
  const engine::ChatMessage message{"user", request["messages"][0]["content"]};
  KV_ASSIGN_OR_RETURN(std::string prompt,
                      engine::ChatTemplate::ForModel(*model).Apply({&message, 1}, true));
  KV_ASSIGN_OR_RETURN(std::vector<llama_token> tokens,
                      engine::Tokenizer(*model).Tokenize(prompt, {true, true}));
  return static_cast<int>(tokens.size());
}

// llama-batched-bench's S_TG (generation tokens/s) with n parallel sequences.
Result<double> RunBatchedBench(const ServeBenchOptions& options, int npp, int n, int threads) {
  const std::string command =
      ShellQuote(LlamaToolPath("llama-batched-bench")) + " -m " + ShellQuote(options.model_path) +
      " -c " + std::to_string(n * (npp + options.tokens) + 256) + " -npp " + std::to_string(npp) +
      " -ntg " + std::to_string(options.tokens) + " -npl " + std::to_string(n) + " -t " +
      std::to_string(threads) + " --output-format jsonl";
  KV_ASSIGN_OR_RETURN(std::string output, RunCommand(command));
  const size_t start = output.find("{\"n_kv_max\"");
  if (start == std::string::npos) return InternalError("no result line from: " + command);
  KV_ASSIGN_OR_RETURN(Json row, ParseJson(output.substr(start, output.find('\n', start) - start)));
  return NumberOr(row, "speed_tg", 0);
}

Result<Json> Measure(const ServeBenchOptions& options) {
  for (int n : options.conversations) {
    if (n < 1 || n > 256) return InvalidArgumentError("--conversations: 1 to 256");
  }
  const int threads = options.threads > 0 ? options.threads : DefaultThreadCount();
  KV_ASSIGN_OR_RETURN(const int npp, PromptTokens(options.model_path));
  // For each round and stream count, the three run back to back in an order that rotates
  // from round to round, so the machine's drift hits each of them alike.
  std::map<int, std::vector<double>> kvault, server, batched, vs_batched, vs_server;
  for (int round = 0; round < options.rounds; ++round) {
    for (int n : options.conversations) {
      double speeds[3] = {0, 0, 0};  // kvault, llama-server, llama-batched-bench
      for (int i = 0; i < 3; ++i) {
        const int which = (i + round) % 3;
        KV_ASSIGN_OR_RETURN(speeds[which], which == 2
                                               ? RunBatchedBench(options, npp, n, threads)
                                               : MeasureServer(which == 0, options, n, threads));
      }
      kvault[n].push_back(speeds[0]);
      server[n].push_back(speeds[1]);
      batched[n].push_back(speeds[2]);
      vs_batched[n].push_back(Ratio(speeds[0], speeds[2]));
      vs_server[n].push_back(Ratio(speeds[0], speeds[1]));
    }
  }
  Json rows = Json::array();
  for (int n : options.conversations) {
    const BenchFigure k = Summarize(kvault[n]), s = Summarize(server[n]), b = Summarize(batched[n]);
    rows.push_back({{"conversations", n},
                    {"kvault_tps", k.mean},
                    {"kvault_sd", k.sd},
                    {"llama_server_tps", s.mean},
                    {"llama_server_sd", s.sd},
                    {"batched_bench_tps", b.mean},
                    {"batched_bench_sd", b.sd},
                    {"vs_batched_bench", Ratio(k.mean, b.mean)},
                    {"vs_llama_server", Ratio(k.mean, s.mean)},
                    {"vs_batched_bench_median", Percentile(vs_batched[n], 50)},
                    {"vs_llama_server_median", Percentile(vs_server[n], 50)}});
  }
  return Json{{"model", options.model_path}, {"threads", threads},       {"tokens", options.tokens},
              {"prompt_tokens", npp},        {"rounds", options.rounds}, {"results", rows}};
}

void PrintTable(const Json& report) {
  std::printf("model %s, %d threads, %d tokens per stream, prompt %d tokens, %d rounds\n",
              report["model"].get_ref<const std::string&>().c_str(), report["threads"].get<int>(),
              report["tokens"].get<int>(), report["prompt_tokens"].get<int>(),
              report["rounds"].get<int>());
  std::printf("%6s %16s %18s %20s %14s %14s\n", "streams", "kvault t/s", "llama-server t/s",
              "batched-bench t/s", "vs bb (med)", "vs srv (med)");
  for (const Json& row : report["results"]) {
    std::printf("%6d %9.2f ± %4.2f %11.2f ± %4.2f %13.2f ± %4.2f %6.3f (%5.3f) %6.3f (%5.3f)\n",
                row["conversations"].get<int>(), NumberOr(row, "kvault_tps", 0),
                NumberOr(row, "kvault_sd", 0), NumberOr(row, "llama_server_tps", 0),
                NumberOr(row, "llama_server_sd", 0), NumberOr(row, "batched_bench_tps", 0),
                NumberOr(row, "batched_bench_sd", 0), NumberOr(row, "vs_batched_bench", 0),
                NumberOr(row, "vs_batched_bench_median", 0), NumberOr(row, "vs_llama_server", 0),
                NumberOr(row, "vs_llama_server_median", 0));
  }
}

}  // namespace

int RunBenchServe(int argc, char** argv) {
  CLI::App app(
      "Concurrent-stream generation tokens/s over HTTP vs llama-batched-bench and "
      "llama-server.",
      "bench serve");
  ServeBenchOptions options;
  AddModelOption(app, options);
  app.add_option("--conversations", options.conversations, "concurrent streams, e.g. 1,4,8")
      ->delimiter(',')
      ->capture_default_str();
  AddBoundedOption(app, "--tokens", options.tokens, "tokens generated per stream", 2, 8192);
  AddBoundedOption(app, "--rounds", options.rounds, "interleaved rounds", 1, 50);
  AddThreadsOption(app, options);
  return RunDriver(
      app, options, argc, argv, [&] { return Measure(options); }, PrintTable);
}

}  // namespace kvault::cli
