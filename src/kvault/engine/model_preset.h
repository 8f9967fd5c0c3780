// engine/model_preset.h: the shapes `kvault make-model` can generate. Timings and memory
// depend on shapes, not on weight values, so a random-weight model of a real shape is a fair
// stand-in for benchmarks.
//
//   tiny  qwen2, 4 layers, n_embd 256: for tests (loads and generates in milliseconds)
//   q05   qwen2, the shape of Qwen2.5-0.5B (24 layers, n_embd 896, 14 heads, 2 KV heads,
//         ffn 4864, vocab 151936, tied embeddings): for benchmarks
//
// Thread-safety: pure data.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "kvault/base/result.h"

namespace kvault::engine {

struct ModelShape {
  std::string architecture = "qwen2";  // "qwen2" or "llama"
  int n_layer = 0;
  int n_embd = 0;
  int n_head = 0;
  int n_head_kv = 0;
  int n_ff = 0;
  int n_ctx_train = 32768;
  float rope_freq_base = 1000000.0f;
  float rms_norm_eps = 1e-6f;
  bool tied_embeddings = true;  // no output.weight: logits reuse token_embd
};

Result<ModelShape> FindModelPreset(std::string_view name);
std::vector<std::string> ModelPresetNames();

// InvalidArgument unless the shape is one llama.cpp can load (divisibility, positivity,
// a supported architecture).
Status ValidateModelShape(const ModelShape& shape);

}  // namespace kvault::engine
