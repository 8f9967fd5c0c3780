// engine/scheduler.h: continuous batching. One thread owns the Context and, in each step,
// decodes every active sequence together in one llama_decode call: each generating sequence
// contributes its last sampled token, and sequences still reading their prompt contribute a
// chunk of it. A request submitted between steps joins at the next step; a long prompt is
// fed in chunks of `prefill_chunk` tokens while others generate, so it delays their next
// token by at most one chunk's compute.
//
// Everything that touches the Context (KV export/import, removing or copying cells) must run
// on this thread too: RunOnEngineThread() queues such work between steps.
//
// Callbacks (on_token, on_done) run on the scheduler thread: they must be quick and must not
// call back into the Scheduler's blocking methods.
//
// Thread-safety: Submit, Cancel, RunOnEngineThread, stats and Stop may be called from any
// thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <llama.h>

#include "kvault/base/result.h"
#include "kvault/engine/sampler.h"

namespace kvault::engine {

class Context;

enum class FinishReason { kStop, kLength, kCancelled, kError };
std::string_view FinishReasonName(FinishReason reason);  // "stop", "length", ...

// What on_token asks the scheduler to do next.
enum class TokenAction { kContinue, kStop };

struct GenerationOutcome {
  FinishReason reason = FinishReason::kStop;
  Status error;  // set when reason is kError
  // Every token whose KV is now in the sequence, from the request's first_pos on: the
  // prompt tokens fed, then the generated tokens that were decoded (a sampled token is only
  // decoded when another follows it, so the last one usually is not).
  std::vector<llama_token> decoded_tokens;
  std::vector<llama_token> generated_tokens;  // everything sampled, in order
  int64_t queue_us = 0;                       // submission to the first decode step
  int64_t first_token_us = 0;                 // submission to the first sampled token (TTFT)
  int64_t total_us = 0;
};

class Context;

// Prompt tokens [offset, offset + n) whose KV can be put in place rather than decoded
// (recalled history, conversation/recall_kv.h). `put` runs on the engine thread when the
// prompt reaches the range, the sequence then holding exactly the positions before it
// (llama.cpp appends to a sequence only after its last position); false: nothing was put,
// and the range is decoded like the rest of the prompt.
struct HeldRange {
  size_t offset = 0;
  size_t n = 0;
  std::function<bool(Context&)> put;
};

struct GenerationRequest {
  llama_seq_id seq_id = 0;
  // The sequence already holds positions [0, first_pos); prompt goes from first_pos.
  llama_pos first_pos = 0;
  std::vector<llama_token> prompt;  // REQUIRES: not empty
  // In prompt order, disjoint, never the last prompt token (its logits start the reply).
  // Put or decoded, they count as decoded (GenerationOutcome::decoded_tokens).
  std::vector<HeldRange> held;
  SamplingParams sampling;
  int max_tokens = 256;
  bool stop_at_end_of_generation = true;
  // Called with each sampled token (end-of-generation tokens excluded).
  std::function<TokenAction(llama_token)> on_token;
  // Called exactly once, when the request leaves the scheduler.
  std::function<void(GenerationOutcome)> on_done;
  // Checked before every step; set it to stop the request within one step.
  std::shared_ptr<std::atomic<bool>> cancelled;
};

struct SchedulerParams {
  // Most prompt tokens fed per step while other sequences are generating (when none is,
  // prompts are fed n_batch at a time).
  int prefill_chunk = 512;
};

struct SchedulerStats {
  int64_t active = 0;            // requests in the scheduler now
  int64_t steps = 0;             // llama_decode calls
  int64_t prompt_tokens = 0;     // prompt tokens decoded
  int64_t generated_tokens = 0;  // tokens sampled
};

class Scheduler {
 public:
  // Starts the scheduler thread. REQUIRES: the context outlives the Scheduler.
  static Result<std::unique_ptr<Scheduler>> Start(Context* context, const Model& model,
                                                  const SchedulerParams& params);
  ~Scheduler();  // Stop()s
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Queues a request; it joins at the next step. InvalidArgument for an empty prompt or a
  // sequence id already in use; Unavailable after Stop().
  Status Submit(GenerationRequest request);
  // OK if `sampling` can be used for a request (engine::Sampler::Check): what Submit would
  // refuse, and grammars that would fail at the first token. Callable from any thread.
  Status CheckSampling(const SamplingParams& sampling) const;

  // Runs `task` on the scheduler thread between steps and returns its status.
  Status RunOnEngineThread(std::function<Status(Context&)> task);

  SchedulerStats stats() const;

  // Cancels every request (on_done with kCancelled) and joins the thread. Idempotent.
  void Stop();

 private:
  struct Impl;
  explicit Scheduler(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvault::engine
