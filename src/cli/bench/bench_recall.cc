// kvault bench recall --legacy: a smoke test of pre-generation recall (the default mode, in
// bench_recall_evidence.cc, asks harder questions): does it find a fact said long ago? Generates
// one long multi-session dialogue (testing/dialogue_generator) with --facts-per-depth facts planted
// at each of --depths (tokens between the end of the fact's turn and the end of the
// conversation), then asks each fact's paraphrased question at the end, exactly as the
// server's recall does: ChunkIndex::Search over the fog (everything before the last --window
// tokens) with fog demotion (--fog-alpha over --cache-size). A fact is found at rank r if the
// r-th hit overlaps the turn that states it. Reports recall@1, @5 and @10 by depth and
// overall; the target is recall@5 >= 0.9 overall. With --embedding-model the index also
// searches chunk embeddings and fuses both rankings, as `kvault serve --embedding-model` does.
//
// Questions name the fact's subject, never its value ("What did I say my sister's dog's name
// was?" for "my sister's dog is called Biscuit"), and the filler dialogue mentions the same
// relatives, pets and places in passing, so other chunks compete.
#include <algorithm>
#include <cstdio>
#include <map>
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
using testing::PlantedFact;

struct RecallBenchOptions : BenchOptions {
  std::string embedding_model;  // "" = BM25 only
  std::vector<int64_t> depths = {10'000, 50'000, 100'000, 500'000, 1'000'000, 5'000'000};
  int facts_per_depth = 20;
  uint64_t seed = 1;
  double fog_alpha = 0.5;
  int64_t cache_size = 10'000'000;
  int window = 4096;
  std::string dir;
  bool show_misses = false;
};

// Facts of one depth are this many tokens apart, so they land in different chunks.
constexpr int64_t kFactSpacing = 600;
constexpr const char* kAcknowledgements[] = {"Noted, I will keep that in mind.",
                                             "Got it, thanks for telling me.",
                                             "Understood. Anything else on your mind?"};

struct Plant {
  int64_t depth = 0;   // asked for
  int64_t target = 0;  // position to plant at
  PlantedFact fact;
  memory::Turn turn;  // where it was planted
  int rank = 0;       // 1-based rank of the first hit on it; 0 = not in the top 10
};

std::vector<Plant> PlanFacts(const RecallBenchOptions& options, int64_t total,
                             DialogueGenerator& generator) {
  std::vector<Plant> plants;
  for (int64_t depth : options.depths) {
    for (int j = 0; j < options.facts_per_depth; ++j) {
      plants.push_back({depth, total - depth - j * kFactSpacing, generator.NextFact(), {}, 0});
    }
  }
  std::sort(plants.begin(), plants.end(),
            [](const Plant& a, const Plant& b) { return a.target < b.target; });
  return plants;
}

// Generates the dialogue, planting each fact (and an acknowledgement) when its position comes.
Status BuildConversation(BenchConversation& conversation, std::vector<Plant>& plants, int64_t total,
                         uint64_t seed) {
  DialogueGenerator dialogue(seed);
  size_t next = 0;
  while (conversation.store().end_pos() < total) {
    if (next < plants.size() && plants[next].target <= conversation.store().end_pos()) {
      KV_ASSIGN_OR_RETURN(plants[next].turn,
                          conversation.Append(memory::Role::kUser, plants[next].fact.statement));
      KV_RETURN_IF_ERROR(
          conversation.Append(memory::Role::kAssistant, kAcknowledgements[next % 3]).status());
      ++next;
      continue;
    }
    for (int i = 0; i < 2; ++i) {  // a user turn and the assistant's answer
      const DialogueTurn turn = dialogue.NextTurn();
      KV_RETURN_IF_ERROR(conversation.Append(turn.role, turn.text).status());
    }
  }
  return conversation.Flush();
}

