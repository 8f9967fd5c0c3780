#include "kvault/conversation/manager.h"

#include <algorithm>
#include <chrono>

#include "kvault/base/log.h"
#include "kvault/base/status_macros.h"
#include "kvault/conversation/manager_pending.h"
#include "kvault/engine/context.h"
#include "kvault/engine/model.h"

namespace kvault::conversation {

void ConversationManager::PendingDeleter::operator()(Pending* pending) const { delete pending; }

namespace {

std::vector<llama_seq_id> RecallAccumulatorIds(const ManagerParams& params) {
  std::vector<llama_seq_id> ids;
  for (int i = 1; params.recall_scratch_seq >= 0 && i <= params.recall_accumulators; ++i) {
    ids.push_back(params.recall_scratch_seq + i);
  }
  return ids;
}

}  // namespace

ConversationManager::ConversationManager(const engine::Model& model, engine::Scheduler* scheduler,
                                         const ManagerParams& params, ManagerDeps deps)
    : scheduler_(scheduler),
      params_(params),
      deps_(deps),
      tokenizer_(model),
      max_piece_bytes_(tokenizer_.MaxPieceBytes()),
      chat_template_(engine::ChatTemplate::ForModel(model)),
      renderer_(&tokenizer_, &chat_template_),
      memory_(&renderer_, deps.index, deps.journal, deps.knowledge, deps.health,
              {.window = params.window,
               .cache_size = params.cache_size,
               .recall_budget = params.recall_budget,
               .recall_k = params.recall_k,
               .min_score = params.recall_min_score,
               .fog_alpha = params.fog_alpha,
               .token_recall = params.recall_kv.mode != RecallKvMode::kOff &&
                               params.recall_scratch_seq >= 0 && params.n_stream == 1}),
      admission_(params.threads, params.queue, params.queue_timeout),
      pool_(params.n_sequences,
            params.max_pinned >= 0 ? params.max_pinned
                                   : std::max(0, params.n_sequences - params.threads),
            [scheduler](llama_seq_id seq_id) {
              if (scheduler == nullptr) return Status::Ok();  // --upstream: no sequences here
              return scheduler->RunOnEngineThread([seq_id](engine::Context& context) {
                context.ClearSequence(seq_id);
                return Status::Ok();
              });
            }),
      kv_cache_(scheduler, &pool_, deps.store, params.restore, params.n_stream,
                params.share_cache_across_scopes),
      recall_kv_(deps.store, params.recall_kv, params.recall_scratch_seq,
                 params.recall_scratch_seq >= 0 ? params.n_stream : 0,
                 RecallAccumulatorIds(params)),
      history_(&registry_, &memory_, deps.journal, deps.normalizer,
               deps.remote == nullptr ? RemoteHook() : RemoteHook([this](TurnLock& conversation) {
                 return TakeRemote(conversation,
                                   std::chrono::steady_clock::now() + params_.queue_timeout);
               })),
      sessions_({.registry = &registry_,
                 .journal = deps.journal,
                 .store = deps.sessions,
                 .kv_cache = &kv_cache_,
                 .history = &history_,
                 .renderer = &renderer_,
                 .health = deps.health,
                 .model_fingerprint = model.fingerprint().ToHex()}) {
  RecoverJournal();
}

ConversationManager::~ConversationManager() { Shutdown(); }

void ConversationManager::RecoverJournal() {
  if (deps_.journal == nullptr) return;
  std::vector<JournalEntry> entries = deps_.journal->TakeRecovered();
  int64_t tokens = 0;
  for (JournalEntry& entry : entries) {
    TurnLock conversation = registry_.Lock(entry.scope, entry.id);  // no request holds it yet
    Status recovered = memory_.Recover(conversation, std::move(entry));
    if (!recovered.ok()) {
      KV_LOG(kWarning) << "journal: conversation '" << conversation.id()
                       << "' not resumed: " << recovered.ToString();
    }
    tokens += conversation.conversation().n_tokens.load();
  }
  if (!entries.empty()) {
    KV_LOG(kInfo) << "conversation: resumed " << entries.size() << " conversations (" << tokens
                  << " tokens of history) from the journal";
  }
}

Result<RemoteJournal::Lease> ConversationManager::TakeRemote(
    TurnLock& conversation, std::chrono::steady_clock::time_point deadline) {
  const auto left =
      std::max(std::chrono::milliseconds(0), std::chrono::duration_cast<std::chrono::milliseconds>(
                                                 deadline - std::chrono::steady_clock::now()));
  KV_ASSIGN_OR_RETURN(RemoteJournal::Lease lease,
                      deps_.remote->Acquire(conversation.scope(), conversation.id(), left));
  ContinueFromRemote(conversation);
  return lease;
}

void ConversationManager::ContinueFromRemote(TurnLock& conversation) {
  if (deps_.journal == nullptr) return;
  const std::string& scope = conversation.scope();
  const std::string& id = conversation.id();
  std::optional<std::vector<std::string>> newer =
      deps_.remote->NewerRecords(scope, id, deps_.journal->RecordCount(scope, id));
  if (!newer) return;
  Result<JournalEntry> entry = deps_.journal->Adopt(scope, id, *newer);
  if (!entry.ok()) {
    KV_LOG(kWarning) << "remote: conversation '" << id << "': the shared state was not "
                     << "adopted (" << entry.status().ToString() << "); continuing from this "
                     << "replica's own";
    return;
  }
  // What this replica held of it is older: its history and index entries go, the journal's
  // turns come in (the device cells stay: reuse is token-exact, so only a common prefix is
  // kept).
  if (conversation->history) {
    memory_.Forget(conversation);
    conversation->history.reset();
  }
  const size_t turns = entry->turns.size();
  Status recovered = memory_.Recover(conversation, std::move(entry).value());
  if (!recovered.ok()) {
    KV_LOG(kWarning) << "remote: conversation '" << id << "' not resumed: " << recovered.ToString();
    return;
  }
  deps_.remote->NoteAdopted();
  KV_LOG(kInfo) << "remote: conversation '" << id << "' continues here with " << turns
                << " turns another replica recorded";
}

Result<ConversationManager::PendingPtr> ConversationManager::Prepare(GenerateRequest request) {
  PendingPtr pending(new Pending);
  pending->start = std::chrono::steady_clock::now();
  if (deps_.normalizer != nullptr) {
    deps_.normalizer->ApplyTo(&request.messages);
    if (request.raw_prompt) *request.raw_prompt = deps_.normalizer->Apply(*request.raw_prompt);
  }
  KV_RETURN_IF_ERROR(CheckTextFits(request));  // before a thread or the conversation is taken
  KV_ASSIGN_OR_RETURN(pending->ticket, admission_.Enter());
  if (!request.explicit_conversation) {
    // Stateless (no conversation_id): a conversation of its own for this request only, so
    // such requests run side by side; its sequence stays parked afterwards, a cache whose
    // prefix later requests share (as they share the block store).
    request.conversation_id = "~stateless-" + std::to_string(++stateless_counter_);
  }
  // The conversation's lock is taken while queued: a second request for the same
  // conversation waits here, counted in the queue, until the first is done.
  pending->conversation = registry_.Lock(request.scope, request.conversation_id);
  if (!request.explicit_conversation) pending->forget_in = &registry_;
  KV_RETURN_IF_ERROR(pending->ticket->Run());
  TurnLock& conversation = pending->conversation;
  if (deps_.remote != nullptr && request.explicit_conversation) {
    // One writer per conversation across replicas; then whatever another replica added.
    KV_ASSIGN_OR_RETURN(pending->remote_lease,
                        TakeRemote(conversation, pending->ticket->deadline()));
  }
  // Validate: everything below up to the commit can refuse the request, and changes nothing.
  if (request.pin && deps_.upstream != nullptr) {
    return InvalidArgumentError(
        "'pin' keeps a conversation's KV on kvault's device; with --upstream the upstream "
        "server holds the KV");
  }
  if (request.pin) KV_RETURN_IF_ERROR(pool_.CheckReservable(conversation.key()));
  const int requested = request.max_tokens.value_or(params_.max_generation);
  if (requested <= 0) return InvalidArgumentError("max_tokens must be at least 1");
  if (scheduler_ != nullptr) KV_RETURN_IF_ERROR(scheduler_->CheckSampling(request.sampling));
  pending->windowed = request.explicit_conversation && !request.raw_prompt;
  if (pending->windowed) {
    pending->forget_if_empty = &registry_;
    pending->generation_budget = std::clamp(requested, 1, params_.window / 4);
    KV_ASSIGN_OR_RETURN(IngestPlan plan, memory_.Plan(conversation, request.messages,
                                                      request.history_mode, /*to_answer=*/true));
    KV_RETURN_IF_ERROR(memory_.CheckWindow(plan, WindowReserve(*pending)));
    // Commit: the new turns are journaled before anything is generated for them.
    KV_ASSIGN_OR_RETURN(pending->history, memory_.Commit(conversation, std::move(plan)));
    const memory::TokenStore& history = *conversation->history;
    pending->query = renderer_.Text(history.TurnTokens(history.turns().back()));
    pending->request = std::move(request);
    KV_ASSIGN_OR_RETURN(pending->prompt, BuildWindowPrompt(*pending, pending->query, ""));
    recalled_chunks_ += pending->recalled_chunks;
  } else {
    KV_ASSIGN_OR_RETURN(pending->prompt, BuildPrompt(request));
    pending->request = std::move(request);
  }
  const int prompt_size = static_cast<int>(pending->prompt.size());
  if (prompt_size + 1 > params_.window) {  // stateless: the window builder fits the others
    return InvalidArgumentError("the prompt has " + std::to_string(prompt_size) +
                                " tokens; the window is " + std::to_string(params_.window) +
                                " (--window), and the reply needs at least one more")
        .WithDetail(ErrorDetail::kContextLengthExceeded);
  }
  pending->max_tokens = std::min({requested, params_.max_generation, params_.window - prompt_size});
  return pending;
}

namespace {

Status TooLong(int64_t tokens, int64_t limit, const char* what) {
  return InvalidArgumentError("the " + std::string(what) + " has at least " +
                              std::to_string(tokens) + " tokens; the limit is " +
                              std::to_string(limit))
      .WithDetail(ErrorDetail::kContextLengthExceeded);
}

}  // namespace

int64_t ConversationManager::MinTokens(size_t bytes) const {
  // Each token covers at most max_piece_bytes_ bytes of text; halved again for margin (a
  // prefix space, a byte fallback), so only text that surely does not fit is refused.
  return static_cast<int64_t>(bytes / (2 * max_piece_bytes_));
}

Status ConversationManager::CheckMessagesFit(std::span<const engine::ChatMessage> messages) const {
  for (const engine::ChatMessage& message : messages) {
    const int64_t tokens = MinTokens(message.content.size());
    if (tokens > params_.cache_size) return TooLong(tokens, params_.cache_size, "message");
  }
  return Status::Ok();
}

Status ConversationManager::CheckTextFits(const GenerateRequest& request) const {
  const bool windowed = request.explicit_conversation && !request.raw_prompt;
  if (!windowed) {
    size_t bytes = request.raw_prompt ? request.raw_prompt->size() : 0;
    for (const engine::ChatMessage& message : request.messages) bytes += message.content.size();
    if (MinTokens(bytes) >= params_.window)
      return TooLong(MinTokens(bytes), params_.window, "prompt");
    return Status::Ok();
  }
  // A kept conversation: its newest message must fit the window, any message the cache.
  KV_RETURN_IF_ERROR(CheckMessagesFit(request.messages));
  if (!request.messages.empty()) {
    const int64_t newest = MinTokens(request.messages.back().content.size());
    if (newest >= params_.window) return TooLong(newest, params_.window, "newest message");
  }
  return Status::Ok();
}

int ConversationManager::WindowReserve(const Pending& pending) const {
  // The reply's budget, and the tokens every prompt starts with (outside the window's turns).
  return pending.generation_budget + static_cast<int>(renderer_.prompt_start().size());
}

Result<std::vector<llama_token>> ConversationManager::BuildPrompt(const GenerateRequest& request) {
  if (request.raw_prompt) {
    return tokenizer_.Tokenize(*request.raw_prompt, {.add_special = true, .parse_special = true});
  }
  KV_ASSIGN_OR_RETURN(std::string text, chat_template_.Apply(request.messages, true));
  return tokenizer_.Tokenize(text, {.add_special = true, .parse_special = true});
}

Result<std::vector<llama_token>> ConversationManager::BuildWindowPrompt(
    Pending& pending, const std::string& query, const std::string& reply_so_far) {
  KV_ASSIGN_OR_RETURN(memory::Window window,
                      memory_.BuildWindow(pending.conversation, query, WindowReserve(pending),
                                          pending.request.recall));
  std::vector<llama_token> prompt = renderer_.prompt_start();
  prompt.insert(prompt.end(), window.tokens.begin(), window.tokens.end());
  if (!reply_so_far.empty()) {  // resuming a reply after a mid-generation recall
    KV_ASSIGN_OR_RETURN(std::vector<llama_token> reply,
                        tokenizer_.Tokenize(reply_so_far, {.parse_special = false}));
    prompt.insert(prompt.end(), reply.begin(), reply.end());
  }
  pending.recalled_chunks = static_cast<int>(window.recalled.size());
  // Where the history sits in the prompt: the clear zone's spans are kept as KV after the
  // reply, the recalled chunks' put back before it (recall_kv.h).
  const auto start = static_cast<int64_t>(renderer_.prompt_start().size());
  pending.history_runs.clear();
  for (memory::HistoryRun run : {window.system_run, window.clear_run}) {
    if (run.n_tokens == 0) continue;
    run.offset += start;
    memory::HistoryRun* last =
        pending.history_runs.empty() ? nullptr : &pending.history_runs.back();
    if (last != nullptr && last->first_pos + last->n_tokens == run.first_pos &&
        last->offset + last->n_tokens == run.offset) {
      last->n_tokens += run.n_tokens;  // no fog yet: the clear zone follows the system turns
    } else {
      pending.history_runs.push_back(run);
    }
  }
  pending.recall_runs = window.recall_runs;
  for (memory::HistoryRun& run : pending.recall_runs) run.offset += start;
  pending.text_recalled_chunks = 0;
  pending.text_recalled_tokens = 0;
  if (!window.token_recall) {
    for (const memory::RecalledChunk& chunk : window.recalled) {
      if (chunk.hit.chunk_id < 0) continue;
      ++pending.text_recalled_chunks;
      pending.text_recalled_tokens += chunk.hit.n_tokens;
    }
  }
  pending.recalled_turns.clear();
  for (const memory::RecalledChunk& chunk : window.recalled) {
    if (chunk.hit.chunk_id >= 0) pending.recalled_turns.push_back(chunk.hit.first_turn);
  }
  if (window.slid || !window.recalled.empty()) {
    KV_LOG(kDebug) << "conversation '" << pending.conversation.id() << "': window of "
                   << prompt.size() << " tokens, clear zone from turn " << window.first_clear_turn
                   << (window.slid ? " (slid)" : "") << ", " << window.recalled.size()
                   << " chunks recalled from " << window.n_fog_tokens << " tokens of fog";
  }
  return prompt;
}

Status ConversationManager::End(const std::string& scope, const std::string& id) {
  std::string key;
  {
    KV_ASSIGN_OR_RETURN(TurnLock conversation, registry_.LockExisting(scope, id));
    key = conversation.key();
    memory_.Forget(conversation);
    conversation->history.reset();
    if (deps_.journal != nullptr) {
      Status removed = deps_.journal->Remove(scope, id);
      if (!removed.ok()) {
        KV_LOG(kWarning) << "journal: " << removed.ToString();
      }
    }
    kv_cache_.DropTail(conversation->kv_tail);
    registry_.Retire(conversation);
  }
  ++ended_;
  return pool_.Forget(key);
}

Result<ConversationManager::CacheCleared> ConversationManager::ClearCache(
    const std::string& scope, const std::string& conversation_id) {
  CacheCleared cleared;
  // Under the turn lock: a conversation's blocks and sequence change only between turns.
  const auto forget_device = [&](TurnLock& conversation) {
    conversation->kv_tail = {};
    conversation->kv_last = {};
    if (pool_.DeviceTokens(conversation.key()) > 0) ++cleared.device_sequences;
    ++cleared.conversations;
    return pool_.Forget(conversation.key());
  };
  if (!conversation_id.empty()) {
    KV_ASSIGN_OR_RETURN(TurnLock conversation, registry_.LockExisting(scope, conversation_id));
    cleared.stored = kv_cache_.ClearBranch(
        conversation->kv_last == kv::BlockName{} ? conversation->kv_tail : conversation->kv_last);
    KV_RETURN_IF_ERROR(forget_device(conversation));
  } else {
    KV_ASSIGN_OR_RETURN(cleared.stored, kv_cache_.ClearScope(scope));
    for (const std::shared_ptr<Conversation>& listed : registry_.List(scope)) {
      Result<TurnLock> conversation = registry_.LockExisting(scope, listed->id());
      if (!conversation.ok()) continue;  // ended meanwhile
      KV_RETURN_IF_ERROR(forget_device(*conversation));
    }
    // Stateless requests park their sequences too, under the scope's own owner keys.
    const std::string own = ConversationKey(scope, "");
    KV_ASSIGN_OR_RETURN(const int64_t stateless, pool_.ForgetParked([&](std::string_view owner) {
      return owner.starts_with(own);
    }));
    cleared.device_sequences += stateless;
  }
  KV_LOG(kInfo) << "cache: cleared " << cleared.stored.blocks << " stored blocks ("
                << cleared.stored.bytes << " bytes) and " << cleared.device_sequences
                << " device sequences"
                << (conversation_id.empty() ? "" : " of conversation '" + conversation_id + "'")
                << (cleared.stored.pinned > 0
                        ? "; " + std::to_string(cleared.stored.pinned) + " pinned blocks kept"
                        : "");
  return cleared;
}

std::vector<ConversationInfo> ConversationManager::List(const std::string& scope) const {
  std::vector<ConversationInfo> out;
  for (const std::shared_ptr<Conversation>& conversation : registry_.List(scope)) {
    ConversationInfo info;
    info.conversation_id = conversation->id();
    info.tokens = conversation->n_tokens.load();
    info.turns = conversation->n_turns.load();
    info.device_tokens = pool_.DeviceTokens(conversation->key());
    info.index_entries = conversation->n_chunks.load();
    info.dropped_turns = conversation->n_dropped_turns.load();
    info.dropped_tokens = conversation->n_dropped_tokens.load();
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
    stats.history_bytes += conversation->history_bytes.load();
    stats.index_entries += conversation->n_chunks.load();
  }
  stats.recalled_chunks = recalled_chunks_.load();
  stats.mid_generation_recalls = mid_generation_recalls_.load();
  return stats;
}

void ConversationManager::Shutdown() { admission_.Close(); }

Status ConversationManager::Preload(std::vector<GenerateRequest> requests) {
  for (GenerateRequest& request : requests) {
    request.explicit_conversation = false;  // a stateless request: nothing to remember
    request.max_tokens = 1;
    request.sampling = {};
    KV_ASSIGN_OR_RETURN(PendingPtr pending, Prepare(std::move(request)));
    const std::vector<llama_token> prompt = pending->prompt;
    KV_ASSIGN_OR_RETURN(GenerateResult result, Run(std::move(pending), nullptr));
    kv_cache_.Pin(prompt);
    KV_LOG(kInfo) << "preloaded a prefix of " << prompt.size() << " tokens ("
                  << result.cached_tokens << " were cached already)";
  }
  return Status::Ok();
}

Status ConversationManager::PreloadNamed(const std::vector<NamedPrefix>& prefixes) {
  for (const NamedPrefix& prefix : prefixes) {
    // The prefix every chat with this system prompt shares, whatever the template: where two
    // renderings that differ only in the user's text part.
    GenerateRequest a;
    a.messages = {{"system", prefix.content}, {"user", "a"}};
    GenerateRequest b = a;
    b.messages[1].content = "b";
    KV_ASSIGN_OR_RETURN(const std::vector<llama_token> with_a, BuildPrompt(a));
    KV_ASSIGN_OR_RETURN(const std::vector<llama_token> with_b, BuildPrompt(b));
    const size_t shared = static_cast<size_t>(
        std::mismatch(with_a.begin(), with_a.end(), with_b.begin(), with_b.end()).first -
        with_a.begin());
    std::vector<llama_token> tokens(with_a.begin(), with_a.begin() + shared);
    int64_t pinned_tokens = 0;
    if (prefix.preload) {
      a.max_tokens = 1;
      KV_ASSIGN_OR_RETURN(PendingPtr pending, Prepare(std::move(a)));
      KV_RETURN_IF_ERROR(Run(std::move(pending), nullptr).status());
      pinned_tokens =
          std::min<int64_t>(kv_cache_.Pin(tokens).tokens, static_cast<int64_t>(tokens.size()));
    }
    KV_LOG(kInfo) << "prefix '" << prefix.name << "': " << tokens.size() << " tokens"
                  << (prefix.preload ? ", preloaded; " + std::to_string(pinned_tokens) + " pinned"
                                     : ", counted only");
    named_prefixes_.Add(prefix.name, std::move(tokens), prefix.preload, pinned_tokens);
  }
  return Status::Ok();
}

}  // namespace kvault::conversation
