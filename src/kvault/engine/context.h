// engine/context.h: one llama.cpp inference context holding several sequences in a unified KV
// cache (all sequences draw cells from one pool of n_ctx, so sequences that share a prefix
// can share its cells through CopySequence), and the per-sequence KV operations kvault builds
// on: remove a position range, copy, export to bytes, import from bytes.
//
// Thread-safety: not thread-safe. A Context is driven by one thread at a time (the server's
// scheduler thread owns it).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include <llama.h>

#include "kvault/base/result.h"

namespace kvault::engine {

class Model;

// The element type of the KV cache while computing (llama.cpp's --cache-type-k/v).
// kF32 is for reference runs (no rounding of K and V), not for serving.
enum class KvCacheType { kF16, kQ8_0, kQ4_0, kF32 };
Result<KvCacheType> ParseKvCacheType(std::string_view name);
std::string_view KvCacheTypeName(KvCacheType type);

enum class FlashAttention { kAuto, kOn, kOff };

struct ContextParams {
  uint32_t n_ctx = 4096;    // KV cells shared by all sequences
  uint32_t n_seq_max = 1;   // sequence ids 0 .. n_seq_max-1
  uint32_t n_batch = 2048;  // most tokens one Decode() may take
  uint32_t n_ubatch = 512;  // tokens llama.cpp computes at once
  int n_threads = 0;        // generation threads; 0 = hardware cores
  int n_threads_batch = 0;  // prompt threads; 0 = n_threads
  KvCacheType cache_type = KvCacheType::kF16;
  FlashAttention flash_attention = FlashAttention::kAuto;
  // One cell pool for all sequences (prefix cells shared through CopySequence, without a
  // copy). Off gives each sequence its own n_ctx / n_seq_max cells: attention then spans
  // only the sequence's own cells, so prefill does not slow down as other sequences fill up
  // (measured on q05: +33% prefill time with 3 other full sequences in a unified cache).
  bool kv_unified = true;
  // llama.cpp's graph evaluation callback (llama_context_params.cb_eval): lets a benchmark
  // read intermediate tensors, e.g. an attention output ("kqv_out-<layer>"). Null in serving.
  ggml_backend_sched_eval_callback eval_callback = nullptr;
  void* eval_callback_data = nullptr;
};

class Context {
 public:
  // InvalidArgument for impossible parameters; ResourceExhausted if llama.cpp cannot
  // allocate the cache.
  static Result<std::unique_ptr<Context>> Create(const Model& model, const ContextParams& params);
  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  llama_context* raw() const { return ctx_; }
  const Model& model() const { return model_; }
  const ContextParams& params() const { return params_; }
  uint32_t n_ctx() const;
  // Streams of the KV cache: 1 when unified, otherwise one per sequence.
  uint32_t n_stream() const { return params_.kv_unified ? 1 : params_.n_seq_max; }

  // Runs llama_decode. ResourceExhausted when the KV cache has no room for the batch,
  // Cancelled when aborted, Internal otherwise.
  Status Decode(const llama_batch& batch);
  // Logits of the i-th output of the last Decode (llama_get_logits_ith index).
  std::span<const float> Logits(int32_t batch_index) const;

  // --- KV operations on one sequence -------------------------------------------------------
  // Positions [p0, p1) of `seq_id`; p1 < 0 means "to the end".
  Status RemoveTokens(llama_seq_id seq_id, llama_pos p0, llama_pos p1);
  void ClearSequence(llama_seq_id seq_id);
  // Makes dst hold src's cells for positions [p0, p1): shared cells in a unified cache; across
  // streams (not unified) llama.cpp copies only whole sequences (p0 = p1 = -1).
  void CopySequence(llama_seq_id src, llama_seq_id dst, llama_pos p0 = -1, llama_pos p1 = -1);
  // One past the largest position held for seq_id (0 if empty).
  llama_pos SequenceLength(llama_seq_id seq_id) const;
  // Empties every sequence and resets cell placement.
  void ClearAll();

  // --- Moving cells to other positions (recalled history, conversation/recall_kv.h) -------
  // Whether llama.cpp can move cells of this model and cache (llama_memory_can_shift: false
  // for M-RoPE and per-layer-RoPE models, where a shift would abort the process).
  bool CanShift() const;
  // Adds `delta` to the positions [p0, p1) of `seq_id` (llama_memory_seq_add). For RoPE
  // models llama.cpp re-rotates their K only at the start of the next Decode, so until then
  // the cells carry their new positions with K still rotated for the old ones: ExportSequence
  // refuses (FailedPrecondition) while such a shift is pending. REQUIRES: CanShift().
  void ShiftPositions(llama_seq_id seq_id, llama_pos p0, llama_pos p1, llama_pos delta);
  // A shift is waiting for the next Decode.
  bool shift_pending() const { return shift_pending_; }

  // llama.cpp's serialized state of one sequence (cells, positions, K and V rows).
  // FailedPrecondition while a shift is pending (see ShiftPositions).
  Result<std::vector<uint8_t>> ExportSequence(llama_seq_id seq_id) const;
  // Loads bytes from ExportSequence into seq_id, which should be empty. InvalidArgument if
  // llama.cpp rejects them (no room, or not a state of this context's shape).
  Status ImportSequence(llama_seq_id seq_id, std::span<const uint8_t> state);

 private:
  Context(const Model& model, const ContextParams& params, llama_context* ctx);
  Status CheckSeqId(llama_seq_id seq_id) const;

  const Model& model_;
  ContextParams params_;
  llama_context* ctx_;
  bool shift_pending_ = false;
};

}  // namespace kvault::engine
