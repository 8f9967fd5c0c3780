#include "kvault/engine/context.h"

#include <algorithm>
#include <thread>

#include "kvault/engine/llama_runtime.h"
#include "kvault/engine/model.h"

namespace kvault::engine {
namespace {

ggml_type ToGgmlType(KvCacheType type) {
  switch (type) {
    case KvCacheType::kF16: return GGML_TYPE_F16;
    case KvCacheType::kQ8_0: return GGML_TYPE_Q8_0;
    case KvCacheType::kQ4_0: return GGML_TYPE_Q4_0;
    case KvCacheType::kF32: return GGML_TYPE_F32;
  }
  return GGML_TYPE_F16;
}

llama_flash_attn_type ToLlamaFlashAttn(FlashAttention mode) {
  switch (mode) {
    case FlashAttention::kAuto: return LLAMA_FLASH_ATTN_TYPE_AUTO;
    case FlashAttention::kOn: return LLAMA_FLASH_ATTN_TYPE_ENABLED;
    case FlashAttention::kOff: return LLAMA_FLASH_ATTN_TYPE_DISABLED;
  }
  return LLAMA_FLASH_ATTN_TYPE_AUTO;
}

int DefaultThreads() {
  const unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 4 : static_cast<int>(n);
}

}  // namespace

Result<KvCacheType> ParseKvCacheType(std::string_view name) {
  if (name == "f16") return KvCacheType::kF16;
  if (name == "q8_0") return KvCacheType::kQ8_0;
  if (name == "q4_0") return KvCacheType::kQ4_0;
  if (name == "f32") return KvCacheType::kF32;
  return InvalidArgumentError("unknown KV cache type '" + std::string(name) +
                              "' (expected f16, q8_0, q4_0 or f32)");
}

std::string_view KvCacheTypeName(KvCacheType type) {
  switch (type) {
    case KvCacheType::kF16: return "f16";
    case KvCacheType::kQ8_0: return "q8_0";
    case KvCacheType::kQ4_0: return "q4_0";
    case KvCacheType::kF32: return "f32";
  }
  return "f16";
}

Result<std::unique_ptr<Context>> Context::Create(const Model& model, const ContextParams& params) {
  if (params.n_ctx == 0 || params.n_seq_max == 0 || params.n_batch == 0 || params.n_ubatch == 0) {
    return InvalidArgumentError("context sizes must be positive");
  }
  if (params.n_seq_max > llama_max_parallel_sequences()) {
    return InvalidArgumentError("n_seq_max " + std::to_string(params.n_seq_max) +
                                " exceeds llama.cpp's limit of " +
                                std::to_string(llama_max_parallel_sequences()));
  }
  if (params.cache_type != KvCacheType::kF16 && params.cache_type != KvCacheType::kF32 &&
      params.flash_attention == FlashAttention::kOff) {
    return InvalidArgumentError(
        "a quantized KV cache needs flash attention (llama.cpp stores "
        "quantized V only in the flash-attention layout)");
  }
  InitLlamaRuntime();
  llama_context_params cparams = llama_context_default_params();
  cparams.n_ctx = params.n_ctx;
  cparams.n_seq_max = params.n_seq_max;
  cparams.n_batch = params.n_batch;
  cparams.n_ubatch = std::min(params.n_ubatch, params.n_batch);
  cparams.n_threads = params.n_threads > 0 ? params.n_threads : DefaultThreads();
  cparams.n_threads_batch = params.n_threads_batch > 0 ? params.n_threads_batch : cparams.n_threads;
  cparams.type_k = ToGgmlType(params.cache_type);
  cparams.type_v = ToGgmlType(params.cache_type);
  cparams.flash_attn_type = ToLlamaFlashAttn(params.flash_attention);
  cparams.kv_unified = params.kv_unified;
  cparams.cb_eval = params.eval_callback;
  cparams.cb_eval_user_data = params.eval_callback_data;
  cparams.no_perf = true;
  TakeLastLlamaError();
  llama_context* ctx = llama_init_from_model(model.raw(), cparams);
  if (ctx == nullptr) {
    std::string reason = TakeLastLlamaError();
    return ResourceExhaustedError(
        "llama.cpp cannot create a context of " + std::to_string(params.n_ctx) + " cells for " +
        std::to_string(params.n_seq_max) + " sequences" + (reason.empty() ? "" : ": " + reason));
  }
  return std::unique_ptr<Context>(new Context(model, params, ctx));
}

Context::Context(const Model& model, const ContextParams& params, llama_context* ctx)
    : model_(model), params_(params), ctx_(ctx) {}

Context::~Context() { llama_free(ctx_); }

uint32_t Context::n_ctx() const { return llama_n_ctx(ctx_); }

Status Context::Decode(const llama_batch& batch) {
  const int32_t rc = llama_decode(ctx_, batch);
  // llama_decode applies pending shifts first (llama_context::decode -> memory_update), even
  // when the batch itself then fails for want of room.
  if (rc == 0 || rc == 1) shift_pending_ = false;
  if (rc == 0) return Status::Ok();
  if (rc == 1) {
    return ResourceExhaustedError("no KV cache room for a batch of " +
                                  std::to_string(batch.n_tokens) + " tokens");
  }
  if (rc == 2) return CancelledError("decode aborted");
  std::string reason = TakeLastLlamaError();
  return InternalError("llama_decode failed with code " + std::to_string(rc) +
                       (reason.empty() ? "" : ": " + reason));
}

std::span<const float> Context::Logits(int32_t batch_index) const {
  const float* logits = llama_get_logits_ith(ctx_, batch_index);
  if (logits == nullptr) return {};
  return {logits, static_cast<size_t>(llama_vocab_n_tokens(model_.vocab()))};
}

Status Context::CheckSeqId(llama_seq_id seq_id) const {
  if (seq_id < 0 || static_cast<uint32_t>(seq_id) >= params_.n_seq_max) {
    return InvalidArgumentError("sequence id " + std::to_string(seq_id) + " outside [0, " +
                                std::to_string(params_.n_seq_max) + ")");
  }
  return Status::Ok();
}

Status Context::RemoveTokens(llama_seq_id seq_id, llama_pos p0, llama_pos p1) {
  Status status = CheckSeqId(seq_id);
  if (!status.ok()) return status;
  if (!llama_memory_seq_rm(llama_get_memory(ctx_), seq_id, p0, p1)) {
    return FailedPreconditionError("llama.cpp cannot remove positions [" + std::to_string(p0) +
                                   ", " + std::to_string(p1) + ") of sequence " +
                                   std::to_string(seq_id));
  }
  return Status::Ok();
}

void Context::ClearSequence(llama_seq_id seq_id) {
  llama_memory_seq_rm(llama_get_memory(ctx_), seq_id, -1, -1);
}

void Context::CopySequence(llama_seq_id src, llama_seq_id dst, llama_pos p0, llama_pos p1) {
  llama_memory_seq_cp(llama_get_memory(ctx_), src, dst, p0, p1);
}

llama_pos Context::SequenceLength(llama_seq_id seq_id) const {
  return llama_memory_seq_pos_max(llama_get_memory(ctx_), seq_id) + 1;
}

bool Context::CanShift() const { return llama_memory_can_shift(llama_get_memory(ctx_)); }

void Context::ShiftPositions(llama_seq_id seq_id, llama_pos p0, llama_pos p1, llama_pos delta) {
  if (delta == 0) return;
  llama_memory_seq_add(llama_get_memory(ctx_), seq_id, p0, p1, delta);
  shift_pending_ = true;
}

void Context::ClearAll() { llama_memory_clear(llama_get_memory(ctx_), /*data=*/false); }

Result<std::vector<uint8_t>> Context::ExportSequence(llama_seq_id seq_id) const {
  Status status = CheckSeqId(seq_id);
  if (!status.ok()) return status;
  if (shift_pending_) {
    return FailedPreconditionError("sequence " + std::to_string(seq_id) +
                                   " cannot be exported while a position shift waits for the "
                                   "next decode (its K is not yet rotated)");
  }
  std::vector<uint8_t> bytes(llama_state_seq_get_size(ctx_, seq_id));
  const size_t written = llama_state_seq_get_data(ctx_, bytes.data(), bytes.size(), seq_id);
  if (written == 0 || written > bytes.size()) {
    return InternalError("llama.cpp exported " + std::to_string(written) + " of " +
                         std::to_string(bytes.size()) + " state bytes for sequence " +
                         std::to_string(seq_id));
  }
  bytes.resize(written);
  return bytes;
}

Status Context::ImportSequence(llama_seq_id seq_id, std::span<const uint8_t> state) {
  Status status = CheckSeqId(seq_id);
  if (!status.ok()) return status;
  TakeLastLlamaError();
  const size_t read = llama_state_seq_set_data(ctx_, state.data(), state.size(), seq_id);
  if (read == 0) {
    std::string reason = TakeLastLlamaError();
    return InvalidArgumentError("llama.cpp rejected " + std::to_string(state.size()) +
                                " bytes of sequence state" + (reason.empty() ? "" : ": " + reason));
  }
  return Status::Ok();
}

}  // namespace kvault::engine
