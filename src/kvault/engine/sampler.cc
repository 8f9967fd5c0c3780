#include "kvault/engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <exception>
#include <string>
#include <vector>

#include "kvault/base/status_macros.h"
#include "kvault/engine/context.h"
#include "kvault/engine/grammar_check.h"
#include "kvault/engine/llama_runtime.h"
#include "kvault/engine/model.h"

namespace kvault::engine {
namespace {

Status Validate(const SamplingParams& params, int32_t n_vocab) {
  if (!std::isfinite(params.temperature) || params.temperature > 100.0f) {
    return InvalidArgumentError("temperature must be a finite number <= 100");
  }
  if (params.top_k < 0) return InvalidArgumentError("top_k must be >= 0");
  if (!(params.top_p > 0.0f && params.top_p <= 1.0f)) {
    return InvalidArgumentError("top_p must be in (0, 1]");
  }
  if (!(params.min_p >= 0.0f && params.min_p <= 1.0f)) {
    return InvalidArgumentError("min_p must be in [0, 1]");
  }
  if (!(std::isfinite(params.repeat_penalty) && params.repeat_penalty > 0.0f)) {
    return InvalidArgumentError("repeat_penalty must be a finite number > 0");
  }
  if (!std::isfinite(params.frequency_penalty) || !std::isfinite(params.presence_penalty)) {
    return InvalidArgumentError("frequency_penalty and presence_penalty must be finite");
  }
  if (params.penalty_last_n < 0) return InvalidArgumentError("penalty_last_n must be >= 0");
  for (const llama_logit_bias& bias : params.logit_bias) {
    if (bias.token < 0 || bias.token >= n_vocab) {
      return InvalidArgumentError("logit_bias token " + std::to_string(bias.token) +
                                  " is not in the vocabulary");
    }
    if (!std::isfinite(bias.bias) && !(std::isinf(bias.bias) && bias.bias < 0)) {
      return InvalidArgumentError("logit_bias values must be finite or -inf");
    }
  }
  return Status::Ok();
}

// Written from RFC 8259's grammar. `ws` is bounded: with an unbounded one a weak model can
// emit whitespace until max_tokens.
constexpr std::string_view kJsonObjectGrammar = R"gbnf(root ::= object
value ::= object | array | string | number | "true" | "false" | "null"
object ::= "{" ws ( member ( "," ws member )* )? "}"
member ::= string ws ":" ws value ws
array ::= "[" ws ( value ws ( "," ws value ws )* )? "]"
string ::= "\"" ( [^"\\\x00-\x1f] | "\\" ( ["\\/bfnrt] | "u" [0-9a-fA-F]{4} ) )* "\""
number ::= "-"? ( "0" | [1-9] [0-9]{0,15} ) ( "." [0-9]{1,16} )? ( [eE] [-+]? [0-9]{1,3} )?
ws ::= [ \t\n]{0,16}
)gbnf";

Status GrammarFailure(const std::string& what) {
  return InvalidArgumentError("grammar: " + what).WithDetail(ErrorDetail::kInvalidGrammar);
}

// llama.cpp's grammar parser, bounded first (grammar_check.h). It reports most errors by
// returning null, but can also throw (std::runtime_error, std::out_of_range): this is the
// engine boundary where a llama.cpp exception becomes a Status.
Result<llama_sampler*> InitGrammar(const Model& model, const std::string& gbnf) {
  KV_RETURN_IF_ERROR(CheckGrammarText(gbnf));
  TakeLastLlamaError();
  llama_sampler* grammar = nullptr;
  try {
    grammar = llama_sampler_init_grammar(model.vocab(), gbnf.c_str(), "root");
  } catch (const std::exception& error) {
    return GrammarFailure(std::string("llama.cpp refused it: ") + error.what());
  }
  if (grammar == nullptr) {
    std::string reason = TakeLastLlamaError();
    return GrammarFailure("does not parse" + (reason.empty() ? "" : ": " + reason));
  }
  return grammar;
}

}  // namespace

std::string_view JsonObjectGrammar() { return kJsonObjectGrammar; }