Status AskQuestions(BenchConversation& conversation, const RecallBenchOptions& options,
                    std::vector<Plant>& plants) {
  memory::ChunkSearchParams params;
  params.k = 10;
  params.end_pos_limit = conversation.store().end_pos() - options.window;
  params.fog_alpha = options.fog_alpha;
  params.cache_size = options.cache_size;
  for (Plant& plant : plants) {
    KV_ASSIGN_OR_RETURN(
        const std::vector<memory::ChunkHit> hits,
        conversation.index().Search(BenchConversation::kName, plant.fact.question, params));
    for (size_t r = 0; r < hits.size() && plant.rank == 0; ++r) {
      if (hits[r].first_pos < plant.turn.end_pos() && plant.turn.first_pos < hits[r].end_pos()) {
        plant.rank = static_cast<int>(r + 1);
      }
    }
    if (options.show_misses && plant.rank != 1) {
      std::fprintf(stderr, "rank %d at depth %lld: %s | %s\n", plant.rank,
                   static_cast<long long>(plant.depth), plant.fact.question.c_str(),
                   plant.fact.statement.c_str());
      if (!hits.empty()) {
        KV_ASSIGN_OR_RETURN(std::string top,
                            conversation.Text(hits[0].first_pos, hits[0].n_tokens));
        std::fprintf(stderr, "  top hit: %s\n", top.c_str());
      }
    }
  }
  return Status::Ok();
}

Json Row(const std::vector<const Plant*>& plants, int64_t end_pos) {
  double at1 = 0, at5 = 0, at10 = 0, depth = 0;
  for (const Plant* plant : plants) {
    at1 += plant->rank == 1;
    at5 += plant->rank >= 1 && plant->rank <= 5;
    at10 += plant->rank >= 1;
    depth += static_cast<double>(end_pos - plant->turn.end_pos());
  }
  const double n = std::max<double>(1, static_cast<double>(plants.size()));
  return {{"facts", plants.size()},
          {"mean_depth", depth / n},
          {"recall_at_1", at1 / n},
          {"recall_at_5", at5 / n},
          {"recall_at_10", at10 / n}};
}

Result<Json> MeasureIn(const RecallBenchOptions& options, const std::string& dir) {
  const int64_t deepest = *std::max_element(options.depths.begin(), options.depths.end());
  const int64_t total = deepest + options.facts_per_depth * kFactSpacing + 2 * options.window;
  KV_ASSIGN_OR_RETURN(
      std::unique_ptr<BenchConversation> conversation,
      BenchConversation::Create({.model_path = options.model_path,
                                 .index_path = dir + "/chunks.db",
                                 .cache_size = std::max(options.cache_size, total + (1 << 20)),
                                 .embedding_model = options.embedding_model}));
  DialogueGenerator facts(options.seed + 7);
  std::vector<Plant> plants = PlanFacts(options, total, facts);
  KV_RETURN_IF_ERROR(BuildConversation(*conversation, plants, total, options.seed));
  KV_RETURN_IF_ERROR(AskQuestions(*conversation, options, plants));

  const int64_t end_pos = conversation->store().end_pos();
  std::map<int64_t, std::vector<const Plant*>> by_depth;
  std::vector<const Plant*> all;
  for (const Plant& plant : plants) {
    by_depth[plant.depth].push_back(&plant);
    all.push_back(&plant);
  }
  Json rows = Json::array();
  for (const auto& [depth, group] : by_depth) {
    Json row = Row(group, end_pos);
    row["depth"] = depth;
    rows.push_back(row);
  }
  Json search = {{"mode", "bm25"}};
  if (const engine::EmbeddingModel* embedding = conversation->embedding_model()) {
    search = {{"mode", "bm25+dense"},
              {"embedding_model", options.embedding_model},
              {"dim", embedding->dim()},
              {"pooling", engine::EmbeddingPoolingName(embedding->pooling())}};
  }
  search["index_seconds"] = conversation->seconds().index;
  return Json{{"model", options.model_path},
              {"tokens", end_pos},
              {"search", search},
              {"fog_alpha", options.fog_alpha},
              {"cache_size", options.cache_size},
              {"window", options.window},
              {"by_depth", rows},
              {"overall", Row(all, end_pos)}};
}

// A string field of our own report, "" if absent.
std::string StringOr(const Json& object, const char* key) {
  const auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get_ref<const std::string&>() : "";
}

