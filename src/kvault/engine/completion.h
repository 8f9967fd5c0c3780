// engine/completion.h: the simplest end-to-end use of the engine, one sequence: decode a
// prompt in n_batch chunks, then sample and decode n_predict tokens. `kvault complete`, the
// engine benchmark and the engine tests use it; the server has its own continuous-batching
// scheduler.
//
// Thread-safety: runs on the caller's thread, which must own the context.
#pragma once

#include <functional>
#include <span>
#include <vector>

#include <llama.h>

#include "kvault/base/result.h"

namespace kvault::engine {

class Context;
class Sampler;
class Tokenizer;

struct CompletionParams {
  llama_seq_id seq_id = 0;
  llama_pos first_pos = 0;  // where the prompt starts (cells before it are kept)
  int n_predict = 16;
  bool stop_at_end_of_generation = true;
  // Called after each sampled token; return false to stop.
  std::function<bool(llama_token)> on_token;
};

struct CompletionResult {
  std::vector<llama_token> tokens;  // generated tokens (the prompt excluded)
  std::vector<float> first_logits;  // logits that chose the first generated token
  double prompt_ms = 0;
  double generation_ms = 0;
  bool stopped_at_end_of_generation = false;
};

// REQUIRES: prompt is not empty.
Result<CompletionResult> Complete(Context& context, Sampler& sampler, const Tokenizer& tokenizer,
                                  std::span<const llama_token> prompt,
                                  const CompletionParams& params);

}  // namespace kvault::engine
