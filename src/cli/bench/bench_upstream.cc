// kvault bench upstream: kvault in front of llama-server (`kvault serve --upstream`) against
// the same llama-server asked directly, one request at a time, alternating the two (ABAB:
// drift in the machine's speed falls on both). --requests short stateless chats to each side
// (one system prompt, which llama-server's prefix cache holds for both, and a question of
// each request's own: the same request sent to both sides would find the other's prompt
// cached), streamed; TTFT and total time p50/p99 of each side and what kvault adds. Then the long
// case: a conversation of
// --long-tokens tokens of history, one more turn through kvault (its window holds what fits
// the upstream's context, with recall) and the same history sent to llama-server directly,
// which cannot hold it (its answer is reported).
#include <cstdio>

#include "cli/bench/bench_client.h"
#include "cli/bench/bench_common.h"
#include "cli/bench/bench_harness.h"
#include "cli/cli_util.h"
#include <httplib.h>

#include "kvault/base/status_macros.h"
#include "kvault/testing/planted_history.h"

namespace kvault::cli {
namespace {

struct UpstreamOptions : BenchOptions {
  int requests = 200;
  int window = 4096;
  int max_tokens = 8;
  int64_t long_tokens = 1000000;  // 0 = skip the long case
};

Json ShortChat(int i) {
  return {{"model", "bench"},
          {"messages",
           {{{"role", "system"}, {"content", "You are a terse assistant of the harbour office."}},
            {{"role", "user"},
             {"content", "Request " + std::to_string(i) + ": when does the ferry leave?"}}}},
          {"max_tokens", 8},
          {"temperature", 0}};
}

struct Side {
  std::vector<double> ttft_s, total_s;
};

Json SideJson(const Side& s) {
  return {{"ttft_p50_ms", 1000 * Percentile(s.ttft_s, 50)},
          {"ttft_p99_ms", 1000 * Percentile(s.ttft_s, 99)},
          {"total_p50_ms", 1000 * Percentile(s.total_s, 50)},
          {"total_p99_ms", 1000 * Percentile(s.total_s, 99)}};
}

Result<Json> LongCase(const UpstreamOptions& o, const BenchServer& kvault,
                      const BenchServer& direct) {
  // ~45 tokens a turn in Qwen's vocabulary (testing/planted_history.h), the fact early on.
  const int turns = static_cast<int>(std::max<int64_t>(2, o.long_tokens / 45)) / 2 * 2;
  const Json history = testing::PlantedHistory(turns, 40);
  httplib::Client client("127.0.0.1", kvault.port());
  client.set_read_timeout(std::chrono::seconds(3600));
  client.set_write_timeout(std::chrono::seconds(3600));
  const auto ingest_start = BenchClock::now();
  httplib::Result appended = client.Post(
      "/v1/conversations/append", DumpJson({{"conversation_id", "long"}, {"messages", history}}),
      "application/json");
  if (!appended || appended->status != 200) {
    return InternalError("append failed: " +
                         (appended ? appended->body.substr(0, 300) : "no reply"));
  }
  const double ingest_s = std::chrono::duration<double>(BenchClock::now() - ingest_start).count();
  const int64_t tokens = ParseJson(appended->body).value_or(Json())["new_tokens"].get<int64_t>();
  Json question = {{"model", "bench"},
                   {"conversation_id", "long"},
                   {"messages", {{{"role", "user"}, {"content", testing::kPlantedQuestion}}}},
                   {"max_tokens", o.max_tokens},
                   {"temperature", 0}};
  Json turns_json = Json::array();
  for (int turn = 0; turn < 3; ++turn) {
    const StreamTiming t = StreamChat(kvault.port(), question, BenchClock::now());
    KV_RETURN_IF_ERROR(StreamStatus(t));
    turns_json.push_back({{"ttft_ms", 1000 * t.first_token_s},
                          {"prompt_tokens", t.prompt_tokens},
                          {"upstream_cached_tokens", t.cached_tokens}});
  }
  // The same history straight to llama-server: all of it is the prompt.
  Json whole = {{"model", "bench"}, {"messages", history}, {"max_tokens", o.max_tokens}};
  whole["messages"].push_back({{"role", "user"}, {"content", testing::kPlantedQuestion}});
  httplib::Client upstream("127.0.0.1", direct.port());
  upstream.set_read_timeout(std::chrono::seconds(3600));
  const auto direct_start = BenchClock::now();
  httplib::Result answer =
      upstream.Post("/v1/chat/completions", DumpJson(whole), "application/json");
  const double direct_s = std::chrono::duration<double>(BenchClock::now() - direct_start).count();
  std::string said =
      answer ? std::to_string(answer->status) + ": " + answer->body.substr(0, 200) : "no reply";
  return Json{{"history_tokens", tokens},
              {"ingest_s", ingest_s},
              {"kvault_turns", turns_json},
              {"llama_server_direct", {{"answer", said}, {"seconds", direct_s}}}};
}

Result<Json> Measure(UpstreamOptions o) {
  if (o.threads == 0) o.threads = DefaultThreadCount();
  KV_ASSIGN_OR_RETURN(std::unique_ptr<BenchServer> direct,
                      BenchServer::Start({.kind = ServerKind::kLlamaServer,
                                          .model_path = o.model_path,
                                          .threads = o.threads,
                                          .window = o.window,
                                          .slots = 1},
                                         BenchDir::Scratch("upstream", "llama")));
  std::vector<std::string> args = {"--upstream",
                                   "http://127.0.0.1:" + std::to_string(direct->port()) + "/v1",
                                   "--tokenizer", o.model_path};
  args.insert(args.end(), o.kvault_args.begin(), o.kvault_args.end());
  KV_ASSIGN_OR_RETURN(std::unique_ptr<BenchServer> kvault,
                      BenchServer::Start({.kind = ServerKind::kKvault,
                                          .model_path = o.model_path,
                                          .threads = o.threads,
                                          .window = o.window,
                                          .extra_args = args},
                                         BenchDir::Scratch("upstream", "kvault")));
  Side through, alone;
  for (int i = 0; i < o.requests; ++i) {
    // ABAB, then BABA: neither side always runs second.
    for (int k = 0; k < 2; ++k) {
      const bool via_kvault = (k == 0) == (i % 2 == 0);
      const BenchServer& server = via_kvault ? *kvault : *direct;
      Json body = ShortChat(2 * i + (via_kvault ? 0 : 1));
      body["max_tokens"] = o.max_tokens;
      const auto sent = BenchClock::now();
      const StreamTiming t = StreamChat(server.port(), body, sent);
      KV_RETURN_IF_ERROR(StreamStatus(t));
      Side& side = via_kvault ? through : alone;
      side.ttft_s.push_back(t.first_token_s);
      side.total_s.push_back(t.last_token_s);
    }
  }
  Json report = {
      {"model", o.model_path},
      {"requests", o.requests},
      {"window", o.window},
      {"threads", o.threads},
      {"kvault", SideJson(through)},
      {"llama_server", SideJson(alone)},
      {"added_ttft_ms",
       {{"p50", 1000 * (Percentile(through.ttft_s, 50) - Percentile(alone.ttft_s, 50))},
        {"p99", 1000 * (Percentile(through.ttft_s, 99) - Percentile(alone.ttft_s, 99))}}},
      {"added_total_ms",
       {{"p50", 1000 * (Percentile(through.total_s, 50) - Percentile(alone.total_s, 50))},
        {"p99", 1000 * (Percentile(through.total_s, 99) - Percentile(alone.total_s, 99))}}}};
  if (o.long_tokens > 0) {
    std::fprintf(stderr, "bench upstream: a %lld-token conversation...\n",
                 static_cast<long long>(o.long_tokens));
    KV_ASSIGN_OR_RETURN(report["long"], LongCase(o, *kvault, *direct));
  }
  return report;
}

void PrintTable(const Json& report) {
  std::printf("model %s, %d requests one at a time, upstream window %d, %d threads\n",
              report["model"].get_ref<const std::string&>().c_str(), report["requests"].get<int>(),
              report["window"].get<int>(), report["threads"].get<int>());
  std::printf("%-22s %12s %12s %12s %12s\n", "", "TTFT p50 ms", "TTFT p99 ms", "total p50 ms",
              "total p99 ms");
  for (const auto& [name, key] :
       {std::pair<const char*, const char*>{"kvault -> llama-server", "kvault"},
        {"llama-server alone", "llama_server"}}) {
    const Json& r = report[key];
    std::printf("%-22s %12.2f %12.2f %12.2f %12.2f\n", name, NumberOr(r, "ttft_p50_ms", 0),
                NumberOr(r, "ttft_p99_ms", 0), NumberOr(r, "total_p50_ms", 0),
                NumberOr(r, "total_p99_ms", 0));
  }
  const Json& a = report["added_ttft_ms"];
  const Json& t = report["added_total_ms"];
  std::printf(
      "added by kvault: TTFT p50 %+.2f ms, p99 %+.2f ms; total p50 %+.2f ms, p99 %+.2f ms\n",
      NumberOr(a, "p50", 0), NumberOr(a, "p99", 0), NumberOr(t, "p50", 0), NumberOr(t, "p99", 0));
  if (report.contains("long")) {
    const Json& l = report["long"];
    std::printf("long conversation: %lld tokens of history (ingested in %.1f s)\n",
                static_cast<long long>(l["history_tokens"].get<int64_t>()),
                NumberOr(l, "ingest_s", 0));
    for (const Json& turn : l["kvault_turns"]) {
      std::printf("  kvault turn: TTFT %.1f ms, prompt %lld tokens, %lld cached upstream\n",
                  NumberOr(turn, "ttft_ms", 0),
                  static_cast<long long>(turn["prompt_tokens"].get<int64_t>()),
                  static_cast<long long>(turn["upstream_cached_tokens"].get<int64_t>()));
    }
    std::printf("  llama-server alone, whole history: %s (%.1f s)\n",
                l["llama_server_direct"]["answer"].get_ref<const std::string&>().c_str(),
                NumberOr(l["llama_server_direct"], "seconds", 0));
  }
}

}  // namespace

int RunBenchUpstream(int argc, char** argv) {
  CLI::App app(
      "kvault in front of llama-server vs llama-server alone: added latency, and a "
      "conversation far beyond the upstream's context.",
      "bench upstream");
  UpstreamOptions o;
  AddModelOption(app, o, "GGUF model file (llama-server runs it; kvault loads its vocabulary)");
  AddBoundedOption(app, "--requests", o.requests, "short requests to each side", 1, 100000);
  AddBoundedOption(app, "--window", o.window, "the upstream's context (and kvault's --window)", 256,
                   1 << 20);
  AddBoundedOption(app, "--max-tokens", o.max_tokens, "tokens generated per request", 1, 4096);
  AddBoundedOption(app, "--long-tokens", o.long_tokens,
                   "history tokens of the long conversation; 0 = skip it", int64_t{0},
                   int64_t{1} << 34);
  AddThreadsOption(app, o);
  AddKvaultArgsOption(app, o);
  return RunDriver(
      app, o, argc, argv, [&] { return Measure(o); }, PrintTable);
}

}  // namespace kvault::cli
