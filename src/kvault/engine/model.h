// engine/model.h: a GGUF model loaded by llama.cpp, with the facts kvault needs about it
// (shapes for KV sizing, the fingerprint for KV compatibility, the embedded chat template).
//
// Thread-safety: immutable after Load(); share one Model between threads and contexts.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "kvault/base/hash.h"
#include "kvault/base/result.h"

struct llama_model;
struct llama_vocab;

namespace kvault::engine {

struct ModelLoadParams {
  std::string path;
  // Layers to offload to GPUs; -1 = all. 0 keeps everything on the CPU.
  int n_gpu_layers = 0;
  // Devices to split the offloaded layers over (0 = all llama.cpp finds).
  int n_gpus = 0;
  bool vocab_only = false;
};

struct ModelInfo {
  std::string architecture;  // general.architecture, e.g. "qwen2"
  std::string description;   // llama.cpp's one-line description
  std::string name;          // general.name, or the file name
  int n_layer = 0;
  int n_embd = 0;
  int n_head = 0;
  int n_head_kv = 0;
  int n_ctx_train = 0;
  int n_vocab = 0;
  uint64_t n_params = 0;
  uint64_t size_bytes = 0;
};

class Model {
 public:
  // NotFound for a missing file; InvalidArgument for a file that is not a loadable GGUF
  // model (with llama.cpp's reason).
  static Result<std::unique_ptr<Model>> Load(const ModelLoadParams& params);
  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  llama_model* raw() const { return model_; }
  const llama_vocab* vocab() const { return vocab_; }
  // Shapes are 0 for a vocab_only model.
  const ModelInfo& info() const { return info_; }
  const Hash128& fingerprint() const { return fingerprint_; }
  const std::string& path() const { return path_; }

  // A string metadata value, if present.
  std::optional<std::string> MetaString(const std::string& key) const;
  // tokenizer.chat_template, if the file has one.
  std::optional<std::string> ChatTemplateSource() const;

 private:
  Model(llama_model* model, std::string path, Hash128 fingerprint, bool vocab_only);

  llama_model* model_;
  const llama_vocab* vocab_;
  std::string path_;
  Hash128 fingerprint_;
  ModelInfo info_;
};

}  // namespace kvault::engine
