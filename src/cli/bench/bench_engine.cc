// kvault bench engine: prompt-processing and generation tokens/s of kvault's engine, next to
// llama.cpp's own llama-bench run on the same model, threads and sizes, as a ratio.
//
// Method (the same as llama-bench's): pp = decode n_prompt random tokens in n_batch chunks on
// an empty cache; tg = decode n_gen tokens one at a time after one token. Each side warms up
// once; then `reps` rounds each time both sides once (llama-bench with -r 1), alternating
// which goes first. Reported: mean and standard deviation of tokens/s, the ratio of means,
// and the median of the per-round ratios. kvault's
// tg includes its sampler (greedy argmax over the vocabulary), which llama-bench skips:
// that is the real per-token cost of kvault's engine.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <string>
#include <vector>

#include "cli/bench/bench_common.h"
#include "cli/bench/bench_harness.h"
#include "cli/cli_util.h"

#include "kvault/base/status_macros.h"
#include "kvault/engine/batch_decoder.h"
#include "kvault/engine/context.h"
#include "kvault/engine/model.h"
#include "kvault/engine/sampler.h"

namespace kvault::cli {
namespace {

struct EngineBenchOptions : BenchOptions {
  int n_prompt = 512;
  int n_gen = 128;
  int reps = 6;
  std::string llama_bench;  // path; empty = from the build's llama.cpp
};

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

std::vector<llama_token> RandomTokens(int n, int n_vocab, uint32_t seed) {
  std::vector<llama_token> tokens(static_cast<size_t>(n));
  uint64_t state = seed;
  for (llama_token& t : tokens) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    t = static_cast<llama_token>((state >> 33) % static_cast<uint64_t>(n_vocab));
  }
  return tokens;
}

Result<double> TimePrompt(engine::Context& context, std::span<const llama_token> prompt) {
  context.ClearAll();
  engine::BatchDecoder decoder(&context);
  const auto start = Clock::now();
  for (size_t offset = 0; offset < prompt.size(); offset += decoder.capacity()) {
    const size_t n = std::min<size_t>(decoder.capacity(), prompt.size() - offset);
    const engine::SequenceChunk chunk{0, static_cast<llama_pos>(offset), prompt.subspan(offset, n),
                                      offset + n == prompt.size()};
    KV_RETURN_IF_ERROR(decoder.Decode({&chunk, 1}));
  }
  llama_synchronize(context.raw());
  return static_cast<double>(prompt.size()) / Seconds(start);
}

Result<double> TimeGeneration(engine::Context& context, engine::Sampler& sampler, int n_gen,
                              llama_token first) {
  context.ClearAll();
  engine::BatchDecoder decoder(&context);
  llama_token token = first;
  const auto start = Clock::now();
  for (int i = 0; i < n_gen; ++i) {
    const engine::SequenceChunk chunk{0, static_cast<llama_pos>(i), {&token, 1}, true};
    KV_RETURN_IF_ERROR(decoder.Decode({&chunk, 1}));
    KV_ASSIGN_OR_RETURN(token, sampler.Sample(context, decoder.OutputIndex(0)));
  }
  return static_cast<double>(n_gen) / Seconds(start);
}

// kvault's side: the model and both contexts stay loaded across rounds, as in a server.
class KvaultEngineBench {
 public:
  static Result<std::unique_ptr<KvaultEngineBench>> Create(const EngineBenchOptions& options) {
    auto bench = std::unique_ptr<KvaultEngineBench>(new KvaultEngineBench(options));
    KV_ASSIGN_OR_RETURN(bench->model_, engine::Model::Load({.path = options.model_path}));
    engine::ContextParams params;
    params.n_threads = options.threads;
    params.n_ctx = static_cast<uint32_t>(options.n_prompt);
    KV_ASSIGN_OR_RETURN(bench->pp_context_, engine::Context::Create(*bench->model_, params));
    params.n_ctx = static_cast<uint32_t>(options.n_gen);
    KV_ASSIGN_OR_RETURN(bench->tg_context_, engine::Context::Create(*bench->model_, params));
    KV_ASSIGN_OR_RETURN(bench->sampler_,
                        engine::Sampler::Create(*bench->model_, {.temperature = 0}));
    bench->prompt_ = RandomTokens(options.n_prompt, bench->model_->info().n_vocab, 1234);
    // Warm-up, as llama-bench does before its timed runs.
    KV_RETURN_IF_ERROR(bench->Prompt().status());
    KV_RETURN_IF_ERROR(bench->Generation().status());
    return bench;
  }
  Result<double> Prompt() { return TimePrompt(*pp_context_, prompt_); }
  Result<double> Generation() {
    return TimeGeneration(*tg_context_, *sampler_, options_.n_gen, prompt_[0]);
  }

