// kvault make-model: writes a GGUF model with a real architecture and vocabulary and random
// weights (engine/model_maker.h).
#include <cstdio>
#include <string>

#include "cli/cli_util.h"
#include "cli/commands.h"

#include "kvault/engine/model_maker.h"

namespace kvault::cli {

int RunMakeModel(int argc, char** argv) {
  CLI::App app("Write a random-weight GGUF model of a real architecture and vocabulary.",
               "make-model");
  std::string preset = "tiny";
  std::string output;
  std::string weights = "f16";
  std::string architecture;
  std::string vocab;
  std::string name;
  uint64_t seed = 42;
  float output_scale = 1.0f;
  app.add_option("--preset", preset, "shape: tiny (tests) or q05 (Qwen2.5-0.5B, benchmarks)")
      ->capture_default_str();
  app.add_option("-o,--output", output, "path of the GGUF file to write")->required();
  app.add_option("--seed", seed, "random seed; the same seed writes identical bytes")
      ->capture_default_str();
  app.add_option("--weights", weights, "weight type: f16, q8_0 or f32")->capture_default_str();
  app.add_option("--arch", architecture, "override the preset's architecture: qwen2 or llama");
  app.add_option("--vocab", vocab,
                 "GGUF file whose tokenizer.* keys are copied (default: llama.cpp's "
                 "models/ggml-vocab-qwen2.gguf, or -llama-spm for llama)");
  app.add_option("--output-scale", output_scale,
                 "scale of the final norm; > 1 makes next-token distributions peaked")
      ->capture_default_str();
  app.add_option("--name", name, "general.name (default: kvault-<preset>-<seed>)");
  if (auto exit_code = ParseArgs(app, argc, argv)) return *exit_code;

  Result<engine::ModelShape> shape = engine::FindModelPreset(preset);
  if (!shape.ok()) return ReportError(shape.status());
  Result<engine::WeightType> weight_type = engine::ParseWeightType(weights);
  if (!weight_type.ok()) return ReportError(weight_type.status());

  engine::MakeModelParams params;
  params.shape = *shape;
  if (!architecture.empty()) params.shape.architecture = architecture;
  params.name = name.empty() ? "kvault-" + preset + "-" + std::to_string(seed) : name;
  params.vocab_path = vocab.empty() ? engine::DefaultVocabPath(params.shape.architecture) : vocab;
  params.output_path = output;
  params.seed = seed;
  params.weight_type = *weight_type;
  params.output_scale = output_scale;

  Result<engine::MakeModelReport> report = engine::MakeModel(params);
  if (!report.ok()) return ReportError(report.status());
  std::fprintf(stderr, "kvault: wrote %s: %s, %d tensors, %.1fM parameters, vocab %d, %.1f MiB\n",
               output.c_str(), params.shape.architecture.c_str(), report->n_tensors,
               static_cast<double>(report->n_params) / 1e6, report->n_vocab,
               static_cast<double>(report->n_bytes) / (1 << 20));
  return 0;
}

}  // namespace kvault::cli
