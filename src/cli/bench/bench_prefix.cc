// kvault bench prefix: shared-prefix traffic (the KV3D seed's workload): --requests requests,
// a --shared-ratio fraction of them starting with one of --prefixes long shared prefixes (a
// system prompt or RAG scaffold of about --prefix-tokens), the rest with a prefix of the same
// length of their own; each ends with a short question of its own. --concurrency clients send
// them through the OpenAI API without conversation ids (stateless, as most clients are), to
// kvault and to llama-server (-np = concurrency, its default prompt cache), in the same order.
// Reported: prompt tokens served from cache (the hit rate), requests/s, TTFT p50/p95.
#include <atomic>
#include <cstdio>
#include <mutex>
#include <random>
#include <thread>

#include "cli/bench/bench_client.h"
#include "cli/bench/bench_common.h"
#include "cli/bench/bench_harness.h"
#include "cli/cli_util.h"

#include "kvault/base/status_macros.h"

namespace kvault::cli {
namespace {

struct PrefixOptions : BenchOptions {
  int requests = 1000;
  double shared_ratio = 0.8;
  int prefixes = 4;
  int prefix_tokens = 512;
  int concurrency = 4;
  int max_tokens = 8;
};

const char* kTopics[] = {"shipping", "invoices", "warehouse", "routing", "customs",  "fleet",
                         "pricing",  "returns",  "suppliers", "weather", "staffing", "audits"};

// About `tokens` tokens of scaffold text, different for each seed (roughly 1.3 tokens a word).
std::string Scaffold(uint32_t seed, int tokens) {
  std::mt19937 rng(seed);
  std::string text = "Reference document " + std::to_string(seed) + ".";
  for (int words = 0; words * 4 < tokens * 3; ++words) {
    text += " ";
    text += kTopics[rng() % std::size(kTopics)];
    if (rng() % 5 == 0) text += " " + std::to_string(rng() % 10000);
  }
  return text;
}

struct Workload {
  std::vector<Json> bodies;
};

Workload MakeWorkload(const PrefixOptions& o) {
  std::mt19937 rng(5);
  std::bernoulli_distribution shared(o.shared_ratio);
  std::vector<std::string> prefixes;
  for (int i = 0; i < o.prefixes; ++i) prefixes.push_back(Scaffold(100 + i, o.prefix_tokens));
  Workload workload;
  for (int i = 0; i < o.requests; ++i) {
    const std::string system = shared(rng)
                                   ? prefixes[rng() % prefixes.size()]
                                   : Scaffold(10000 + static_cast<uint32_t>(i), o.prefix_tokens);
    const std::string question =
        "Question " + std::to_string(i) + ": what does the document say about " +
        kTopics[rng() % std::size(kTopics)] + " and " + kTopics[rng() % std::size(kTopics)] + "?";
    workload.bodies.push_back(
        {{"model", "bench"},
         {"messages",
          {{{"role", "system"}, {"content", system}}, {{"role", "user"}, {"content", question}}}},
         {"max_tokens", o.max_tokens},
         {"temperature", 0}});
  }
  return workload;
}

struct Outcome {
  double seconds = 0;
  std::vector<double> ttft_s;
  int64_t prompt_tokens = 0;
  int64_t cached_tokens = 0;
};

Result<Outcome> Drive(int port, const Workload& workload, int concurrency) {
  Outcome outcome;
  std::atomic<size_t> next{0};
  std::mutex mu;
  Status failure;
  const auto start = BenchClock::now();
  std::vector<std::thread> clients;
  for (int c = 0; c < concurrency; ++c) {
    clients.emplace_back([&] {
      for (size_t i = next++; i < workload.bodies.size(); i = next++) {
        const auto sent = BenchClock::now();
        StreamTiming timing = StreamChat(port, workload.bodies[i], sent);
        std::lock_guard<std::mutex> lock(mu);
        if (!timing.ok) {
          failure = StreamStatus(timing);
          next = workload.bodies.size();
          return;
        }
        outcome.ttft_s.push_back(timing.first_token_s);
        outcome.prompt_tokens += timing.prompt_tokens;
        outcome.cached_tokens += timing.cached_tokens;
      }
    });
  }
  for (std::thread& t : clients) t.join();
  if (!failure.ok()) return failure;
  outcome.seconds = std::chrono::duration<double>(BenchClock::now() - start).count();
  return outcome;
}

// A fresh server on its own state folder, driven through the whole workload.
Result<Outcome> MeasureServer(bool kvault, const PrefixOptions& o, const Workload& workload) {
  // --prefix-tokens is approximate: Qwen's vocabulary spells numbers digit by digit, so a
  // scaffold may run ~60% over. Both servers get the same generous window per slot.
  const int window = 2 * o.prefix_tokens + 256;
  KV_ASSIGN_OR_RETURN(
      std::unique_ptr<BenchServer> server,
      BenchServer::Start({.kind = kvault ? ServerKind::kKvault : ServerKind::kLlamaServer,
                          .model_path = o.model_path,
                          .threads = o.threads,
                          .window = window,
                          .slots = o.concurrency,
                          .extra_args = kvault ? o.kvault_args : std::vector<std::string>{}},
                         BenchDir::Scratch("prefix")));
  return Drive(server->port(), workload, o.concurrency);
}

Json OutcomeJson(const Outcome& o, int requests) {
  return {{"seconds", o.seconds},
          {"requests_per_second", requests / o.seconds},
          {"hit_rate",
           Ratio(static_cast<double>(o.cached_tokens), static_cast<double>(o.prompt_tokens))},
          {"prompt_tokens", o.prompt_tokens},
          {"cached_tokens", o.cached_tokens},
          {"ttft_p50_s", Percentile(o.ttft_s, 50)},
          {"ttft_p95_s", Percentile(o.ttft_s, 95)}};
}

Result<Json> Measure(PrefixOptions o) {
  if (o.threads == 0) o.threads = DefaultThreadCount();
  const Workload workload = MakeWorkload(o);
  Json results = Json::object();
  for (bool kvault : {true, false}) {
    std::fprintf(stderr, "bench prefix: %s...\n", kvault ? "kvault" : "llama-server");
    KV_ASSIGN_OR_RETURN(const Outcome outcome, MeasureServer(kvault, o, workload));
    results[kvault ? "kvault" : "llama_server"] = OutcomeJson(outcome, o.requests);
  }
  const Json& k = results["kvault"];
  const Json& s = results["llama_server"];
  return Json{{"model", o.model_path},
              {"requests", o.requests},
              {"shared_ratio", o.shared_ratio},
              {"prefixes", o.prefixes},
              {"prefix_tokens", o.prefix_tokens},
              {"concurrency", o.concurrency},
              {"threads", o.threads},
              {"results", results},
              {"throughput_ratio", Ratio(NumberOr(k, "requests_per_second", 0),
                                         NumberOr(s, "requests_per_second", 0))}};
}

void PrintTable(const Json& report) {
  const Json& k = report["results"]["kvault"];
  const Json& s = report["results"]["llama_server"];
  std::printf(
      "model %s, %d requests, shared ratio %.2f over %d prefixes of ~%d tokens, "
      "%d clients, %d threads\n",
      report["model"].get_ref<const std::string&>().c_str(), report["requests"].get<int>(),
      NumberOr(report, "shared_ratio", 0), report["prefixes"].get<int>(),
      report["prefix_tokens"].get<int>(), report["concurrency"].get<int>(),
      report["threads"].get<int>());
  std::printf("%-14s %10s %10s %12s %12s\n", "server", "hit rate", "req/s", "TTFT p50 s",
              "TTFT p95 s");
  for (const auto& [name, r] :
       {std::pair<const char*, const Json*>{"kvault", &k}, {"llama-server", &s}}) {
    std::printf("%-14s %9.1f%% %10.3f %12.3f %12.3f\n", name, 100 * NumberOr(*r, "hit_rate", 0),
                NumberOr(*r, "requests_per_second", 0), NumberOr(*r, "ttft_p50_s", 0),
                NumberOr(*r, "ttft_p95_s", 0));
  }
  std::printf("throughput kvault / llama-server: %.3f\n", NumberOr(report, "throughput_ratio", 0));
}

}  // namespace

int RunBenchPrefix(int argc, char** argv) {
  CLI::App app("Shared-prefix traffic: cache hit rate and throughput vs llama-server.",
               "bench prefix");
  PrefixOptions o;
  AddModelOption(app, o);
  AddBoundedOption(app, "--requests", o.requests, "requests", 1, 1000000);
  AddBoundedOption(app, "--shared-ratio", o.shared_ratio,
                   "fraction of requests with a shared prefix", 0.0, 1.0);
  AddBoundedOption(app, "--prefixes", o.prefixes, "distinct shared prefixes", 1, 10000);
  AddBoundedOption(app, "--prefix-tokens", o.prefix_tokens, "tokens per prefix (about)", 8,
                   1 << 16);
  AddBoundedOption(app, "--concurrency", o.concurrency, "clients at once (and server slots)", 1,
                   256);
  AddBoundedOption(app, "--max-tokens", o.max_tokens, "tokens generated per request", 1, 4096);
  AddThreadsOption(app, o);
  AddKvaultArgsOption(app, o);
  return RunDriver(
      app, o, argc, argv, [&] { return Measure(o); }, PrintTable);
}

}  // namespace kvault::cli
