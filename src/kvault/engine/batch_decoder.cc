#include "kvault/engine/batch_decoder.h"

#include "kvault/engine/context.h"

namespace kvault::engine {

BatchDecoder::BatchDecoder(Context* context)
    : context_(context),
      capacity_(context->params().n_batch),
      batch_(llama_batch_init(static_cast<int32_t>(capacity_), /*embd=*/0, /*n_seq_max=*/1)) {}

BatchDecoder::~BatchDecoder() { llama_batch_free(batch_); }

Status BatchDecoder::Decode(std::span<const SequenceChunk> chunks) {
  size_t n_tokens = 0;
  for (const SequenceChunk& chunk : chunks) {
    if (chunk.tokens.empty())
      return InvalidArgumentError("empty chunk for sequence " + std::to_string(chunk.seq_id));
    n_tokens += chunk.tokens.size();
  }
  if (n_tokens == 0 || n_tokens > capacity_) {
    return InvalidArgumentError("batch of " + std::to_string(n_tokens) + " tokens outside (0, " +
                                std::to_string(capacity_) + "]");
  }
  output_index_.assign(chunks.size(), -1);
  int32_t n = 0;
  for (size_t c = 0; c < chunks.size(); ++c) {
    const SequenceChunk& chunk = chunks[c];
    for (size_t i = 0; i < chunk.tokens.size(); ++i, ++n) {
      batch_.token[n] = chunk.tokens[i];
      batch_.pos[n] = chunk.first_pos + static_cast<llama_pos>(i);
      batch_.n_seq_id[n] = 1;
      batch_.seq_id[n][0] = chunk.seq_id;
      const bool last = i + 1 == chunk.tokens.size();
      batch_.logits[n] = last && chunk.logits_for_last;
      if (batch_.logits[n]) output_index_[c] = n;
    }
  }
  batch_.n_tokens = n;
  return context_->Decode(batch_);
}

}  // namespace kvault::engine