Status Sampler::Check(const Model& model, const SamplingParams& params) {
  KV_ASSIGN_OR_RETURN(std::unique_ptr<Sampler> sampler, Create(model, params));
  if (params.grammar.empty()) return Status::Ok();
  // Apply the grammar alone to every token of the vocabulary, as the first sampling step
  // would: a grammar that throws here or rejects every token would fail mid-request.
  KV_ASSIGN_OR_RETURN(llama_sampler * grammar, InitGrammar(model, params.grammar));
  const int32_t n_vocab = llama_vocab_n_tokens(model.vocab());
  std::vector<llama_token_data> candidates(static_cast<size_t>(n_vocab));
  for (int32_t i = 0; i < n_vocab; ++i) candidates[static_cast<size_t>(i)] = {i, 0.0f, 0.0f};
  llama_token_data_array array{candidates.data(), candidates.size(), -1, false};
  Status status;
  try {
    llama_sampler_apply(grammar, &array);
    const bool any = std::any_of(candidates.begin(), candidates.end(),
                                 [](const auto& c) { return std::isfinite(c.logit); });
    if (!any) status = GrammarFailure("admits no token to start the reply with");
  } catch (const std::exception& error) {
    status = GrammarFailure(std::string("fails when applied: ") + error.what());
  }
  llama_sampler_free(grammar);
  return status;
}

Result<std::unique_ptr<Sampler>> Sampler::Create(const Model& model, const SamplingParams& params) {
  const int32_t n_vocab = llama_vocab_n_tokens(model.vocab());
  Status status = Validate(params, n_vocab);
  if (!status.ok()) return status;

  llama_sampler_chain_params chain_params = llama_sampler_chain_default_params();
  chain_params.no_perf = true;
  llama_sampler* chain = llama_sampler_chain_init(chain_params);
  auto sampler = std::unique_ptr<Sampler>(new Sampler(chain));
  if (!params.logit_bias.empty()) {
    llama_sampler_chain_add(chain, llama_sampler_init_logit_bias(
                                       n_vocab, static_cast<int32_t>(params.logit_bias.size()),
                                       params.logit_bias.data()));
  }
  if (params.has_penalties() && params.penalty_last_n > 0) {
    llama_sampler_chain_add(
        chain, llama_sampler_init_penalties(n_vocab, params.penalty_last_n, params.repeat_penalty,
                                            params.frequency_penalty, params.presence_penalty));
  }
  if (!params.grammar.empty()) {
    KV_ASSIGN_OR_RETURN(llama_sampler * grammar, InitGrammar(model, params.grammar));
    llama_sampler_chain_add(chain, grammar);
  }
  if (params.temperature <= 0.0f) {
    llama_sampler_chain_add(chain, llama_sampler_init_greedy());
    sampler->plain_greedy_ =
        params.logit_bias.empty() && params.grammar.empty() && !params.has_penalties();
    return sampler;
  }
  if (params.top_k > 0) llama_sampler_chain_add(chain, llama_sampler_init_top_k(params.top_k));
  if (params.top_p < 1.0f)
    llama_sampler_chain_add(chain, llama_sampler_init_top_p(params.top_p, 1));
  if (params.min_p > 0.0f)
    llama_sampler_chain_add(chain, llama_sampler_init_min_p(params.min_p, 1));
  llama_sampler_chain_add(chain, llama_sampler_init_temp(params.temperature));
  llama_sampler_chain_add(chain, llama_sampler_init_dist(params.seed));
  return sampler;
}

Sampler::~Sampler() { llama_sampler_free(chain_); }

Result<llama_token> Sampler::Sample(Context& context, int32_t batch_index) {
  if (plain_greedy_) {
    // Argmax straight over the logits: llama_sampler_sample would first copy the whole
    // vocabulary into a candidate array (151,936 entries for Qwen) on every token.
    const std::span<const float> logits = context.Logits(batch_index);
    if (!logits.empty()) {
      return static_cast<llama_token>(std::max_element(logits.begin(), logits.end()) -
                                      logits.begin());
    }
  }
  // llama_sampler_sample applies the chain and accepts the chosen token. Its grammar sampler
  // throws when the grammar breaks on the text so far: caught here, at the engine boundary.
  try {
    return llama_sampler_sample(chain_, context.raw(), batch_index);
  } catch (const std::exception& error) {
    return GrammarFailure(std::string("sampling failed: ") + error.what());
  }
}

void Sampler::Accept(llama_token token) { llama_sampler_accept(chain_, token); }

void Sampler::Reset() { llama_sampler_reset(chain_); }

}  // namespace kvault::engine
