// engine/model_maker.h: writes a loadable GGUF model with a real architecture, the real
// tokenizer of one of llama.cpp's models/ggml-vocab-*.gguf files, and seeded random weights
// (`kvault make-model`). Nothing can be downloaded here, so tests and benchmarks run on these.
//
// Weights are uniform with variance 1/fan_in, so activations stay O(1) through any depth;
// norms are 1. `output_scale` multiplies the final norm: since logits are linear in it, a value
// above 1 makes next-token distributions peaked (random models are otherwise nearly flat,
// which makes greedy ties and KL comparisons meaningless).
//
// The file is a pure function of the parameters: the same seed writes byte-identical files.
//
// Thread-safety: MakeModel may run concurrently for different output paths.
#pragma once

#include <cstdint>
#include <string>

#include "kvault/base/result.h"
#include "kvault/engine/model_preset.h"

namespace kvault::engine {

// kF32 keeps every matrix in f32: 2x the size of f16, for tests that compare runs whose
// kernels round activations differently (f16 rounding would show up as logit noise).
enum class WeightType { kF16, kQ8_0, kF32 };
Result<WeightType> ParseWeightType(std::string_view name);

struct MakeModelParams {
  ModelShape shape;
  std::string name;        // general.name
  std::string vocab_path;  // a GGUF holding tokenizer.* keys
  std::string output_path;
  uint64_t seed = 42;
  WeightType weight_type = WeightType::kF16;
  float output_scale = 1.0f;
};

struct MakeModelReport {
  uint64_t n_params = 0;
  uint64_t n_bytes = 0;
  int n_tensors = 0;
  int n_vocab = 0;
};

Result<MakeModelReport> MakeModel(const MakeModelParams& params);

// models/ggml-vocab-<name>.gguf under llama.cpp's source tree (KVAULT_VOCAB_DIR overrides the
// folder): "qwen2" for qwen2 models, "llama-spm" for llama.
std::string DefaultVocabPath(const std::string& architecture);

}  // namespace kvault::engine
