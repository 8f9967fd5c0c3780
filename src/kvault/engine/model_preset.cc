#include "kvault/engine/model_preset.h"

#include <array>

namespace kvault::engine {
namespace {

struct NamedShape {
  const char* name;
  ModelShape shape;
};

const std::array<NamedShape, 2>& Presets() {
  static const std::array<NamedShape, 2> presets = {{
      {"tiny", ModelShape{"qwen2", /*n_layer=*/4, /*n_embd=*/256, /*n_head=*/4, /*n_head_kv=*/2,
                          /*n_ff=*/768}},
      {"q05", ModelShape{"qwen2", /*n_layer=*/24, /*n_embd=*/896, /*n_head=*/14,
                         /*n_head_kv=*/2, /*n_ff=*/4864}},
  }};
  return presets;
}

}  // namespace

Result<ModelShape> FindModelPreset(std::string_view name) {
  for (const NamedShape& preset : Presets()) {
    if (name == preset.name) return preset.shape;
  }
  std::string known;
  for (const std::string& n : ModelPresetNames()) known += (known.empty() ? "" : ", ") + n;
  return InvalidArgumentError("unknown preset '" + std::string(name) + "' (known: " + known + ")");
}

std::vector<std::string> ModelPresetNames() {
  std::vector<std::string> names;
  for (const NamedShape& preset : Presets()) names.emplace_back(preset.name);
  return names;
}

Status ValidateModelShape(const ModelShape& shape) {
  if (shape.architecture != "qwen2" && shape.architecture != "llama") {
    return InvalidArgumentError("architecture must be qwen2 or llama, not '" + shape.architecture +
                                "'");
  }
  if (shape.n_layer <= 0 || shape.n_embd <= 0 || shape.n_head <= 0 || shape.n_head_kv <= 0 ||
      shape.n_ff <= 0 || shape.n_ctx_train <= 0) {
    return InvalidArgumentError("model dimensions must be positive");
  }
  if (shape.n_embd % shape.n_head != 0 || shape.n_head % shape.n_head_kv != 0) {
    return InvalidArgumentError("n_embd must divide by n_head and n_head by n_head_kv");
  }
  // q8_0 weights quantize rows in blocks of 32 values.
  if (shape.n_embd % 32 != 0 || shape.n_ff % 32 != 0) {
    return InvalidArgumentError("n_embd and n_ff must be multiples of 32");
  }
  if ((shape.n_embd / shape.n_head) % 2 != 0) {
    return InvalidArgumentError("the head size must be even (RoPE rotates pairs)");
  }
  return Status::Ok();
}

}  // namespace kvault::engine
