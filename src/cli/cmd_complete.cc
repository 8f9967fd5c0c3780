// kvault complete: prints a completion of a prompt; the smallest proof that the engine works.
#include <cstdio>
#include <string>

#include "cli/cli_util.h"
#include "cli/commands.h"

#include "kvault/base/status_macros.h"
#include "kvault/engine/completion.h"
#include "kvault/engine/context.h"
#include "kvault/engine/model.h"
#include "kvault/engine/sampler.h"
#include "kvault/engine/tokenizer.h"

namespace kvault::cli {
namespace {

struct CompleteOptions {
  std::string model_path;
  std::string prompt;
  int n_predict = 32;
  uint32_t seed = 42;
  float temperature = 0.8f;
  int top_k = 40;
  float top_p = 0.95f;
  int threads = 0;
  bool ignore_eos = false;
};

Status RunCompletion(const CompleteOptions& options) {
  KV_ASSIGN_OR_RETURN(std::unique_ptr<engine::Model> model,
                      engine::Model::Load({.path = options.model_path}));
  engine::Tokenizer tokenizer(*model);
  KV_ASSIGN_OR_RETURN(std::vector<llama_token> prompt,
                      tokenizer.Tokenize(options.prompt, {.add_special = true}));
  if (prompt.empty()) return InvalidArgumentError("the prompt has no tokens");

  engine::ContextParams context_params;
  context_params.n_ctx = static_cast<uint32_t>(prompt.size() + options.n_predict + 1);
  context_params.n_threads = options.threads;
  KV_ASSIGN_OR_RETURN(std::unique_ptr<engine::Context> context,
                      engine::Context::Create(*model, context_params));
  engine::SamplingParams sampling;
  sampling.temperature = options.temperature;
  sampling.top_k = options.top_k;
  sampling.top_p = options.top_p;
  sampling.seed = options.seed;
  KV_ASSIGN_OR_RETURN(std::unique_ptr<engine::Sampler> sampler,
                      engine::Sampler::Create(*model, sampling));

  engine::StreamDecoder stream(&tokenizer);
  engine::CompletionParams params;
  params.n_predict = options.n_predict;
  params.stop_at_end_of_generation = !options.ignore_eos;
  params.on_token = [&](llama_token token) {
    const std::string text = stream.Push(token);
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
    return true;
  };
  KV_ASSIGN_OR_RETURN(engine::CompletionResult result,
                      engine::Complete(*context, *sampler, tokenizer, prompt, params));
  const std::string rest = stream.Flush();
  std::fwrite(rest.data(), 1, rest.size(), stdout);
  std::fputc('\n', stdout);
  const size_t n_generated = result.tokens.size();
  std::fprintf(stderr, "kvault: %zu prompt tokens in %.1f ms, %zu tokens generated in %.1f ms%s\n",
               prompt.size(), result.prompt_ms, n_generated, result.generation_ms,
               result.stopped_at_end_of_generation ? " (stopped at end of generation)" : "");
  return Status::Ok();
}

}  // namespace

int RunComplete(int argc, char** argv) {
  CLI::App app("Print a completion of a prompt with a local model.", "complete");
  CompleteOptions options;
  app.add_option("-m,--model", options.model_path, "GGUF model file")->required();
  app.add_option("-p,--prompt", options.prompt, "prompt text")->required();
  app.add_option("-n,--n-predict", options.n_predict, "tokens to generate")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 20));
  app.add_option("-s,--seed", options.seed, "sampling seed")->capture_default_str();
  app.add_option("--temp", options.temperature, "temperature; 0 = greedy")
      ->capture_default_str()
      ->check(CLI::Range(0.0f, 100.0f));
  app.add_option("--top-k", options.top_k, "top-k; 0 = off")->capture_default_str();
  app.add_option("--top-p", options.top_p, "top-p; 1 = off")->capture_default_str();
  app.add_option("-t,--threads", options.threads, "CPU threads; 0 = all cores")
      ->capture_default_str();
  app.add_flag("--ignore-eos", options.ignore_eos, "keep generating past end-of-generation");
  if (auto exit_code = ParseArgs(app, argc, argv)) return *exit_code;
  Status status = RunCompletion(options);
  return status.ok() ? 0 : ReportError(status);
}

}  // namespace kvault::cli
