// kvault bench <what>: benchmarks measured side by side with llama.cpp's own tools.
#include <cstdio>
#include <cstring>

#include "cli/bench/bench_common.h"
#include "cli/commands.h"

namespace kvault::cli {

int RunBench(int argc, char** argv) {
  struct Benchmark {
    const char* name;
    int (*run)(int, char**);
    const char* summary;
  };
  static constexpr Benchmark kBenchmarks[] = {
      {"engine", RunBenchEngine, "prompt and generation tokens/s vs llama-bench"},
      {"serve", RunBenchServe, "concurrent HTTP streams vs llama-batched-bench and llama-server"},
      {"memory", RunBenchMemory, "token store and chunk index: bytes/token, ingestion, search"},
      {"recall", RunBenchRecall,
       "evidence found for long-memory questions, vs BM25 (--legacy: planted facts)"},
      {"resume", RunBenchResume, "TTFT of resumed conversations per KV tier vs llama-server"},
      {"cluster", RunBenchCluster,
       "resume on another replica from the shared Redis vs local RAM vs re-prefill"},
      {"prefix", RunBenchPrefix, "shared-prefix traffic: hit rate and throughput vs llama-server"},
      {"reconnect", RunBenchReconnect, "a client back with a long history: first time, one turn"},
      {"recall-turn", RunBenchRecallTurn,
       "turns of a 1M-token conversation that recall: KV reuse vs prefill"},
      {"footprint", RunBenchFootprint, "memory of cached KV: sharing, encodings, compute types"},
      {"fidelity", RunBenchFidelity, "KL divergence and size of q8/q4 KV blocks at rest vs f16"},
      {"crash", RunBenchCrash,
       "kill -9 under load, restart: acknowledged turns lost, restart time"},
      {"soak", RunBenchSoak, "sustained mixed traffic above capacity: 503 latency, RSS, leaks"},
      {"isolation", RunBenchIsolation,
       "4 API keys, colliding ids: nothing seen, changed or timed across keys"},
      {"upstream", RunBenchUpstream,
       "kvault in front of llama-server: added latency, and a conversation beyond its context"},
      {"topics", RunBenchTopics,
       "interleaved topics (TSCM): TTFT per cycle, pinned vs unpinned vs llama-server"},
  };
  if (argc >= 2) {
    for (const Benchmark& bench : kBenchmarks) {
      if (std::strcmp(argv[1], bench.name) == 0) return bench.run(argc - 1, argv + 1);
    }
  }
  const bool asked_for_help =
      argc >= 2 && (std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0);
  FILE* out = asked_for_help ? stdout : stderr;
  if (argc >= 2 && !asked_for_help) {
    std::fprintf(stderr, "kvault bench: error: unknown benchmark '%s'\n", argv[1]);
  }
  std::fprintf(out, "usage: kvault bench <benchmark> [options]\n\n");
  for (const Benchmark& bench : kBenchmarks) {
    std::fprintf(out, "  %-10s %s\n", bench.name, bench.summary);
  }
  return asked_for_help ? 0 : 2;
}

}  // namespace kvault::cli
