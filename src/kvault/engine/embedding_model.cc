#include "kvault/engine/embedding_model.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <thread>

#include <llama.h>

#include "kvault/base/status_macros.h"
#include "kvault/engine/llama_runtime.h"
#include "kvault/engine/model.h"
#include "kvault/engine/tokenizer.h"

namespace kvault::engine {
namespace {

int DefaultThreads() {
  const unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 4 : static_cast<int>(n);
}

// The pooling the GGUF declares (`<arch>.pooling_type`, llama_pooling_type's numbers); mean
// when it declares none or "none" (a generative model's hidden states).
Result<EmbeddingPooling> PoolingOf(const Model& model) {
  const std::optional<std::string> value =
      model.MetaString(model.info().architecture + ".pooling_type");
  int type = LLAMA_POOLING_TYPE_UNSPECIFIED;
  if (value.has_value()) std::from_chars(value->data(), value->data() + value->size(), type);
  switch (type) {
    case LLAMA_POOLING_TYPE_CLS: return EmbeddingPooling::kCls;
    case LLAMA_POOLING_TYPE_LAST: return EmbeddingPooling::kLast;
    case LLAMA_POOLING_TYPE_RANK:
      return InvalidArgumentError("engine: " + model.path() +
                                  " is a reranker (pooling \"rank\"), not an embedding model");
    default: return EmbeddingPooling::kMean;
  }
}

enum llama_pooling_type ToLlamaPooling(EmbeddingPooling pooling) {
  switch (pooling) {
    case EmbeddingPooling::kMean: return LLAMA_POOLING_TYPE_MEAN;
    case EmbeddingPooling::kCls: return LLAMA_POOLING_TYPE_CLS;
    case EmbeddingPooling::kLast: return LLAMA_POOLING_TYPE_LAST;
  }
  return LLAMA_POOLING_TYPE_MEAN;
}

// `tokens` cut to n tokens; a trailing EOS the vocabulary adds is kept as the last one.
void Truncate(const llama_vocab* vocab, std::vector<llama_token>& tokens, size_t n) {
  if (tokens.size() <= n) return;
  const llama_token last = tokens.back();
  tokens.resize(n);
  if (llama_vocab_get_add_eos(vocab) && last == llama_vocab_eos(vocab)) tokens.back() = last;
}

}  // namespace

std::string_view EmbeddingPoolingName(EmbeddingPooling pooling) {
  switch (pooling) {
    case EmbeddingPooling::kMean: return "mean";
    case EmbeddingPooling::kCls: return "cls";
    case EmbeddingPooling::kLast: return "last";
  }
  return "mean";
}

Result<std::unique_ptr<EmbeddingModel>> EmbeddingModel::Create(const EmbeddingModelParams& params) {
  if (params.n_ctx == 0 || params.n_ubatch == 0) {
    return InvalidArgumentError("engine: embedding context sizes must be positive");
  }
  KV_ASSIGN_OR_RETURN(std::unique_ptr<Model> model,
                      Model::Load({.path = params.path, .n_gpu_layers = params.n_gpu_layers}));
  KV_ASSIGN_OR_RETURN(const EmbeddingPooling pooling, PoolingOf(*model));
  const int n_ctx_train = model->info().n_ctx_train;
  const uint32_t n_ctx =
      n_ctx_train > 0 ? std::min(params.n_ctx, static_cast<uint32_t>(n_ctx_train)) : params.n_ctx;
  llama_context_params cparams = llama_context_default_params();
  cparams.n_ctx = n_ctx;
  cparams.n_batch = std::min(params.n_ubatch, n_ctx);
  cparams.n_ubatch = cparams.n_batch;
  cparams.n_seq_max = 1;
  cparams.n_threads = params.n_threads > 0 ? params.n_threads : DefaultThreads();
  cparams.n_threads_batch = cparams.n_threads;
  cparams.embeddings = true;
  cparams.pooling_type = ToLlamaPooling(pooling);
  cparams.no_perf = true;
  TakeLastLlamaError();
  llama_context* ctx = llama_init_from_model(model->raw(), cparams);
  if (ctx == nullptr) {
    const std::string reason = TakeLastLlamaError();
    return ResourceExhaustedError("engine: llama.cpp cannot create an embedding context of " +
                                  std::to_string(n_ctx) + " tokens for " + params.path +
                                  (reason.empty() ? "" : ": " + reason));
  }
  return std::unique_ptr<EmbeddingModel>(new EmbeddingModel(std::move(model), ctx, pooling));
}

EmbeddingModel::EmbeddingModel(std::unique_ptr<Model> model, llama_context* ctx,
                               EmbeddingPooling pooling)
    : model_(std::move(model)),
      ctx_(ctx),
      pooling_(pooling),
      dim_(llama_model_n_embd_out(model_->raw())),
      n_ctx_(llama_n_ctx(ctx)),
      n_ubatch_(llama_n_ubatch(ctx)) {}

EmbeddingModel::~EmbeddingModel() { llama_free(ctx_); }

const std::string& EmbeddingModel::name() const { return model_->info().name; }

Result<std::vector<float>> EmbeddingModel::DecodeSlice(const std::vector<int32_t>& tokens,
                                                       size_t begin, size_t end) {
  const auto n = static_cast<int32_t>(end - begin);
  llama_batch batch = llama_batch_init(n, 0, 1);
  for (int32_t i = 0; i < n; ++i) {
    batch.token[i] = tokens[begin + static_cast<size_t>(i)];
    batch.pos[i] = static_cast<llama_pos>(begin) + i;
    batch.n_seq_id[i] = 1;
    batch.seq_id[i][0] = 0;
    batch.logits[i] = true;  // pooling needs every token's output
  }
  batch.n_tokens = n;
  // An encoder-only model (T5-like encoder) runs through llama_encode; BERT-like and causal
  // models through llama_decode.
  const llama_model* raw = model_->raw();
  const bool encode = llama_model_has_encoder(raw) && !llama_model_has_decoder(raw);
  TakeLastLlamaError();
  const int32_t rc = encode ? llama_encode(ctx_, batch) : llama_decode(ctx_, batch);
  llama_batch_free(batch);
  if (rc != 0) {
    const std::string reason = TakeLastLlamaError();
    return InternalError("engine: embedding a slice of " + std::to_string(n) +
                         " tokens failed with code " + std::to_string(rc) +
                         (reason.empty() ? "" : ": " + reason));
  }
  const float* pooled = llama_get_embeddings_seq(ctx_, 0);
  if (pooled == nullptr) return InternalError("engine: llama.cpp returned no pooled embedding");
  return std::vector<float>(pooled, pooled + dim_);
}

Result<std::vector<float>> EmbeddingModel::Embed(std::string_view text) {
  KV_ASSIGN_OR_RETURN(std::vector<llama_token> tokens,
                      Tokenizer(*model_).Tokenize(text, {.add_special = true}));
  if (tokens.empty())
    return InvalidArgumentError("engine: nothing to embed, the text has no tokens");
  Truncate(model_->vocab(), tokens, n_ctx_);

  MutexLock lock(&mu_);
  llama_memory_t memory = llama_get_memory(ctx_);
  if (memory != nullptr) llama_memory_clear(memory, /*data=*/false);
  std::vector<float> sum(static_cast<size_t>(dim_), 0.0f);
  for (size_t begin = 0; begin < tokens.size(); begin += n_ubatch_) {
    const size_t end = std::min(tokens.size(), begin + n_ubatch_);
    KV_ASSIGN_OR_RETURN(const std::vector<float> slice, DecodeSlice(tokens, begin, end));
    // Combine the slices' pooled vectors (see the header): CLS keeps the first, last-token
    // pooling the last, mean weights each slice by its length.
    if (pooling_ == EmbeddingPooling::kCls && begin > 0) continue;
    const float weight = pooling_ == EmbeddingPooling::kMean ? static_cast<float>(end - begin) : 1;
    if (pooling_ == EmbeddingPooling::kLast) std::fill(sum.begin(), sum.end(), 0.0f);
    for (size_t i = 0; i < sum.size(); ++i) sum[i] += weight * slice[i];
  }
  double norm = 0;
  for (float x : sum) norm += static_cast<double>(x) * x;
  norm = std::sqrt(norm);
  if (!std::isfinite(norm) || norm == 0) {
    return InternalError("engine: the embedding model returned a zero or non-finite vector");
  }
  for (float& x : sum) x = static_cast<float>(x / norm);
  return sum;
}

}  // namespace kvault::engine
