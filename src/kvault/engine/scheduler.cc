#include "kvault/engine/scheduler.h"

#include <chrono>
#include <deque>
#include <future>
#include <map>
#include <thread>

#include "kvault/base/log.h"
#include "kvault/base/mutex.h"
#include "kvault/engine/batch_decoder.h"
#include "kvault/engine/context.h"
#include "kvault/engine/model.h"
#include "kvault/engine/tokenizer.h"

namespace kvault::engine {
namespace {

int64_t NowMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// A request inside the scheduler.
struct Active {
  GenerationRequest request;
  std::unique_ptr<Sampler> sampler;
  size_t prompt_offset = 0;  // prompt tokens already decoded (or held)
  size_t next_held = 0;      // request.held[next_held] is the next range to skip
  llama_pos next_pos = 0;    // position of the next token to decode
  bool has_pending = false;  // a sampled token waits to be decoded
  llama_token pending = 0;
  GenerationOutcome outcome;
  int64_t submitted_us = 0;
  bool started = false;

  bool prefilling() const { return prompt_offset < request.prompt.size(); }
  // At a held range: puts its KV in place and steps over it; one that cannot be put is
  // decoded instead.
  void SkipHeld(Context& context) {
    while (next_held < request.held.size() && request.held[next_held].offset == prompt_offset) {
      HeldRange& range = request.held[next_held++];
      if (!range.put || !range.put(context)) break;
      const auto first = request.prompt.begin() + static_cast<std::ptrdiff_t>(range.offset);
      outcome.decoded_tokens.insert(outcome.decoded_tokens.end(), first,
                                    first + static_cast<std::ptrdiff_t>(range.n));
      prompt_offset += range.n;
      next_pos += static_cast<llama_pos>(range.n);
    }
  }
  // Prompt tokens that may be decoded from prompt_offset before the next held range.
  size_t UntilHeld() const {
    const size_t end =
        next_held < request.held.size() ? request.held[next_held].offset : request.prompt.size();
    return end - prompt_offset;
  }
};

struct Task {
  std::function<Status(Context&)> run;
  std::promise<Status> done;
};

}  // namespace

std::string_view FinishReasonName(FinishReason reason) {
  switch (reason) {
    case FinishReason::kStop: return "stop";
    case FinishReason::kLength: return "length";
    case FinishReason::kCancelled: return "cancelled";
    case FinishReason::kError: return "error";
  }
  return "stop";
}

struct Scheduler::Impl {
  Impl(Context* context, const Model& model, const SchedulerParams& params)
      : context(context), model(model), tokenizer(model), params(params), decoder(context) {}

  void Loop();
  void AdmitInbox() KV_EXCLUDES(mu);
  void RunTasks() KV_EXCLUDES(mu);
  void DropCancelled();
  bool Step();
  void SampleAfterDecode(Active& active, int32_t output_index);
  void Finish(llama_seq_id seq_id, FinishReason reason, Status error = Status::Ok());
  void FinishAll(FinishReason reason, const Status& error);

  Context* const context;
  const Model& model;
  const Tokenizer tokenizer;
  const SchedulerParams params;
  BatchDecoder decoder;                   // scheduler thread only
  std::map<llama_seq_id, Active> active;  // scheduler thread only

