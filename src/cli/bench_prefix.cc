// kvault bench prefix: shared-prefix traffic (the KV3D seed's workload): --requests requests,
// a --shared-ratio fraction of them starting with one of --prefixes long shared prefixes (a
// system prompt or RAG scaffold of about --prefix-tokens), the rest with a prefix of the same
// length of their own; each ends with a short question of its own. --concurrency clients send
// them through the OpenAI API without conversation ids (stateless, as most clients are), to
// kvault and to llama-server (-np = concurrency, its default prompt cache), in the same order.
// Reported: prompt tokens served from cache (the hit rate), requests/s, TTFT p50/p95.
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <random>
#include <thread>

#include "cli/bench_client.h"
#include "cli/bench_common.h"
#include "cli/child_process.h"
#include "cli/cli_util.h"
#include <unistd.h>

#include "kvault/base/status_macros.h"

namespace kvault::cli {
namespace {

struct PrefixOptions {
  std::string model_path;
  int requests = 1000;
  double shared_ratio = 0.8;
  int prefixes = 4;
  int prefix_tokens = 512;
  int concurrency = 4;
  int max_tokens = 8;
  int threads = 0;
  std::vector<std::string> kvault_args;  // extra `kvault serve` flags
  bool json = false;
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
          failure = InternalError("request failed (" + std::to_string(timing.status) +
                                  "): " + timing.error);
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

Result<Outcome> MeasureServer(bool kvault, const PrefixOptions& o, const Workload& workload) {
  KV_ASSIGN_OR_RETURN(int port, FreePort());
  const std::string state = (std::filesystem::temp_directory_path() /
                             ("kvault-bench-prefix-" + std::to_string(::getpid())))
                                .string();
  std::filesystem::remove_all(state);
  const std::string threads = std::to_string(o.threads);
  // --prefix-tokens is approximate: Qwen's vocabulary spells numbers digit by digit, so a
  // scaffold may run ~60% over. Both servers get the same generous window per slot.
  const int window = 2 * o.prefix_tokens + 256;
  std::vector<std::string> argv;
  if (kvault) {
    argv = {SelfPath(),
            "serve",
            "--model",
            o.model_path,
            "--port",
            std::to_string(port),
            "--conversation-threads",
            std::to_string(o.concurrency),
            "--window",
            std::to_string(window),
            "--threads",
            threads,
            "--log-level",
            "warning",
            "--cache-dir",
            state + "/blocks",
            "--data-dir",
            state + "/data"};
  } else {
    argv = {LlamaToolPath("llama-server"),
            "-m",
            o.model_path,
            "--port",
            std::to_string(port),
            "-np",
            std::to_string(o.concurrency),
            "-c",
            std::to_string(window * o.concurrency),
            "-t",
            threads,
            "--no-webui"};
  }
  Result<Outcome> outcome = [&]() -> Result<Outcome> {
    KV_ASSIGN_OR_RETURN(std::unique_ptr<ChildServer> server,
                        ChildServer::Start(argv, port, state + ".log", 600));
    return Drive(port, workload, o.concurrency);
  }();
  std::filesystem::remove_all(state);
  return outcome;
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

int RunPrefix(PrefixOptions o) {
  if (o.threads == 0) o.threads = DefaultThreadCount();
  const Workload workload = MakeWorkload(o);
  Json results = Json::object();
  for (bool kvault : {true, false}) {
    std::fprintf(stderr, "bench prefix: %s...\n", kvault ? "kvault" : "llama-server");
    Result<Outcome> outcome = MeasureServer(kvault, o, workload);
    if (!outcome.ok()) return ReportError(outcome.status());
    results[kvault ? "kvault" : "llama_server"] = OutcomeJson(*outcome, o.requests);
  }
  const Json& k = results["kvault"];
  const Json& s = results["llama_server"];
  const Json report = {{"model", o.model_path},
                       {"requests", o.requests},
                       {"shared_ratio", o.shared_ratio},
                       {"prefixes", o.prefixes},
                       {"prefix_tokens", o.prefix_tokens},
                       {"concurrency", o.concurrency},
                       {"threads", o.threads},
                       {"results", results},
                       {"throughput_ratio", Ratio(NumberOr(k, "requests_per_second", 0),
                                                  NumberOr(s, "requests_per_second", 0))}};
  if (o.json) {
    std::printf("%s\n", DumpJson(report, 2).c_str());
    return 0;
  }
  std::printf(
      "model %s, %d requests, shared ratio %.2f over %d prefixes of ~%d tokens, "
      "%d clients, %d threads\n",
      o.model_path.c_str(), o.requests, o.shared_ratio, o.prefixes, o.prefix_tokens, o.concurrency,
      o.threads);
  std::printf("%-14s %10s %10s %12s %12s\n", "server", "hit rate", "req/s", "TTFT p50 s",
              "TTFT p95 s");
  for (const auto& [name, r] :
       {std::pair<const char*, const Json*>{"kvault", &k}, {"llama-server", &s}}) {
    std::printf("%-14s %9.1f%% %10.3f %12.3f %12.3f\n", name, 100 * NumberOr(*r, "hit_rate", 0),
                NumberOr(*r, "requests_per_second", 0), NumberOr(*r, "ttft_p50_s", 0),
                NumberOr(*r, "ttft_p95_s", 0));
  }
  std::printf("throughput kvault / llama-server: %.3f\n", NumberOr(report, "throughput_ratio", 0));
  return 0;
}

}  // namespace

int RunBenchPrefix(int argc, char** argv) {
  CLI::App app("Shared-prefix traffic: cache hit rate and throughput vs llama-server.",
               "bench prefix");
  PrefixOptions o;
  app.add_option("-m,--model", o.model_path, "GGUF model file")->required();
  app.add_option("--requests", o.requests, "requests")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000000));
  app.add_option("--shared-ratio", o.shared_ratio, "fraction of requests with a shared prefix")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--prefixes", o.prefixes, "distinct shared prefixes")
      ->capture_default_str()
      ->check(CLI::Range(1, 10000));
  app.add_option("--prefix-tokens", o.prefix_tokens, "tokens per prefix (about)")
      ->capture_default_str()
      ->check(CLI::Range(8, 1 << 16));
  app.add_option("--concurrency", o.concurrency, "clients at once (and server slots)")
      ->capture_default_str()
      ->check(CLI::Range(1, 256));
  app.add_option("--max-tokens", o.max_tokens, "tokens generated per request")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  app.add_option("-t,--threads", o.threads, "CPU threads; 0 = all cores")->capture_default_str();
  app.add_option("--kvault-arg", o.kvault_args,
                 "an extra flag for kvault serve (repeat it), e.g. --kvault-arg=--eviction=lru");
  app.add_flag("--json", o.json, "print the report as JSON");
  if (auto exit_code = ParseArgs(app, argc, argv)) return *exit_code;
  return RunPrefix(o);
}

}  // namespace kvault::cli
