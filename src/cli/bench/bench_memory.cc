// kvault bench memory: what long-conversation memory costs at 10M tokens. Builds one
// conversation of --tokens tokens of generated multi-session dialogue (testing/dialogue_generator),
// each message rendered with the model's chat template and tokenized with its vocabulary,
// appended to a TokenStore and indexed by a ChunkIndex in an on-disk SQLite file, and reports:
//
//   - RAM of the token history (TokenStore::MemoryBytes) per token; target <= 4 B;
//   - index size per token: the SQLite file's used pages (the index lives on disk; SQLite
//     caches only a bounded number of pages in RAM); target <= 8 B;
//   - ingestion tokens/s: template + tokenize + store + index, and each stage alone (text
//     generation excluded);
//   - search latency p50/p99 over --queries recall questions, searching the fog (all but the
//     last --window tokens) with fog demotion, as pre-generation recall does.
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "cli/bench/bench_common.h"
#include "cli/bench/bench_conversation.h"
#include "cli/bench/bench_harness.h"
#include "cli/cli_util.h"

#include "kvault/base/status_macros.h"
#include "kvault/testing/dialogue_generator.h"

namespace kvault::cli {
namespace {

using testing::DialogueGenerator;
using testing::DialogueTurn;

struct MemoryBenchOptions : BenchOptions {
  int64_t tokens = 10'000'000;
  std::string dir;  // empty: a temporary directory, removed afterwards
  uint64_t seed = 1;
  int queries = 200;
  int window = 4096;
  double fog_alpha = 0.5;
  int batch_turns = 256;
};

using Clock = std::chrono::steady_clock;

struct SearchLatency {
  std::vector<double> ms;
  double mean_hits = 0;
};

Result<SearchLatency> MeasureSearch(BenchConversation& conversation,
                                    const MemoryBenchOptions& options) {
  DialogueGenerator questions(options.seed + 1);
  memory::ChunkSearchParams params;
  params.k = 10;
  params.end_pos_limit = conversation.store().end_pos() - options.window;
  params.fog_alpha = options.fog_alpha;
  params.cache_size = conversation.store().capacity();
  params.store = &conversation.store();  // as the server's recall does (second search step)
  SearchLatency latency;
  for (int i = 0; i < options.queries; ++i) {
    const std::string query = questions.RandomQuestion();
    const auto start = Clock::now();
    KV_ASSIGN_OR_RETURN(std::vector<memory::ChunkHit> hits,
                        conversation.index().Search(BenchConversation::kName, query, params));
    latency.ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
    latency.mean_hits += static_cast<double>(hits.size()) / options.queries;
  }
  return latency;
}

Result<Json> MeasureIn(const MemoryBenchOptions& options, const std::string& dir) {
  BenchConversationOptions conversation_options;
  conversation_options.model_path = options.model_path;
  conversation_options.index_path = dir + "/chunks.db";
  conversation_options.cache_size = options.tokens + (1 << 20);  // nothing drops
  conversation_options.batch_turns = options.batch_turns;
  KV_ASSIGN_OR_RETURN(std::unique_ptr<BenchConversation> conversation,
                      BenchConversation::Create(conversation_options));
  DialogueGenerator dialogue(options.seed);
  while (conversation->store().end_pos() < options.tokens) {
    const DialogueTurn turn = dialogue.NextTurn();
    KV_RETURN_IF_ERROR(conversation->Append(turn.role, turn.text).status());
  }
  KV_RETURN_IF_ERROR(conversation->Flush());
  KV_ASSIGN_OR_RETURN(const memory::ChunkIndexStats stats, conversation->index().Stats());
  KV_ASSIGN_OR_RETURN(const SearchLatency latency, MeasureSearch(*conversation, options));

  const auto n = static_cast<double>(conversation->store().n_tokens());
  const StageSeconds& s = conversation->seconds();
  return Json{
      {"model", options.model_path},
      {"tokens", conversation->store().n_tokens()},
      {"turns", conversation->store().turns().size()},
      {"chunks", stats.n_chunks},
      {"token_store_bytes_per_token", static_cast<double>(conversation->store().MemoryBytes()) / n},
      {"index_bytes_per_token", static_cast<double>(stats.db_bytes) / n},
      {"fts_bytes_per_token", static_cast<double>(stats.fts_bytes) / n},
      {"ingest_tokens_per_s", n / (s.tokenize + s.store + s.index)},
      {"tokenize_tokens_per_s", n / s.tokenize},
      {"store_tokens_per_s", n / s.store},
      {"index_tokens_per_s", n / s.index},
      {"queries", options.queries},
      {"mean_hits", latency.mean_hits},
      {"search_p50_ms", Percentile(latency.ms, 50)},
      {"search_p99_ms", Percentile(latency.ms, 99)}};
}

void PrintTable(const Json& r) {
  std::printf("conversation: %.0f tokens, %.0f turns, %.0f chunks (model %s)\n",
              NumberOr(r, "tokens", 0), NumberOr(r, "turns", 0), NumberOr(r, "chunks", 0),
              r["model"].get_ref<const std::string&>().c_str());
  std::printf("RAM, token store:   %6.3f bytes/token (target <= 4)\n",
              NumberOr(r, "token_store_bytes_per_token", 0));
  std::printf("index on disk:      %6.3f bytes/token (target <= 8; FTS5 tables %.3f)\n",
              NumberOr(r, "index_bytes_per_token", 0), NumberOr(r, "fts_bytes_per_token", 0));
  std::printf("ingestion:          %10.0f tokens/s (tokenize %.0f, store %.0f, index %.0f)\n",
              NumberOr(r, "ingest_tokens_per_s", 0), NumberOr(r, "tokenize_tokens_per_s", 0),
              NumberOr(r, "store_tokens_per_s", 0), NumberOr(r, "index_tokens_per_s", 0));
  std::printf("search (%0.f queries, fog only, k=10): p50 %.2f ms, p99 %.2f ms, %.1f hits/query\n",
              NumberOr(r, "queries", 0), NumberOr(r, "search_p50_ms", 0),
              NumberOr(r, "search_p99_ms", 0), NumberOr(r, "mean_hits", 0));
}

Result<Json> Measure(const MemoryBenchOptions& options) {
  KV_ASSIGN_OR_RETURN(const std::unique_ptr<BenchDir> dir, BenchDir::Create(options.dir));
  return MeasureIn(options, dir->path());
}

}  // namespace

int RunBenchMemory(int argc, char** argv) {
  CLI::App app(
      "RAM per token of the token store and the chunk index, ingestion tokens/s and search "
      "latency for one long generated conversation.",
      "bench memory");
  MemoryBenchOptions options;
  AddModelOption(app, options, "GGUF model file (its vocabulary is used)");
  AddBoundedOption(app, "--tokens", options.tokens, "conversation length in tokens", 1000,
                   int64_t{1} << 36);
  app.add_option("--dir", options.dir, "keep the index here (default: a temporary directory)");
  app.add_option("--seed", options.seed, "dialogue generator seed")->capture_default_str();
  AddBoundedOption(app, "--queries", options.queries, "searches timed", 1, 100000);
  AddBoundedOption(app, "--window", options.window,
                   "tokens excluded from search at the end (clear zone)", 0, 1 << 20);
  AddBoundedOption(app, "--fog-alpha", options.fog_alpha, "recency demotion in search", 0.0, 100.0);
  AddBoundedOption(app, "--batch-turns", options.batch_turns, "turns per index transaction", 1,
                   1 << 20);
  return RunDriver(
      app, options, argc, argv, [&] { return Measure(options); }, PrintTable);
}

}  // namespace kvault::cli