  mutable Mutex mu;
  CondVar wake;
  std::deque<Active> inbox KV_GUARDED_BY(mu);
  std::deque<std::unique_ptr<Task>> tasks KV_GUARDED_BY(mu);
  std::map<llama_seq_id, bool> seq_in_use KV_GUARDED_BY(mu);
  bool stopping KV_GUARDED_BY(mu) = false;
  SchedulerStats stats KV_GUARDED_BY(mu);
  std::thread thread;
};

Result<std::unique_ptr<Scheduler>> Scheduler::Start(Context* context, const Model& model,
                                                    const SchedulerParams& params) {
  if (params.prefill_chunk <= 0) return InvalidArgumentError("prefill_chunk must be positive");
  auto impl = std::make_unique<Impl>(context, model, params);
  impl->thread = std::thread([raw = impl.get()] { raw->Loop(); });
  return std::unique_ptr<Scheduler>(new Scheduler(std::move(impl)));
}

Scheduler::Scheduler(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Scheduler::~Scheduler() { Stop(); }

Status Scheduler::CheckSampling(const SamplingParams& sampling) const {
  return Sampler::Check(impl_->model, sampling);
}

Status Scheduler::Submit(GenerationRequest request) {
  if (request.prompt.empty()) return InvalidArgumentError("the prompt has no tokens");
  if (request.max_tokens <= 0) return InvalidArgumentError("max_tokens must be positive");
  size_t held_end = 0;
  for (const HeldRange& range : request.held) {
    if (range.n == 0 || range.offset < held_end ||
        range.offset + range.n >= request.prompt.size()) {
      return InvalidArgumentError(
          "held prompt ranges must be ordered, disjoint and end before "
          "the last prompt token");
    }
    held_end = range.offset + range.n;
  }
  const auto n_seq = static_cast<llama_seq_id>(impl_->context->params().n_seq_max);
  if (request.seq_id < 0 || request.seq_id >= n_seq) {
    return InvalidArgumentError("sequence id " + std::to_string(request.seq_id) +
                                " outside the context's " + std::to_string(n_seq));
  }
  // The sampler is built on the caller's thread, outside the lock: a grammar that fails to
  // build is refused here, and its cost never lands on the engine thread.
  Result<std::unique_ptr<Sampler>> sampler = Sampler::Create(impl_->model, request.sampling);
  if (!sampler.ok()) return sampler.status();
  Active entry;
  entry.sampler = std::move(sampler).value();
  entry.next_pos = request.first_pos;
  entry.submitted_us = NowMicros();
  if (!request.cancelled) request.cancelled = std::make_shared<std::atomic<bool>>(false);
  entry.request = std::move(request);
  MutexLock lock(&impl_->mu);
  if (impl_->stopping) return UnavailableError("the scheduler is stopping");
  // One request per sequence: `active` is keyed by seq_id, and two requests would write the
  // same positions of one KV sequence.
  bool& in_use = impl_->seq_in_use[entry.request.seq_id];
  if (in_use) {
    return InvalidArgumentError("sequence " + std::to_string(entry.request.seq_id) +
                                " already has a request");
  }
  in_use = true;
  ++impl_->stats.active;
  impl_->inbox.push_back(std::move(entry));
  impl_->wake.Signal();
  return Status::Ok();
}

Status Scheduler::RunOnEngineThread(std::function<Status(Context&)> task) {
  auto entry = std::make_unique<Task>();
  entry->run = std::move(task);
  std::future<Status> done = entry->done.get_future();
  {
    MutexLock lock(&impl_->mu);
    // Checked under the lock with which Loop drains `tasks` on exit: every queued task gets
    // an answer, so no caller waits forever on its future.
    if (impl_->stopping) return UnavailableError("the scheduler is stopping");
    impl_->tasks.push_back(std::move(entry));
    impl_->wake.Signal();
  }
  return done.get();
}

SchedulerStats Scheduler::stats() const {
  MutexLock lock(&impl_->mu);
  return impl_->stats;
}

void Scheduler::Stop() {
  {
    MutexLock lock(&impl_->mu);
    if (impl_->stopping && !impl_->thread.joinable()) return;
    impl_->stopping = true;
    impl_->wake.Signal();
  }
  if (impl_->thread.joinable()) impl_->thread.join();
}

void Scheduler::Impl::Loop() {
  while (true) {
    // Between two steps, on the thread that owns the Context: new requests join, queued KV
    // work runs (it must not overlap a decode), and cancelled requests leave before they
    // cost another decode.
    AdmitInbox();
    RunTasks();
    DropCancelled();
    {
      MutexLock lock(&mu);
      if (stopping) break;
    }
    if (Step()) continue;
    MutexLock lock(&mu);
    // Idle: nothing is active, so only a new request, a task or Stop() can bring work.
    while (!stopping && inbox.empty() && tasks.empty()) wake.Wait(&mu);
  }
  FinishAll(FinishReason::kCancelled, Status::Ok());
  // Tasks queued while stopping get an answer too.
  MutexLock lock(&mu);
  for (auto& task : tasks) task->done.set_value(UnavailableError("the scheduler stopped"));
  tasks.clear();
  // Requests that never joined still get their one on_done.
  for (Active& entry : inbox) {
    entry.outcome.reason = FinishReason::kCancelled;
    if (entry.request.on_done) entry.request.on_done(std::move(entry.outcome));
  }
  inbox.clear();
}

void Scheduler::Impl::AdmitInbox() {
  std::deque<Active> admitted;
  {
    MutexLock lock(&mu);
    admitted.swap(inbox);
  }
  for (Active& entry : admitted) {
    const llama_seq_id seq_id = entry.request.seq_id;
    active.emplace(seq_id, std::move(entry));
  }
}

void Scheduler::Impl::RunTasks() {
  std::deque<std::unique_ptr<Task>> pending;
  {
    MutexLock lock(&mu);
    pending.swap(tasks);
  }
  for (auto& task : pending) task->done.set_value(task->run(*context));
}

void Scheduler::Impl::DropCancelled() {
  std::vector<llama_seq_id> cancelled;
  for (auto& [seq_id, entry] : active) {
    if (entry.request.cancelled->load()) cancelled.push_back(seq_id);
  }
  for (llama_seq_id seq_id : cancelled) Finish(seq_id, FinishReason::kCancelled);
}

// One decode step over every active request. Returns false when there was nothing to do.
bool Scheduler::Impl::Step() {
  if (active.empty()) return false;
  std::vector<SequenceChunk> chunks;
  std::vector<llama_seq_id> owners;
  // Generating sequences go first, one token each, so every reply advances every step;
  // prompts share what is left of the batch.
  bool any_generating = false;
  for (auto& [seq_id, entry] : active) {
    if (!entry.has_pending) continue;
    chunks.push_back({seq_id, entry.next_pos, {&entry.pending, 1}, true});
    owners.push_back(seq_id);
    any_generating = true;
  }
  const size_t capacity = decoder.capacity();
  // (More generating sequences than the batch holds does not happen with kvault's settings:
  // at most llama_max_parallel_sequences(), 256, against a batch of 2,048. Guarded against
  // the wrap all the same.)
  size_t budget = capacity > chunks.size() ? capacity - chunks.size() : 0;
  // While others generate, prompts get at most prefill_chunk tokens per step, for all of
  // them together: that bounds the delay a step adds to their next token. Alone, prompts
  // fill the whole batch, which prefills fastest.
  if (any_generating) budget = std::min(budget, static_cast<size_t>(params.prefill_chunk));
  for (auto& [seq_id, entry] : active) {
    if (!entry.prefilling() || budget == 0) continue;
    entry.SkipHeld(*context);
    const std::vector<llama_token>& prompt = entry.request.prompt;
    const size_t n = std::min(budget, entry.UntilHeld());
    // Logits only for the chunk that ends the prompt: they give the first reply token, and
    // earlier chunks' logits would be computed for nothing.
    const bool last = entry.prompt_offset + n == prompt.size();
    chunks.push_back({seq_id, entry.next_pos,
                      std::span<const llama_token>(prompt).subspan(entry.prompt_offset, n), last});
    owners.push_back(seq_id);
    budget -= n;
  }
  if (chunks.empty()) return false;

  const int64_t now = NowMicros();
  for (llama_seq_id seq_id : owners) {
    Active& entry = active.at(seq_id);
    if (!entry.started) {
      entry.started = true;
      entry.outcome.queue_us = now - entry.submitted_us;
    }
  }
  Status status = decoder.Decode(chunks);
  {
    MutexLock lock(&mu);
    ++stats.steps;
  }
  // One llama_decode served every sequence and does not say whose tokens failed, so every
  // request ends with the error. Positions and decoded_tokens are not advanced: each
  // outcome lists only what was decoded before.
  if (!status.ok()) {
    KV_LOG(kWarning) << "decode of " << chunks.size() << " sequences failed: " << status.ToString();
    FinishAll(FinishReason::kError, status);
    return true;
  }
  int64_t n_prompt = 0;
  for (size_t i = 0; i < chunks.size(); ++i) {
    Active& entry = active.at(owners[i]);
    entry.next_pos += static_cast<llama_pos>(chunks[i].tokens.size());
    entry.outcome.decoded_tokens.insert(entry.outcome.decoded_tokens.end(),
                                        chunks[i].tokens.begin(), chunks[i].tokens.end());
    // A chunk is either the pending sampled token or a slice of the prompt, never both: a
    // sequence samples only once its prompt is in.
    if (entry.has_pending) {
      entry.has_pending = false;
    } else {
      entry.prompt_offset += chunks[i].tokens.size();
      n_prompt += static_cast<int64_t>(chunks[i].tokens.size());
    }
  }
  {
    MutexLock lock(&mu);
    stats.prompt_tokens += n_prompt;
  }
  for (size_t i = 0; i < chunks.size(); ++i) {
    if (chunks[i].logits_for_last) SampleAfterDecode(active.at(owners[i]), decoder.OutputIndex(i));
  }
  return true;
}

void Scheduler::Impl::SampleAfterDecode(Active& entry, int32_t output_index) {
  Result<llama_token> sampled = entry.sampler->Sample(*context, output_index);
  if (!sampled.ok()) {
    Finish(entry.request.seq_id, FinishReason::kError, sampled.status());
    return;
  }
  const llama_token token = *sampled;
  GenerationOutcome& outcome = entry.outcome;
  if (outcome.generated_tokens.empty()) outcome.first_token_us = NowMicros() - entry.submitted_us;
  outcome.generated_tokens.push_back(token);
  {
    MutexLock lock(&mu);
    ++stats.generated_tokens;
  }
  const llama_seq_id seq_id = entry.request.seq_id;
  // End of generation is checked before on_token, so the client never sees that token.
  if (entry.request.stop_at_end_of_generation && tokenizer.IsEndOfGeneration(token)) {
    Finish(seq_id, FinishReason::kStop);
    return;
  }
  const TokenAction action =
      entry.request.on_token ? entry.request.on_token(token) : TokenAction::kContinue;
  if (action == TokenAction::kStop) {
    Finish(seq_id, FinishReason::kStop);
  } else if (static_cast<int>(outcome.generated_tokens.size()) >= entry.request.max_tokens) {
    Finish(seq_id, FinishReason::kLength);
  } else {
    // The token is decoded in the next step, with the others; a request that stops never pays
    // a decode for its last token (so its KV lacks it; see decoded_tokens).
    entry.pending = token;
    entry.has_pending = true;
  }
}

void Scheduler::Impl::Finish(llama_seq_id seq_id, FinishReason reason, Status error) {
  auto it = active.find(seq_id);
  if (it == active.end()) return;
  Active entry = std::move(it->second);
  active.erase(it);
  entry.outcome.reason = reason;
  entry.outcome.error = std::move(error);
  entry.outcome.total_us = NowMicros() - entry.submitted_us;
  {
    MutexLock lock(&mu);
    // The sequence is free before on_done runs: the waiter it wakes may submit the next round
    // to the same sequence at once.
    seq_in_use.erase(seq_id);
    --stats.active;
  }
  if (entry.request.on_done) entry.request.on_done(std::move(entry.outcome));
}

void Scheduler::Impl::FinishAll(FinishReason reason, const Status& error) {
  std::vector<llama_seq_id> ids;
  for (const auto& [seq_id, entry] : active) ids.push_back(seq_id);
  for (llama_seq_id seq_id : ids) Finish(seq_id, reason, error);
}

}  // namespace kvault::engine
