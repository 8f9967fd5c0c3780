// engine/sampler.h: picks the next token from a sequence's logits with llama.cpp's sampler
// chain: logit bias, repetition penalties, optional grammar, top-k, top-p, min-p,
// temperature, then a seeded draw; or argmax when temperature is 0.
//
// Thread-safety: one Sampler per generating sequence, used by the thread that owns the
// Context.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <llama.h>

#include "kvault/base/result.h"

namespace kvault::engine {

class Context;
class Model;

struct SamplingParams {
  float temperature = 0.8f;  // <= 0: greedy
  int32_t top_k = 0;         // 0: off
  float top_p = 1.0f;        // 1: off
  float min_p = 0.0f;        // 0: off
  uint32_t seed = LLAMA_DEFAULT_SEED;
  std::vector<llama_logit_bias> logit_bias;
  std::string grammar;  // GBNF; empty = none
  // Over the last penalty_last_n tokens the sampler has seen (generated or Accept()ed), as
  // llama-server: logits of seen tokens divided (positive) or multiplied (negative) by
  // repeat_penalty, minus frequency_penalty per occurrence, minus presence_penalty once.
  float repeat_penalty = 1.0f;  // 1: off
  float frequency_penalty = 0.0f;
  float presence_penalty = 0.0f;
  int32_t penalty_last_n = 64;

  bool has_penalties() const {
    return repeat_penalty != 1.0f || frequency_penalty != 0.0f || presence_penalty != 0.0f;
  }
};

// A GBNF grammar of one JSON object (RFC 8259 syntax; whitespace runs bounded so a model
// cannot stall in them): what `response_format: {"type": "json_object"}` constrains to.
std::string_view JsonObjectGrammar();

class Sampler {
 public:
  // InvalidArgument for out-of-range values or a grammar that does not parse.
  static Result<std::unique_ptr<Sampler>> Create(const Model& model, const SamplingParams& params);
  // Create, and with a grammar also one trial of it on the whole vocabulary: InvalidArgument
  // (ErrorDetail::kInvalidGrammar) for a grammar that parses but admits no first token or
  // fails when applied (llama.cpp throws for e.g. an empty range "[z-a]"). What a request is
  // checked with before anything of it is stored.
  static Status Check(const Model& model, const SamplingParams& params);
  ~Sampler();
  Sampler(const Sampler&) = delete;
  Sampler& operator=(const Sampler&) = delete;

  // Samples from the logits at `batch_index` of the last decode, and records the token.
  // InvalidArgument if llama.cpp's samplers fail (a grammar that breaks on this text).
  Result<llama_token> Sample(Context& context, int32_t batch_index);
  // Records a token chosen elsewhere (e.g. prompt history for grammar state).
  void Accept(llama_token token);
  void Reset();

 private:
  explicit Sampler(llama_sampler* chain) : chain_(chain) {}
  llama_sampler* chain_;
  bool plain_greedy_ = false;  // temperature 0 without bias or grammar: argmax, no chain
};

}  // namespace kvault::engine
