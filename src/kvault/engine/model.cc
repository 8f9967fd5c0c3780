#include "kvault/engine/model.h"

#include <filesystem>
#include <vector>

#include <llama.h>

#include "kvault/base/status_macros.h"
#include "kvault/engine/llama_runtime.h"
#include "kvault/engine/model_fingerprint.h"

namespace kvault::engine {

Result<std::unique_ptr<Model>> Model::Load(const ModelLoadParams& params) {
  KV_ASSIGN_OR_RETURN(Hash128 fingerprint, ComputeModelFingerprint(params.path));
  InitLlamaRuntime();

  llama_model_params model_params = llama_model_default_params();
  model_params.n_gpu_layers = params.n_gpu_layers;
  model_params.vocab_only = params.vocab_only;
  std::vector<ggml_backend_dev_t> devices;
  if (params.n_gpus > 0) {
    for (size_t i = 0; i < ggml_backend_dev_count() && devices.size() < size_t(params.n_gpus);
         ++i) {
      ggml_backend_dev_t dev = ggml_backend_dev_get(i);
      if (ggml_backend_dev_type(dev) == GGML_BACKEND_DEVICE_TYPE_GPU) devices.push_back(dev);
    }
    if (devices.size() < static_cast<size_t>(params.n_gpus)) {
      return FailedPreconditionError("asked for " + std::to_string(params.n_gpus) +
                                     " GPUs, llama.cpp found " + std::to_string(devices.size()) +
                                     " (is it built with KVAULT_CUDA=1?)");
    }
    devices.push_back(nullptr);
    model_params.devices = devices.data();
  }
  TakeLastLlamaError();
  llama_model* model = llama_model_load_from_file(params.path.c_str(), model_params);
  if (model == nullptr) {
    std::string reason = TakeLastLlamaError();
    return InvalidArgumentError("llama.cpp cannot load model " + params.path +
                                (reason.empty() ? "" : ": " + reason));
  }
  return std::unique_ptr<Model>(new Model(model, params.path, fingerprint, params.vocab_only));
}

Model::Model(llama_model* model, std::string path, Hash128 fingerprint, bool vocab_only)
    : model_(model),
      vocab_(llama_model_get_vocab(model)),
      path_(std::move(path)),
      fingerprint_(fingerprint) {
  char buffer[256];
  llama_model_desc(model_, buffer, sizeof(buffer));
  info_.description = buffer;
  info_.architecture = MetaString("general.architecture").value_or("unknown");
  info_.name =
      MetaString("general.name").value_or(std::filesystem::path(path_).filename().string());
  info_.n_vocab = llama_vocab_n_tokens(vocab_);
  if (vocab_only) return;  // llama.cpp aborts on shape queries of a vocabulary-only model
  info_.n_layer = llama_model_n_layer(model_);
  info_.n_embd = llama_model_n_embd(model_);
  info_.n_head = llama_model_n_head(model_);
  info_.n_head_kv = llama_model_n_head_kv(model_);
  info_.n_ctx_train = llama_model_n_ctx_train(model_);
  info_.n_params = llama_model_n_params(model_);
  info_.size_bytes = llama_model_size(model_);
}

Model::~Model() { llama_model_free(model_); }

std::optional<std::string> Model::MetaString(const std::string& key) const {
  const int32_t n = llama_model_meta_val_str(model_, key.c_str(), nullptr, 0);
  if (n < 0) return std::nullopt;
  std::string value(static_cast<size_t>(n) + 1, '\0');
  llama_model_meta_val_str(model_, key.c_str(), value.data(), value.size());
  value.resize(static_cast<size_t>(n));
  return value;
}

std::optional<std::string> Model::ChatTemplateSource() const {
  const char* source = llama_model_chat_template(model_, nullptr);
  if (source == nullptr) return std::nullopt;
  return std::string(source);
}

}  // namespace kvault::engine
