// kvault bench engine: prompt-processing and generation tokens/s of kvault's engine, next to
// llama.cpp's own llama-bench run on the same model, threads and sizes, as a ratio.
//
// Method (the same as llama-bench's): pp = decode n_prompt random tokens in n_batch chunks on
// an empty cache; tg = decode n_gen tokens one at a time after one token. One warm-up run,
// then `reps` timed runs; the mean and standard deviation of tokens/s are reported. kvault's
// tg includes its sampler (greedy argmax over the vocabulary), which llama-bench skips:
// that is the real per-token cost of kvault's engine.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <string>
#include <vector>

#include "cli/bench_common.h"
#include "cli/cli_util.h"

#include "kvault/base/status_macros.h"
#include "kvault/engine/batch_decoder.h"
#include "kvault/engine/context.h"
#include "kvault/engine/model.h"
#include "kvault/engine/sampler.h"

namespace kvault::cli {
namespace {

struct EngineBenchOptions {
  std::string model_path;
  int n_prompt = 512;
  int n_gen = 128;
  int reps = 5;
  int threads = 0;
  std::string llama_bench;  // path; empty = from the build's llama.cpp
  bool json = false;
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
    token = sampler.Sample(context, decoder.OutputIndex(0));
  }
  return static_cast<double>(n_gen) / Seconds(start);
}

Result<BenchFigure> MeasureKvault(const EngineBenchOptions& options, bool prompt_test) {
  KV_ASSIGN_OR_RETURN(std::unique_ptr<engine::Model> model,
                      engine::Model::Load({.path = options.model_path}));
  engine::ContextParams params;
  params.n_ctx = static_cast<uint32_t>(prompt_test ? options.n_prompt : options.n_gen);
  params.n_threads = options.threads;
  KV_ASSIGN_OR_RETURN(std::unique_ptr<engine::Context> context,
                      engine::Context::Create(*model, params));
  KV_ASSIGN_OR_RETURN(std::unique_ptr<engine::Sampler> sampler,
                      engine::Sampler::Create(*model, {.temperature = 0}));
  const std::vector<llama_token> prompt =
      RandomTokens(options.n_prompt, model->info().n_vocab, 1234);
  std::vector<double> rates;
  for (int rep = -1; rep < options.reps; ++rep) {  // rep -1 is the warm-up
    Result<double> rate = prompt_test
                              ? TimePrompt(*context, prompt)
                              : TimeGeneration(*context, *sampler, options.n_gen, prompt[0]);
    if (!rate.ok()) return rate.status();
    if (rep >= 0) rates.push_back(*rate);
  }
  return Summarize(rates);
}

int Run(const EngineBenchOptions& options) {
  const int threads = options.threads > 0 ? options.threads : DefaultThreadCount();
  EngineBenchOptions resolved = options;
  resolved.threads = threads;
  Result<BenchFigure> kv_pp = MeasureKvault(resolved, /*prompt_test=*/true);
  if (!kv_pp.ok()) return ReportError(kv_pp.status());
  Result<BenchFigure> kv_tg = MeasureKvault(resolved, /*prompt_test=*/false);
  if (!kv_tg.ok()) return ReportError(kv_tg.status());

  const std::string tool =
      options.llama_bench.empty() ? LlamaToolPath("llama-bench") : options.llama_bench;
  const std::string command = ShellQuote(tool) + " -m " + ShellQuote(options.model_path) + " -p " +
                              std::to_string(options.n_prompt) + " -n " +
                              std::to_string(options.n_gen) + " -t " + std::to_string(threads) +
                              " -r " + std::to_string(options.reps) + " -o json";
  Result<std::string> output = RunCommand(command);
  if (!output.ok()) return ReportError(output.status());
  Result<Json> parsed = ParseJsonText(*output);
  if (!parsed.ok()) return ReportError(parsed.status().WithPrefix("llama-bench output"));
  BenchFigure ll_pp, ll_tg;
  if (!parsed->is_array()) return ReportError(InternalError("llama-bench printed no JSON array"));
  for (const Json& test : *parsed) {
    const BenchFigure figure{NumberOr(test, "avg_ts", 0), NumberOr(test, "stddev_ts", 0)};
    if (NumberOr(test, "n_prompt", 0) > 0 && NumberOr(test, "n_gen", 0) == 0) ll_pp = figure;
    if (NumberOr(test, "n_gen", 0) > 0 && NumberOr(test, "n_prompt", 0) == 0) ll_tg = figure;
  }

  Json report = {{"model", options.model_path},
                 {"threads", threads},
                 {"reps", options.reps},
                 {"llama_bench_command", command},
                 {"pp",
                  {{"n", options.n_prompt},
                   {"kvault_tps", kv_pp->mean},
                   {"kvault_sd", kv_pp->sd},
                   {"llama_bench_tps", ll_pp.mean},
                   {"llama_bench_sd", ll_pp.sd},
                   {"ratio", Ratio(kv_pp->mean, ll_pp.mean)}}},
                 {"tg",
                  {{"n", options.n_gen},
                   {"kvault_tps", kv_tg->mean},
                   {"kvault_sd", kv_tg->sd},
                   {"llama_bench_tps", ll_tg.mean},
                   {"llama_bench_sd", ll_tg.sd},
                   {"ratio", Ratio(kv_tg->mean, ll_tg.mean)}}}};
  if (options.json) {
    std::printf("%s\n", DumpJson(report, 2).c_str());
    return 0;
  }
  std::printf("model %s, %d threads, %d reps (+1 warm-up)\n", options.model_path.c_str(), threads,
              options.reps);
  std::printf("%-8s %18s %18s %8s\n", "test", "kvault t/s", "llama-bench t/s", "ratio");
  std::printf("%-8s %10.2f ± %5.2f %10.2f ± %5.2f %8.3f\n",
              ("pp" + std::to_string(options.n_prompt)).c_str(), kv_pp->mean, kv_pp->sd, ll_pp.mean,
              ll_pp.sd, Ratio(kv_pp->mean, ll_pp.mean));
  std::printf("%-8s %10.2f ± %5.2f %10.2f ± %5.2f %8.3f\n",
              ("tg" + std::to_string(options.n_gen)).c_str(), kv_tg->mean, kv_tg->sd, ll_tg.mean,
              ll_tg.sd, Ratio(kv_tg->mean, ll_tg.mean));
  std::printf("llama-bench: %s\n", command.c_str());
  return 0;
}

}  // namespace

int RunBenchEngine(int argc, char** argv) {
  CLI::App app("Engine tokens/s next to llama.cpp's llama-bench on the same model.",
               "bench engine");
  EngineBenchOptions options;
  app.add_option("-m,--model", options.model_path, "GGUF model file")->required();
  app.add_option("-p,--n-prompt", options.n_prompt, "prompt tokens (pp test)")
      ->capture_default_str()
      ->check(CLI::Range(1, 65536));
  app.add_option("-n,--n-gen", options.n_gen, "generated tokens (tg test)")
      ->capture_default_str()
      ->check(CLI::Range(1, 65536));
  app.add_option("-r,--reps", options.reps, "timed repetitions")
      ->capture_default_str()
      ->check(CLI::Range(1, 100));
  app.add_option("-t,--threads", options.threads, "CPU threads; 0 = all cores")
      ->capture_default_str();
  app.add_option("--llama-bench", options.llama_bench, "llama-bench binary to compare with");
  app.add_flag("--json", options.json, "print the report as JSON");
  if (auto exit_code = ParseArgs(app, argc, argv)) return *exit_code;
  return Run(options);
}

}  // namespace kvault::cli
