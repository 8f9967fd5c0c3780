// kvault bench recall (the default mode): does the search find what real questions about a
// long conversation need? Generates --dialogues multi-session dialogues with an answer key
// (testing/memory_dialogue.h: facts stated indirectly and asked in other words, answers spread
// over 2-3 turns sessions apart, dates, distractors, questions with no answer), stores and
// indexes each as the server does, and asks every question over the fog (everything before
// the last --window tokens), twice: with kvault's search as pre-generation recall runs it, and
// with plain BM25 over the same chunks (every word of the question, no phrases, no fog) as the
// baseline.
//
// Per kind of question and k = 1, 3, 5, 10: all@k, the share of questions whose evidence
// turns all overlap the top k chunks, and coverage@k, the mean share of evidence turns
// covered. For the questions without an answer: how well the top score separates them from
// the answerable ones (AUC: the chance that an answerable question's top score is above a
// no-answer question's; and the best single threshold's balanced accuracy).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "cli/bench/bench_common.h"
#include "cli/bench/bench_conversation.h"
#include "cli/bench/bench_harness.h"
#include "cli/cli_util.h"

#include "kvault/base/status_macros.h"
#include "kvault/testing/memory_dialogue.h"

namespace kvault::cli {
namespace {

using testing::EvidenceQuestion;
using testing::QuestionKind;

struct EvidenceBenchOptions : BenchOptions {
  std::string embedding_model;
  int dialogues = 4;
  int sessions = 60;
  int turns_per_session = 40;
  uint64_t seed = 1;
  double fog_alpha = 0.5;
  int64_t cache_size = 10'000'000;
  int window = 4096;
  std::string dir;
  bool show_misses = false;
  bool no_timestamps = false;
};

constexpr int kKs[] = {1, 3, 5, 10};
constexpr const char* kModes[] = {"kvault", "bm25"};

// One question's outcome in one mode.
struct Outcome {
  QuestionKind kind;
  double top_score = 0;    // 0 when nothing was found
  int covered_at[4] = {};  // evidence turns covered by the top kKs[i] hits
  int n_evidence = 0;
  double ms = 0;
};

bool Overlaps(const memory::ChunkHit& hit, const memory::Turn& turn) {
  return hit.first_pos < turn.end_pos() && turn.first_pos < hit.end_pos();
}

// With turn times, a question about a date needs the turn that says what happened (its date
// comes with it); without them, also the session's opening message that states the date.
Outcome Score(const EvidenceQuestion& question, const std::vector<memory::ChunkHit>& hits,
              const std::vector<memory::Turn>& turns, bool dated) {
  const std::vector<size_t>& evidence = dated ? question.dated_evidence : question.evidence;
  Outcome outcome{question.kind};
  outcome.n_evidence = static_cast<int>(evidence.size());
  outcome.top_score = hits.empty() ? 0 : hits[0].score;
  for (size_t i = 0; i < std::size(kKs); ++i) {
    for (size_t e : evidence) {
      const size_t n = std::min(hits.size(), static_cast<size_t>(kKs[i]));
      outcome.covered_at[i] += std::any_of(
          hits.begin(), hits.begin() + n, [&](const auto& hit) { return Overlaps(hit, turns[e]); });
    }
  }
  return outcome;
}

Status ShowMiss(BenchConversation& conversation, const EvidenceQuestion& question,
                const Outcome& outcome, const std::vector<memory::ChunkHit>& hits) {
  std::fprintf(stderr, "[%s] %d/%d at 5: %s (answer: %s)\n",
               std::string(QuestionKindName(question.kind)).c_str(), outcome.covered_at[2],
               outcome.n_evidence, question.question.c_str(), question.answer.c_str());
  for (size_t r = 0; r < std::min<size_t>(hits.size(), 3); ++r) {
    KV_ASSIGN_OR_RETURN(std::string text, conversation.Text(hits[r].first_pos, hits[r].n_tokens));
    std::replace(text.begin(), text.end(), '\n', ' ');
    std::fprintf(stderr, "  %.2f %s\n", hits[r].score, text.substr(0, 160).c_str());
  }
  return Status::Ok();
}

// Builds one dialogue's conversation and asks its questions in both modes.
Status RunDialogue(const EvidenceBenchOptions& options, int d, const std::string& dir,
                   std::map<std::string, std::vector<Outcome>>* outcomes, int64_t* tokens) {
  testing::MemoryDialogueParams params;
  params.seed = options.seed + static_cast<uint64_t>(d) * 1000003;
  params.sessions = options.sessions;
  params.turns_per_session = options.turns_per_session;
  const testing::MemoryDialogue dialogue = testing::GenerateMemoryDialogue(params);
  KV_ASSIGN_OR_RETURN(
      std::unique_ptr<BenchConversation> conversation,
      BenchConversation::Create({.model_path = options.model_path,
                                 .index_path = dir + "/dialogue" + std::to_string(d) + ".db",
                                 .cache_size = int64_t{1} << 30,
                                 .embedding_model = options.embedding_model}));
  std::vector<memory::Turn> turns;
  for (const testing::MemoryDialogueTurn& turn : dialogue.turns) {
    KV_ASSIGN_OR_RETURN(
        memory::Turn stored,
        conversation->Append(turn.role, turn.text, options.no_timestamps ? 0 : turn.unix_seconds));
    turns.push_back(stored);
  }
  KV_RETURN_IF_ERROR(conversation->Flush());
  *tokens += conversation->store().end_pos();
  for (const char* mode : kModes) {
    memory::ChunkSearchParams search;
    search.k = 10;
    search.end_pos_limit = conversation->store().end_pos() - options.window;
    search.fog_alpha = options.fog_alpha;
    search.cache_size = options.cache_size;
    search.plain_bm25 = std::string_view(mode) == "bm25";
    search.store = &conversation->store();  // as the server's recall: the second step reads it
    for (const EvidenceQuestion& question : dialogue.questions) {
      const auto start = std::chrono::steady_clock::now();
      KV_ASSIGN_OR_RETURN(
          const std::vector<memory::ChunkHit> hits,
          conversation->index().Search(BenchConversation::kName, question.question, search));
      Outcome outcome = Score(question, hits, turns, !options.no_timestamps);
      outcome.ms =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
              .count();
      if (options.show_misses && !search.plain_bm25 && outcome.covered_at[2] < outcome.n_evidence) {
        KV_RETURN_IF_ERROR(ShowMiss(*conversation, question, outcome, hits));
      }
      (*outcomes)[mode].push_back(outcome);
    }
  }
  return Status::Ok();
}

Json KindRow(const std::vector<const Outcome*>& group) {
  Json row = {{"questions", group.size()}};
  const double n = std::max<double>(1, static_cast<double>(group.size()));
  for (size_t i = 0; i < std::size(kKs); ++i) {
    double all = 0, coverage = 0;
    for (const Outcome* o : group) {
      all += o->covered_at[i] == o->n_evidence;
      coverage += static_cast<double>(o->covered_at[i]) / o->n_evidence;
    }
    row["all_at_" + std::to_string(kKs[i])] = all / n;
    row["coverage_at_" + std::to_string(kKs[i])] = coverage / n;
  }
  return row;
}

// AUC and the best threshold's balanced accuracy of top scores, answerable vs no answer.
Json Separation(const std::vector<Outcome>& outcomes) {
  std::vector<double> yes, no;
  for (const Outcome& o : outcomes)
    (o.kind == QuestionKind::kNone ? no : yes).push_back(o.top_score);
  double wins = 0;
  for (double y : yes) {
    for (double n : no) wins += y > n ? 1 : y == n ? 0.5 : 0;
  }
  const double pairs = static_cast<double>(yes.size() * no.size());
  double best = 0, best_threshold = 0;
  std::vector<double> thresholds = yes;
  thresholds.insert(thresholds.end(), no.begin(), no.end());
  for (double t : thresholds) {
    const double tpr = static_cast<double>(std::count_if(yes.begin(), yes.end(),
                                                         [t](double s) { return s >= t; })) /
                       std::max<size_t>(1, yes.size());
    const double tnr =
        static_cast<double>(std::count_if(no.begin(), no.end(), [t](double s) { return s < t; })) /
        std::max<size_t>(1, no.size());
    if ((tpr + tnr) / 2 > best) best = (tpr + tnr) / 2, best_threshold = t;
  }
  return {{"auc", pairs > 0 ? wins / pairs : 0},
          {"best_threshold", best_threshold},
          {"balanced_accuracy", best}};
}

Json ModeReport(const std::vector<Outcome>& outcomes) {
  Json by_kind = Json::object();
  std::vector<const Outcome*> answerable;
  for (QuestionKind kind : testing::kQuestionKinds) {
    if (kind == QuestionKind::kNone) continue;
    std::vector<const Outcome*> group;
    for (const Outcome& o : outcomes) {
      if (o.kind == kind) group.push_back(&o);
    }
    answerable.insert(answerable.end(), group.begin(), group.end());
    by_kind[std::string(QuestionKindName(kind))] = KindRow(group);
  }
  std::vector<double> ms;
  for (const Outcome& o : outcomes) ms.push_back(o.ms);
  return {{"by_kind", by_kind},
          {"overall", KindRow(answerable)},
          {"no_answer", Separation(outcomes)},
          {"search_p50_ms", Percentile(ms, 50)},
          {"search_p99_ms", Percentile(ms, 99)}};
}

Result<Json> Measure(const EvidenceBenchOptions& options) {
  KV_ASSIGN_OR_RETURN(const std::unique_ptr<BenchDir> dir, BenchDir::Create(options.dir));
  std::map<std::string, std::vector<Outcome>> outcomes;
  int64_t tokens = 0;
  for (int d = 0; d < options.dialogues; ++d) {
    KV_RETURN_IF_ERROR(RunDialogue(options, d, dir->path(), &outcomes, &tokens));
  }
  Json modes = Json::object();
  for (const auto& [mode, list] : outcomes) modes[mode] = ModeReport(list);
  return Json{{"model", options.model_path},
              {"dialogues", options.dialogues},
              {"mean_tokens", static_cast<double>(tokens) / options.dialogues},
              {"search", options.embedding_model.empty() ? "bm25" : "bm25+dense"},
              {"timestamps", !options.no_timestamps},
              {"window", options.window},
              {"fog_alpha", options.fog_alpha},
              {"modes", modes}};
}

void PrintTable(const Json& report) {
  std::printf(
      "%.0f dialogues of %.0f tokens on average, window %.0f, fog alpha %.2f, search %s, "
      "turns %s\n",
      NumberOr(report, "dialogues", 0), NumberOr(report, "mean_tokens", 0),
      NumberOr(report, "window", 0), NumberOr(report, "fog_alpha", 0),
      report["search"].get_ref<const std::string&>().c_str(),
      report.value("timestamps", false) ? "with their times" : "without times");
  const Json& kv = report["modes"]["kvault"];
  const Json& bm = report["modes"]["bm25"];
  std::printf("%-9s %3s %4s  %-13s %-13s  %-13s %-13s\n", "kind", "n", "k", "all: kvault", "bm25",
              "coverage: kv", "bm25");
  auto rows = [&](const std::string& label, const Json& a, const Json& b) {
    for (int k : kKs) {
      const std::string all = "all_at_" + std::to_string(k);
      const std::string cov = "coverage_at_" + std::to_string(k);
      std::printf("%-9s %3.0f %4d  %-13.3f %-13.3f  %-13.3f %-13.3f\n", label.c_str(),
                  NumberOr(a, "questions", 0), k, NumberOr(a, all.c_str(), 0),
                  NumberOr(b, all.c_str(), 0), NumberOr(a, cov.c_str(), 0),
                  NumberOr(b, cov.c_str(), 0));
    }
  };
  for (const auto& [kind, row] : kv["by_kind"].items()) rows(kind, row, bm["by_kind"][kind]);
  rows("overall", kv["overall"], bm["overall"]);
  for (const char* mode : kModes) {
    const Json& m = report["modes"][mode];
    std::printf(
        "%-7s no-answer separation: AUC %.3f, best threshold %.2f (balanced accuracy "
        "%.3f); search p50 %.2f ms, p99 %.2f ms\n",
        mode, NumberOr(m["no_answer"], "auc", 0), NumberOr(m["no_answer"], "best_threshold", 0),
        NumberOr(m["no_answer"], "balanced_accuracy", 0), NumberOr(m, "search_p50_ms", 0),
        NumberOr(m, "search_p99_ms", 0));
  }
}

}  // namespace

int RunBenchRecallEvidence(int argc, char** argv) {
  CLI::App app(
      "all@k and coverage@k of the evidence of generated long-memory questions (single facts "
      "in other words, multi-turn, dates, no answer), kvault's search against plain BM25. "
      "--legacy: the old planted-fact recall@k smoke test.",
      "bench recall");
  EvidenceBenchOptions options;
  AddModelOption(app, options, "GGUF model file (its vocabulary is used)");
  app.add_option("--embedding-model", options.embedding_model,
                 "GGUF embedding model: fuse dense search with BM25 (default: BM25 only)");
  AddBoundedOption(app, "--dialogues", options.dialogues, "dialogues (seeds)", 1, 1000);
  AddBoundedOption(app, "--sessions", options.sessions, "sessions per dialogue", 8, 100000);
  AddBoundedOption(app, "--turns-per-session", options.turns_per_session,
                   "filler turns per session", 4, 100000);
  app.add_option("--seed", options.seed, "generator seed")->capture_default_str();
  AddBoundedOption(app, "--fog-alpha", options.fog_alpha, "recency demotion (server default 0.5)",
                   0.0, 100.0);
  AddBoundedOption(app, "--cache-size", options.cache_size, "the fog alpha's age scale, in tokens",
                   1, int64_t{1} << 36);
  AddBoundedOption(app, "--window", options.window, "tokens at the end that are not searched", 0,
                   1 << 20);
  app.add_option("--dir", options.dir, "keep the indexes here (default: a temporary directory)");
  app.add_flag("--no-timestamps", options.no_timestamps,
               "store the turns without their times (as before turns had times): questions "
               "about dates then also need the session's opening message");
  app.add_flag("--show-misses", options.show_misses,
               "print kvault's questions whose evidence is not all in its top 5");
  return RunDriver(
      app, options, argc, argv, [&] { return Measure(options); }, PrintTable);
}

}  // namespace kvault::cli