 private:
  explicit KvaultEngineBench(const EngineBenchOptions& options) : options_(options) {}
  EngineBenchOptions options_;
  std::unique_ptr<engine::Model> model_;
  std::unique_ptr<engine::Context> pp_context_;
  std::unique_ptr<engine::Context> tg_context_;
  std::unique_ptr<engine::Sampler> sampler_;
  std::vector<llama_token> prompt_;
};

struct LlamaBenchRound {
  double pp_tps = 0;
  double tg_tps = 0;
};

// One llama-bench invocation with -r 1 (it warms up before its timed run, like kvault).
Result<LlamaBenchRound> RunLlamaBench(const std::string& command) {
  KV_ASSIGN_OR_RETURN(std::string output, RunCommand(command));
  KV_ASSIGN_OR_RETURN(Json parsed, ParseJsonText(output));
  if (!parsed.is_array()) return InternalError("llama-bench printed no JSON array");
  LlamaBenchRound round;
  for (const Json& test : parsed) {
    const double tps = NumberOr(test, "avg_ts", 0);
    if (NumberOr(test, "n_prompt", 0) > 0 && NumberOr(test, "n_gen", 0) == 0) round.pp_tps = tps;
    if (NumberOr(test, "n_gen", 0) > 0 && NumberOr(test, "n_prompt", 0) == 0) round.tg_tps = tps;
  }
  if (round.pp_tps <= 0 || round.tg_tps <= 0)
    return InternalError("llama-bench output lacks pp or tg");
  return round;
}

struct Series {
  std::vector<double> kvault, llama, paired_ratio;
  void Add(double k, double l) {
    kvault.push_back(k);
    llama.push_back(l);
    paired_ratio.push_back(Ratio(k, l));
  }
  Json ToJson(int n) const {
    const BenchFigure k = Summarize(kvault), l = Summarize(llama);
    return {{"n", n},
            {"kvault_tps", k.mean},
            {"kvault_sd", k.sd},
            {"llama_bench_tps", l.mean},
            {"llama_bench_sd", l.sd},
            {"ratio", Ratio(k.mean, l.mean)},
            {"paired_ratio_median", Percentile(paired_ratio, 50)}};
  }
};

Result<Json> Measure(const EngineBenchOptions& options) {
  EngineBenchOptions resolved = options;
  resolved.threads = options.threads > 0 ? options.threads : DefaultThreadCount();
  KV_ASSIGN_OR_RETURN(std::unique_ptr<KvaultEngineBench> kvault,
                      KvaultEngineBench::Create(resolved));

  const std::string tool =
      options.llama_bench.empty() ? LlamaToolPath("llama-bench") : options.llama_bench;
  const std::string command = ShellQuote(tool) + " -m " + ShellQuote(options.model_path) + " -p " +
                              std::to_string(options.n_prompt) + " -n " +
                              std::to_string(options.n_gen) + " -t " +
                              std::to_string(resolved.threads) + " -r 1 -o json";
  // Rounds alternate which side runs first (ABBA), so drift in the machine's speed during
  // the run cancels out of the ratio instead of favouring one side.
  Series pp, tg;
  for (int round = 0; round < options.reps; ++round) {
    Result<double> k_pp = 0.0, k_tg = 0.0;
    Result<LlamaBenchRound> llama = LlamaBenchRound{};
    const bool kvault_first = round % 2 == 0;
    if (!kvault_first) llama = RunLlamaBench(command);
    if (llama.ok()) k_pp = kvault->Prompt();
    if (llama.ok() && k_pp.ok()) k_tg = kvault->Generation();
    if (kvault_first && k_pp.ok() && k_tg.ok()) llama = RunLlamaBench(command);
    for (const Status& status : {llama.status(), k_pp.status(), k_tg.status()}) {
      KV_RETURN_IF_ERROR(status);
    }
    pp.Add(*k_pp, llama->pp_tps);
    tg.Add(*k_tg, llama->tg_tps);
  }

  return Json{{"model", options.model_path},
              {"threads", resolved.threads},
              {"rounds", options.reps},
              {"llama_bench_command", command},
              {"pp", pp.ToJson(options.n_prompt)},
              {"tg", tg.ToJson(options.n_gen)}};
}

void PrintTable(const Json& report, const EngineBenchOptions& options) {
  const std::string& command = report["llama_bench_command"].get_ref<const std::string&>();
  std::printf("model %s, %d threads, %d interleaved rounds (after one warm-up each)\n",
              options.model_path.c_str(), report["threads"].get<int>(), options.reps);
  std::printf("%-8s %18s %18s %8s %14s\n", "test", "kvault t/s", "llama-bench t/s", "ratio",
              "paired median");
  for (const auto& [name, key] : {std::pair<std::string, const char*>{"pp", "pp"}, {"tg", "tg"}}) {
    const Json& row = report[key];
    const int n = name == "pp" ? options.n_prompt : options.n_gen;
    std::printf("%-8s %10.2f ± %5.2f %10.2f ± %5.2f %8.3f %14.3f\n",
                (name + std::to_string(n)).c_str(), NumberOr(row, "kvault_tps", 0),
                NumberOr(row, "kvault_sd", 0), NumberOr(row, "llama_bench_tps", 0),
                NumberOr(row, "llama_bench_sd", 0), NumberOr(row, "ratio", 0),
                NumberOr(row, "paired_ratio_median", 0));
  }
  std::printf("llama-bench: %s\n", command.c_str());
}

}  // namespace

int RunBenchEngine(int argc, char** argv) {
  CLI::App app("Engine tokens/s next to llama.cpp's llama-bench on the same model.",
               "bench engine");
  EngineBenchOptions options;
  AddModelOption(app, options);
  AddBoundedOption(app, "-p,--n-prompt", options.n_prompt, "prompt tokens (pp test)", 1, 65536);
  AddBoundedOption(app, "-n,--n-gen", options.n_gen, "generated tokens (tg test)", 1, 65536);
  AddBoundedOption(app, "-r,--reps", options.reps, "interleaved timed rounds", 1, 100);
  AddThreadsOption(app, options);
  app.add_option("--llama-bench", options.llama_bench, "llama-bench binary to compare with");
  return RunDriver(
      app, options, argc, argv, [&] { return Measure(options); },
      [&](const Json& report) { PrintTable(report, options); });
}

}  // namespace kvault::cli
