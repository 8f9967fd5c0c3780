#include "kvault/engine/completion.h"

#include <chrono>

#include "kvault/base/status_macros.h"
#include "kvault/engine/batch_decoder.h"
#include "kvault/engine/context.h"
#include "kvault/engine/sampler.h"
#include "kvault/engine/tokenizer.h"

namespace kvault::engine {
namespace {

double MillisecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
      .count();
}

}  // namespace

Result<CompletionResult> Complete(Context& context, Sampler& sampler, const Tokenizer& tokenizer,
                                  std::span<const llama_token> prompt,
                                  const CompletionParams& params) {
  if (prompt.empty()) return InvalidArgumentError("the prompt has no tokens");
  BatchDecoder decoder(&context);
  CompletionResult result;

  auto start = std::chrono::steady_clock::now();
  llama_pos pos = params.first_pos;
  for (size_t offset = 0; offset < prompt.size(); offset += decoder.capacity()) {
    const size_t n = std::min<size_t>(decoder.capacity(), prompt.size() - offset);
    const SequenceChunk chunk{params.seq_id, pos, prompt.subspan(offset, n),
                              offset + n == prompt.size()};
    KV_RETURN_IF_ERROR(decoder.Decode({&chunk, 1}));
    pos += static_cast<llama_pos>(n);
  }
  result.prompt_ms = MillisecondsSince(start);
  const std::span<const float> logits = context.Logits(decoder.OutputIndex(0));
  result.first_logits.assign(logits.begin(), logits.end());

  start = std::chrono::steady_clock::now();
  int32_t output_index = decoder.OutputIndex(0);
  for (int i = 0; i < params.n_predict; ++i) {
    KV_ASSIGN_OR_RETURN(const llama_token token, sampler.Sample(context, output_index));
    result.tokens.push_back(token);
    if (params.stop_at_end_of_generation && tokenizer.IsEndOfGeneration(token)) {
      result.stopped_at_end_of_generation = true;
      break;
    }
    if (params.on_token && !params.on_token(token)) break;
    if (i + 1 == params.n_predict) break;  // the last token needs no decode
    const SequenceChunk chunk{params.seq_id, pos, {&result.tokens.back(), 1}, true};
    KV_RETURN_IF_ERROR(decoder.Decode({&chunk, 1}));
    output_index = decoder.OutputIndex(0);
    ++pos;
  }
  result.generation_ms = MillisecondsSince(start);
  return result;
}

}  // namespace kvault::engine