void PrintTable(const Json& report) {
  std::printf("conversation of %.0f tokens, fog alpha %.2f over a cache of %.0f, window %.0f\n",
              NumberOr(report, "tokens", 0), NumberOr(report, "fog_alpha", 0),
              NumberOr(report, "cache_size", 0), NumberOr(report, "window", 0));
  const Json& search = report["search"];
  std::printf("search: %s", StringOr(search, "mode").c_str());
  if (search.contains("embedding_model")) {
    std::printf(" with %s (%.0f dimensions, %s pooling)",
                StringOr(search, "embedding_model").c_str(), NumberOr(search, "dim", 0),
                StringOr(search, "pooling").c_str());
  }
  std::printf(", indexing took %.1f s\n", NumberOr(search, "index_seconds", 0));
  std::printf("%10s %6s %12s %9s %9s %9s\n", "depth", "facts", "mean depth", "recall@1", "recall@5",
              "recall@10");
  auto print = [](const std::string& label, const Json& row) {
    std::printf("%10s %6.0f %12.0f %9.3f %9.3f %9.3f\n", label.c_str(), NumberOr(row, "facts", 0),
                NumberOr(row, "mean_depth", 0), NumberOr(row, "recall_at_1", 0),
                NumberOr(row, "recall_at_5", 0), NumberOr(row, "recall_at_10", 0));
  };
  for (const Json& row : report["by_depth"]) {
    print(std::to_string(static_cast<int64_t>(NumberOr(row, "depth", 0))), row);
  }
  print("overall", report["overall"]);
}

Result<Json> Measure(const RecallBenchOptions& options) {
  for (int64_t depth : options.depths) {
    if (depth <= options.window) {
      return InvalidArgumentError("--depths: " + std::to_string(depth) +
                                  " is inside the window of " + std::to_string(options.window) +
                                  " tokens, where nothing needs recalling");
    }
  }
  const size_t n_facts = options.depths.size() * static_cast<size_t>(options.facts_per_depth);
  if (n_facts > DialogueGenerator::SubjectCount()) {
    return InvalidArgumentError("--facts-per-depth x --depths asks for " + std::to_string(n_facts) +
                                " facts; the generator has " +
                                std::to_string(DialogueGenerator::SubjectCount()) +
                                " distinct subjects");
  }
  KV_ASSIGN_OR_RETURN(const std::unique_ptr<BenchDir> dir, BenchDir::Create(options.dir));
  return MeasureIn(options, dir->path());
}

}  // namespace

int RunBenchRecall(int argc, char** argv) {
  std::vector<char*> args(argv, argv + argc);
  const auto legacy = std::find_if(args.begin(), args.end(),
                                   [](const char* arg) { return std::string(arg) == "--legacy"; });
  if (legacy == args.end()) return RunBenchRecallEvidence(argc, argv);
  args.erase(legacy);
  argc = static_cast<int>(args.size());
  argv = args.data();
  CLI::App app(
      "Recall@1/5/10 of facts planted deep in a generated dialogue, asked with paraphrased "
      "questions.",
      "bench recall --legacy");
  RecallBenchOptions options;
  AddModelOption(app, options, "GGUF model file (its vocabulary is used)");
  app.add_option("--embedding-model", options.embedding_model,
                 "GGUF embedding model: fuse dense search with BM25 (default: BM25 only)");
  app.add_option("--depths", options.depths, "fact depths in tokens, e.g. 10000,50000")
      ->delimiter(',')
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 34));
  AddBoundedOption(app, "--facts-per-depth", options.facts_per_depth, "facts planted at each depth",
                   1, 1000);
  app.add_option("--seed", options.seed, "dialogue generator seed")->capture_default_str();
  AddBoundedOption(app, "--fog-alpha", options.fog_alpha, "recency demotion (server default 0.5)",
                   0.0, 100.0);
  AddBoundedOption(app, "--cache-size", options.cache_size, "the fog alpha's age scale, in tokens",
                   1, int64_t{1} << 36);
  AddBoundedOption(app, "--window", options.window, "tokens at the end that are not searched", 0,
                   1 << 20);
  app.add_option("--dir", options.dir, "keep the index here (default: a temporary directory)");
  app.add_flag("--show-misses", options.show_misses, "print facts not found at rank 1");
  return RunDriver(
      app, options, argc, argv, [&] { return Measure(options); }, PrintTable);
}

}  // namespace kvault::cli
