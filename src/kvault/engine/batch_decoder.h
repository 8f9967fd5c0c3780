// engine/batch_decoder.h: decodes the pending tokens of several sequences in one llama_decode
// call: each sequence contributes a chunk (a slice of its prompt, or its last sampled token),
// and the logits of each chunk's last token come back for sampling. Deciding how to split
// prompts into chunks is the caller's job (the scheduler); this class only packs and runs.
//
// Thread-safety: not thread-safe; used by the thread that owns the Context.
#pragma once

#include <span>
#include <vector>

#include <llama.h>

#include "kvault/base/result.h"

namespace kvault::engine {

class Context;

// One sequence's share of a decode step: `tokens` go to positions first_pos, first_pos+1, ...
struct SequenceChunk {
  llama_seq_id seq_id = 0;
  llama_pos first_pos = 0;
  std::span<const llama_token> tokens;
  bool logits_for_last = true;  // request logits for the chunk's last token
};

class BatchDecoder {
 public:
  // REQUIRES: context outlives the decoder.
  explicit BatchDecoder(Context* context);
  ~BatchDecoder();
  BatchDecoder(const BatchDecoder&) = delete;
  BatchDecoder& operator=(const BatchDecoder&) = delete;

  // Decodes all chunks in one llama_decode call. InvalidArgument if they hold more than
  // n_batch tokens in total or a chunk is empty.
  Status Decode(std::span<const SequenceChunk> chunks);

  // After a successful Decode: the batch index of chunk i's last token, for
  // Context::Logits / Sampler::Sample; -1 if its logits were not requested.
  int32_t OutputIndex(size_t chunk_index) const { return output_index_[chunk_index]; }

  uint32_t capacity() const { return capacity_; }

 private:
  Context* context_;
  uint32_t capacity_;
  llama_batch batch_;
  std::vector<int32_t> output_index_;
};

}  // namespace kvault::engine
