#include "kvault/conversation/manager.h"

#include <algorithm>
#include <chrono>
#include <deque>

#include "kvault/base/log.h"
#include "kvault/base/status_macros.h"
#include "kvault/engine/context.h"
#include "kvault/engine/model.h"
#include "kvault/engine/stop_matcher.h"

namespace kvault::conversation {
namespace {

using Clock = std::chrono::steady_clock;

double MillisBetween(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

// Text pieces and the final outcome, from the scheduler thread to the request's thread.
class ReplyChannel {
 public:
  void PushText(std::string text) {
    MutexLock lock(&mu_);
    texts_.push_back({std::move(text), Clock::now()});
    ready_.Signal();
  }
  void PushDone(engine::GenerationOutcome outcome) {
    MutexLock lock(&mu_);
    outcome_ = std::move(outcome);
    done_ = true;
    ready_.Signal();
  }
  struct Piece {
    std::string text;
    Clock::time_point at;
  };
  // Waits for text or the end; returns false once everything has been taken and it ended.
  bool Next(std::deque<Piece>* pieces, engine::GenerationOutcome* outcome) {
    MutexLock lock(&mu_);
    while (texts_.empty() && !done_) ready_.Wait(&mu_);
    pieces->swap(texts_);
    texts_.clear();
    if (done_ && pieces->empty()) {
      *outcome = std::move(outcome_);
      return false;
    }
    return true;
  }

 private:
  Mutex mu_;
  CondVar ready_;
  std::deque<Piece> texts_ KV_GUARDED_BY(mu_);
  engine::GenerationOutcome outcome_ KV_GUARDED_BY(mu_);
  bool done_ KV_GUARDED_BY(mu_) = false;
};

// Detokenizes and applies stop strings on the scheduler thread.
struct ReplyFilter {
  ReplyFilter(const engine::Tokenizer* tokenizer, std::vector<std::string> stops)
      : decoder(tokenizer), stops(std::move(stops)) {}
  engine::StreamDecoder decoder;
  engine::StopMatcher stops;
};

bool SameMessage(const engine::ChatMessage& a, const engine::ChatMessage& b) {
  return a.role == b.role && a.content == b.content;
}

}  // namespace

class ConversationManager::Pending {
 public:
  ~Pending() KV_NO_THREAD_SAFETY_ANALYSIS {
    if (!conversation) return;
    // A stateless request's conversation has nothing to remember: the client keeps it.
    if (forget_in != nullptr) forget_in->Remove(conversation);
    conversation->turn_lock.Unlock();
  }
  Registry* forget_in = nullptr;  // set for a stateless request's conversation
  std::unique_ptr<Admission::Ticket> ticket;
  std::shared_ptr<Conversation> conversation;  // its turn_lock is held
  GenerateRequest request;
  std::vector<engine::ChatMessage> turns;  // the conversation after this request's messages
  std::vector<llama_token> prompt;
  int max_tokens = 0;
  Clock::time_point start;
};

void ConversationManager::PendingDeleter::operator()(Pending* pending) const { delete pending; }

ConversationManager::ConversationManager(const engine::Model& model, engine::Scheduler* scheduler,
                                         const ManagerParams& params, store::BlockStore* store,
                                         Journal* journal, SessionStore* sessions)
    : scheduler_(scheduler),
      model_fingerprint_(model.fingerprint().ToHex()),
      params_(params),
      tokenizer_(model),
      chat_template_(engine::ChatTemplate::ForModel(model)),
      admission_(params.threads, params.queue),
      pool_(params.n_sequences,
            [scheduler](llama_seq_id seq_id) {
              return scheduler->RunOnEngineThread([seq_id](engine::Context& context) {
                context.ClearSequence(seq_id);
                return Status::Ok();
              });
            }),
      kv_cache_(scheduler, &pool_, store, params.restore),
      journal_(journal),
      sessions_(sessions) {
  RecoverJournal();
  RepinSessions();
}

ConversationManager::~ConversationManager() { Shutdown(); }

void ConversationManager::RecoverJournal() KV_NO_THREAD_SAFETY_ANALYSIS {
  if (journal_ == nullptr) return;
  std::vector<JournalEntry> entries = journal_->TakeRecovered();
  for (JournalEntry& entry : entries) {
    std::shared_ptr<Conversation> conversation = registry_.GetOrCreate(entry.scope, entry.id);
    MutexLock lock(&conversation->turn_lock);  // no request can hold it yet
    conversation->n_turns = static_cast<int64_t>(entry.turns.size());
    conversation->turns = std::move(entry.turns);
    conversation->kv_tail = entry.tail;
  }
  if (!entries.empty()) {
    KV_LOG(kInfo) << "conversation: resumed " << entries.size()
                  << " conversations from the journal";
  }
}

void ConversationManager::CommitTurns(Conversation& conversation,
                                      std::vector<engine::ChatMessage> turns)
    KV_NO_THREAD_SAFETY_ANALYSIS {
  size_t kept = 0;
  const std::vector<engine::ChatMessage>& stored = conversation.turns;
  while (kept < stored.size() && kept < turns.size() && SameMessage(stored[kept], turns[kept])) {
    ++kept;
  }
  if (journal_ != nullptr) {
    Status recorded = journal_->Record(conversation.scope(), conversation.id(), kept,
                                       std::span<const engine::ChatMessage>(turns).subspan(kept),
                                       conversation.kv_tail);
    if (!recorded.ok()) {
      KV_LOG(kWarning) << "journal: conversation '" << conversation.id()
                       << "' not saved: " << recorded.ToString();
    }
  }
  conversation.turns = std::move(turns);
  conversation.n_turns = static_cast<int64_t>(conversation.turns.size());
}

Result<ConversationManager::PendingPtr> ConversationManager::Prepare(GenerateRequest request)
    KV_NO_THREAD_SAFETY_ANALYSIS {
  PendingPtr pending(new Pending);
  pending->start = Clock::now();
  KV_ASSIGN_OR_RETURN(pending->ticket, admission_.Enter());
  if (!request.explicit_conversation) {
    // Stateless (no conversation_id): a conversation of its own for this request only, so
    // such requests run side by side; its sequence stays parked afterwards, a cache whose
    // prefix later requests share (as they share the block store).
    request.conversation_id = "~stateless-" + std::to_string(++stateless_counter_);
  }
  // The conversation's lock is taken while queued: a second request for the same
  // conversation waits here, counted in the queue, until the first is done.
  while (true) {
    std::shared_ptr<Conversation> conversation =
        registry_.GetOrCreate(request.scope, request.conversation_id);
    conversation->turn_lock.Lock();
    if (!conversation->ended) {
      pending->conversation = std::move(conversation);
      if (!request.explicit_conversation) pending->forget_in = &registry_;
      break;
    }
    conversation->turn_lock.Unlock();  // ended while we waited: use its successor
  }
  KV_RETURN_IF_ERROR(pending->ticket->Run());
  // Only the spare sequences can be dedicated: running requests always need theirs.
  const int64_t spares = params_.n_sequences - params_.threads;
  if (request.pin && !pool_.IsReserved(pending->conversation->key()) &&
      pool_.n_reserved() >= spares) {
    return FailedPreconditionError("pin: all " + std::to_string(spares) +
                                   " dedicated sequences are taken; end a pinned conversation");
  }
  KV_ASSIGN_OR_RETURN(pending->prompt,
                      BuildPrompt(request, *pending->conversation, &pending->turns));
  const int prompt_size = static_cast<int>(pending->prompt.size());
  if (prompt_size + 1 > params_.window) {
    return InvalidArgumentError("context_length_exceeded: the prompt has " +
                                std::to_string(prompt_size) + " tokens; the window is " +
                                std::to_string(params_.window) + " (--window)");
  }
  const int requested = request.max_tokens.value_or(params_.max_generation);
  if (requested <= 0) return InvalidArgumentError("max_tokens must be at least 1");
  pending->max_tokens = std::min({requested, params_.max_generation, params_.window - prompt_size});
  pending->request = std::move(request);
  return pending;
}

Result<std::vector<llama_token>> ConversationManager::BuildPrompt(
    const GenerateRequest& request, Conversation& conversation,
    std::vector<engine::ChatMessage>* turns) KV_NO_THREAD_SAFETY_ANALYSIS {
  if (request.raw_prompt) {
    return tokenizer_.Tokenize(*request.raw_prompt, {.add_special = true, .parse_special = true});
  }
  const std::vector<engine::ChatMessage>& stored = conversation.turns;
  const bool restates = stored.empty() || !request.explicit_conversation ||
                        (!request.messages.empty() && SameMessage(request.messages[0], stored[0]));
  if (restates) {
    *turns = request.messages;
  } else {
    *turns = stored;
    turns->insert(turns->end(), request.messages.begin(), request.messages.end());
  }
  KV_ASSIGN_OR_RETURN(std::string text, chat_template_.Apply(*turns, true));
  return tokenizer_.Tokenize(text, {.add_special = true, .parse_special = true});
}

Result<GenerateResult> ConversationManager::Run(PendingPtr pending,
                                                ReplySink* sink) KV_NO_THREAD_SAFETY_ANALYSIS {
  Conversation& conversation = *pending->conversation;
  KV_ASSIGN_OR_RETURN(SequenceLease lease, pool_.Acquire(conversation.key()));
  const std::vector<llama_token>& prompt = pending->prompt;
  Result<PreparedPrefix> prepared = kv_cache_.Prepare(lease, prompt);
  if (!prepared.ok()) {
    pool_.Release(conversation.key(), {});
    return prepared.status();
  }
  const size_t reused = prepared->n_tokens;
  KV_LOG(kDebug) << "conversation '" << conversation.id() << "': " << reused << " of "
                 << prompt.size() << " prompt tokens from " << PrefixSourceName(prepared->source)
                 << " in " << prepared->restore_ms << " ms";
  if (pending->request.pin) pool_.SetReserved(conversation.key(), true).IgnoreError();

  auto channel = std::make_shared<ReplyChannel>();
  auto filter = std::make_shared<ReplyFilter>(&tokenizer_, pending->request.stop);
  auto cancelled = std::make_shared<std::atomic<bool>>(false);
  engine::GenerationRequest generation;
  generation.seq_id = lease.seq_id;
  generation.first_pos = static_cast<llama_pos>(reused);
  generation.prompt.assign(prompt.begin() + static_cast<std::ptrdiff_t>(reused), prompt.end());
  generation.sampling = pending->request.sampling;
  generation.max_tokens = pending->max_tokens;
  generation.stop_at_end_of_generation = !pending->request.ignore_eos;
  generation.cancelled = cancelled;
  generation.on_token = [channel, filter](llama_token token) {
    engine::StopMatcher::Output out = filter->stops.Push(filter->decoder.Push(token));
    if (!out.text.empty()) channel->PushText(std::move(out.text));
    return out.stopped ? engine::TokenAction::kStop : engine::TokenAction::kContinue;
  };
  generation.on_done = [channel, filter](engine::GenerationOutcome outcome) {
    std::string rest = filter->stops.Push(filter->decoder.Flush()).text + filter->stops.Flush();
    if (!rest.empty()) channel->PushText(std::move(rest));
    channel->PushDone(std::move(outcome));
  };
  const Clock::time_point submitted_at = Clock::now();
  Status submitted = scheduler_->Submit(std::move(generation));
  if (!submitted.ok()) {
    pool_.Release(conversation.key(),
                  std::vector<llama_token>(prompt.begin(), prompt.begin() + reused));
    return submitted;
  }

  GenerateResult result;
  std::deque<ReplyChannel::Piece> pieces;
  engine::GenerationOutcome outcome;
  while (channel->Next(&pieces, &outcome)) {
    for (ReplyChannel::Piece& piece : pieces) {
      result.text += piece.text;
      result.text_times_ms.push_back(MillisBetween(pending->start, piece.at));
      if (sink != nullptr && !cancelled->load() && !sink->OnText(piece.text)) {
        cancelled->store(true);  // the client is gone: stop within one decode step
      }
    }
  }

  // What the sequence holds now: the reused prefix, then everything this request decoded.
  std::vector<llama_token> held(prompt.begin(), prompt.begin() + reused);
  held.insert(held.end(), outcome.decoded_tokens.begin(), outcome.decoded_tokens.end());
  if (outcome.reason != engine::FinishReason::kError) {
    conversation.kv_tail = kv_cache_.Checkpoint(lease.seq_id, held, conversation.kv_tail,
                                                pending->request.explicit_conversation);
  }
  pool_.Release(conversation.key(), std::move(held));
  const size_t prefilled = prompt.size() - reused;
  if (prefilled >= 32 && !outcome.generated_tokens.empty()) {
    kv_cache_.RecordPrefill(static_cast<int64_t>(prefilled),
                            (outcome.first_token_us - outcome.queue_us) / 1e6);
  }

  result.finish_reason = outcome.reason;
  result.prompt_tokens = static_cast<int>(prompt.size());
  result.cached_tokens = static_cast<int>(reused);
  result.cache_source = prepared->source;
  result.completion_tokens = static_cast<int>(outcome.generated_tokens.size());
  const double before_submit_ms = MillisBetween(pending->start, submitted_at);
  result.queue_ms = before_submit_ms + outcome.queue_us / 1000.0;
  result.first_token_ms =
      outcome.generated_tokens.empty() ? -1 : before_submit_ms + outcome.first_token_us / 1000.0;
  result.total_ms = MillisBetween(pending->start, Clock::now());
  if (outcome.reason == engine::FinishReason::kError) return outcome.error;

  conversation.Touch();
  ++conversation.n_requests;
  if (pending->request.explicit_conversation && !pending->request.raw_prompt &&
      outcome.reason != engine::FinishReason::kCancelled) {
    pending->turns.push_back({"assistant", result.text});
    CommitTurns(conversation, std::move(pending->turns));
  }
  conversation.n_tokens = static_cast<int64_t>(prompt.size()) + result.completion_tokens;
  return result;
}

Status ConversationManager::End(const std::string& scope,
                                const std::string& id) KV_NO_THREAD_SAFETY_ANALYSIS {
  std::shared_ptr<Conversation> conversation = registry_.Find(scope, id);
  if (!conversation) return NotFoundError("no conversation '" + id + "'");
  MutexLock lock(&conversation->turn_lock);  // waits for a running generation
  if (conversation->ended) return NotFoundError("no conversation '" + id + "'");
  conversation->ended = true;
  conversation->turns.clear();
  conversation->turns.shrink_to_fit();
  if (journal_ != nullptr) {
    Status removed = journal_->Remove(scope, id);
    if (!removed.ok()) {
      KV_LOG(kWarning) << "journal: " << removed.ToString();
    }
  }
  if (kv_cache_.store() != nullptr && !(conversation->kv_tail == kv::BlockName{})) {
    kv_cache_.store()->Drop(conversation->kv_tail);  // its own; shared blocks age out
  }
  registry_.Remove(conversation);
  ++ended_;
  return pool_.Forget(conversation->key());
}

std::vector<ConversationInfo> ConversationManager::List(const std::string& scope) const {
  std::vector<ConversationInfo> out;
  for (const std::shared_ptr<Conversation>& conversation : registry_.List(scope)) {
    ConversationInfo info;
    info.conversation_id = conversation->id();
    info.tokens = conversation->n_tokens.load();
    info.turns = conversation->n_turns.load();
    info.device_tokens = pool_.DeviceTokens(conversation->key());
    info.idle_seconds = conversation->IdleSeconds();
    out.push_back(std::move(info));
  }
  return out;
}

ManagerStats ConversationManager::stats() const {
  ManagerStats stats;
  stats.admission = admission_.stats();
  stats.sequences = pool_.stats();
  stats.conversations = registry_.size();
  stats.total_conversations = registry_.total_created();
  stats.ended_conversations = ended_.load();
  for (const std::shared_ptr<Conversation>& conversation : registry_.ListAll()) {
    stats.active_tokens += conversation->n_tokens.load();
  }
  return stats;
}

void ConversationManager::Shutdown() { admission_.Close(); }

Status ConversationManager::Preload(std::vector<GenerateRequest> requests) {
  int i = 0;
  for (GenerateRequest& request : requests) {
    request.conversation_id = "__preload_" + std::to_string(i++);
    request.explicit_conversation = true;
    request.max_tokens = 1;
    request.sampling = {};
    const std::string scope = request.scope;
    const std::string id = request.conversation_id;
    KV_ASSIGN_OR_RETURN(PendingPtr pending, Prepare(std::move(request)));
    const std::vector<llama_token> prompt = pending->prompt;
    KV_ASSIGN_OR_RETURN(GenerateResult result, Run(std::move(pending), nullptr));
    if (kv_cache_.store() != nullptr) kv_cache_.store()->Pin(prompt, +1);
    KV_RETURN_IF_ERROR(End(scope, id));
    KV_LOG(kInfo) << "preloaded a prefix of " << prompt.size() << " tokens ("
                  << result.cached_tokens << " were cached already)";
  }
  return Status::Ok();
}

}  // namespace kvault::conversation
