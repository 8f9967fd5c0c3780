// ConversationManager::Run: one response, in one or more generation rounds. A round decodes
// the prompt (its prefix restored by the KV cache) and streams the reply through stop
// strings and the hedge detector; a hedge ends the round, and the next one resumes after the
// text already sent, under a prompt with the chunks recalled for it (mid-generation recall).
#include <chrono>
#include <deque>

#include "kvault/base/hash.h"
#include "kvault/base/log.h"
#include "kvault/base/status_macros.h"
#include "kvault/conversation/manager_pending.h"
#include "kvault/engine/stop_matcher.h"

namespace kvault::conversation {
namespace {

using Clock = std::chrono::steady_clock;

// Requests that start with the same 128 tokens (a system prompt, a template's preamble)
// group together in the analytics.
std::string PrefixName(std::span<const llama_token> prompt) {
  const std::span<const llama_token> head = prompt.first(std::min<size_t>(prompt.size(), 128));
  return HashBytes128(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(head.data()),
                                               head.size_bytes()))
      .ToHex()
      .substr(0, 16);
}

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

// Detokenizes, applies stop strings and watches for hedges, on the scheduler thread. The
// request's thread reads `hedged` and `phrase` only after the round ended (the channel's
// lock orders the two).
struct ReplyFilter {
  ReplyFilter(const engine::Tokenizer* tokenizer, std::vector<std::string> stops,
              memory::HedgeDetector* hedge)
      : decoder(tokenizer), stops(std::move(stops)), hedge(hedge) {}

  // The text to send for `piece` (after stop strings); sets `hedged` on a hedge.
  std::string Pass(std::string piece) {
    if (hedged) return "";
    memory::HedgeOutput out = hedge->Push(piece);
    if (out.hit) {
      hedged = true;
      phrase = out.phrase;
    }
    return std::move(out.text);
  }

  engine::StreamDecoder decoder;
  engine::StopMatcher stops;
  memory::HedgeDetector* hedge;
  bool hedged = false;
  std::string phrase;
};

}  // namespace

Status ConversationManager::Generate(Pending& pending, Generation& g, ReplySink* sink) {
  if (deps_.upstream != nullptr) return GenerateUpstream(pending, g, sink);
  const TurnLock& conversation = pending.conversation;
  const std::vector<llama_token>& prompt = pending.prompt;
  KV_ASSIGN_OR_RETURN(
      PreparedPrefix prepared,
      kv_cache_.Prepare(g.lease, prompt, conversation.scope(), conversation->kv_tail));
  const size_t reused = prepared.n_tokens;
  KV_LOG(kDebug) << "conversation '" << conversation.id() << "': " << reused << " of "
                 << prompt.size() << " prompt tokens from " << PrefixSourceName(prepared.source)
                 << " in " << prepared.restore_ms << " ms";
  if (g.rounds++ == 0) {
    g.result.prompt_tokens = static_cast<int>(prompt.size());
    g.result.cached_tokens = static_cast<int>(reused);
    g.result.cache_source = prepared.source;
  }
  // Recalled chunks whose KV was kept go in at their places as the prompt reaches them.
  std::vector<engine::HeldRange> held;
  std::shared_ptr<RecallKvCounts> recall_counts;
  if (!pending.recall_runs.empty()) {
    KV_ASSIGN_OR_RETURN(
        RecallKv::Materialized materialized,
        recall_kv_.Materialize(g.lease.seq_id, reused, pending.recall_runs, *conversation->history,
                               kv_cache_.PartitionOf(conversation.scope()), conversation.key()));
    held = std::move(materialized.held);
    recall_counts = std::move(materialized.counts);
  } else if (pending.text_recalled_tokens > 0) {
    recall_counts = std::make_shared<RecallKvCounts>(
        recall_kv_.CountText(pending.text_recalled_chunks, pending.text_recalled_tokens));
  }
  auto channel = std::make_shared<ReplyChannel>();
  auto filter = std::make_shared<ReplyFilter>(&tokenizer_, pending.request.stop, &g.hedge);
  auto cancelled = std::make_shared<std::atomic<bool>>(false);
  engine::GenerationRequest request;
  request.seq_id = g.lease.seq_id;
  request.first_pos = static_cast<llama_pos>(reused);
  request.prompt.assign(prompt.begin() + static_cast<std::ptrdiff_t>(reused), prompt.end());
  request.held = std::move(held);
  request.sampling = pending.request.sampling;
  request.max_tokens = g.remaining_tokens;
  request.stop_at_end_of_generation = !pending.request.ignore_eos;
  request.cancelled = cancelled;
  request.on_token = [channel, filter](llama_token token) {
    engine::StopMatcher::Output out = filter->stops.Push(filter->decoder.Push(token));
    std::string text = filter->Pass(std::move(out.text));
    if (!text.empty()) channel->PushText(std::move(text));
    return out.stopped || filter->hedged ? engine::TokenAction::kStop
                                         : engine::TokenAction::kContinue;
  };
  request.on_done = [channel, filter](engine::GenerationOutcome outcome) {
    std::string rest =
        filter->Pass(filter->stops.Push(filter->decoder.Flush()).text + filter->stops.Flush());
    if (!filter->hedged) rest += filter->hedge->Flush();
    if (!rest.empty()) channel->PushText(std::move(rest));
    channel->PushDone(std::move(outcome));
  };
  const Clock::time_point submitted_at = Clock::now();
  KV_RETURN_IF_ERROR(scheduler_->Submit(std::move(request)));

  std::deque<ReplyChannel::Piece> pieces;
  engine::GenerationOutcome outcome;
  while (channel->Next(&pieces, &outcome)) {
    for (ReplyChannel::Piece& piece : pieces) {
      g.result.text += piece.text;
      g.result.text_times_ms.push_back(MillisBetween(pending.start, piece.at));
      if (sink != nullptr && !cancelled->load() && !sink->OnText(piece.text)) {
        cancelled->store(true);  // the client is gone: stop within one decode step
      }
    }
  }
  // Final now that the round is over (the scheduler's puts ran before on_done).
  if (recall_counts != nullptr) {
    if (!pending.recall_runs.empty()) recall_kv_.Record(*recall_counts);
    if (g.result.recall_kv.refused.empty()) g.result.recall_kv.refused = recall_counts->refused;
    g.result.recall_kv.Add(*recall_counts);
  }
  // What the sequence holds now: the reused prefix, then everything this round decoded.
  g.held.assign(prompt.begin(), prompt.begin() + static_cast<std::ptrdiff_t>(reused));
  g.held.insert(g.held.end(), outcome.decoded_tokens.begin(), outcome.decoded_tokens.end());
  g.lease.tokens = g.held;
  size_t prefilled = prompt.size() - reused;
  if (recall_counts != nullptr) {
    prefilled -= static_cast<size_t>(
        std::min<int64_t>(recall_counts->tokens_materialized, static_cast<int64_t>(prefilled)));
  }
  if (prefilled >= 32 && !outcome.generated_tokens.empty()) {
    kv_cache_.RecordPrefill(static_cast<int64_t>(prefilled),
                            (outcome.first_token_us - outcome.queue_us) / 1e6);
  }
  const double before_submit_ms = MillisBetween(pending.start, submitted_at);
  if (g.result.completion_tokens == 0 && !outcome.generated_tokens.empty()) {
    g.result.queue_ms = before_submit_ms + outcome.queue_us / 1000.0;
    g.result.first_token_ms = before_submit_ms + outcome.first_token_us / 1000.0;
  }
  g.result.completion_tokens += static_cast<int>(outcome.generated_tokens.size());
  g.remaining_tokens -= static_cast<int>(outcome.generated_tokens.size());
  g.reason = outcome.reason;
  g.hedged = filter->hedged && outcome.reason != engine::FinishReason::kCancelled;
  g.phrase = filter->phrase;
  return outcome.reason == engine::FinishReason::kError ? outcome.error : Status::Ok();
}

Result<GenerateResult> ConversationManager::Run(PendingPtr pending, ReplySink* sink) {
  TurnLock& conversation = pending->conversation;
  Generation g;
  const bool local = deps_.upstream == nullptr;  // else no sequence and no KV here
  if (local) {
    KV_ASSIGN_OR_RETURN(g.lease, pool_.Acquire(conversation.key()));
  }
  if (local && pending->request.pin) {
    // Prepare checked the cap, but a second new pin may have passed that check at the same
    // time: the pool decides under its lock, and the loser is refused (409) rather than run
    // unpinned. Its question stays stored, unanswered, for the client's retry.
    if (Status reserved = pool_.SetReserved(conversation.key(), true); !reserved.ok()) {
      pool_.Release(conversation.key(), std::move(g.lease.tokens));
      return reserved;
    }
  }
  const bool may_recall = pending->windowed && pending->request.recall && params_.max_recalls > 0;
  g.hedge = memory::HedgeDetector(may_recall ? params_.hedge_phrases : std::vector<std::string>{});
  g.remaining_tokens = pending->max_tokens;
  g.result.first_token_ms = -1;
  g.result.recalled_chunks = pending->recalled_chunks;
  if (pending->request.explicit_conversation) g.result.conversation_id = conversation.id();
  g.result.scope = conversation.scope();
  g.result.start_unix_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(
          std::chrono::system_clock::now().time_since_epoch())
          .count() -
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - pending->start).count();
  g.result.trie_matched_tokens = prompt_trie_.Record(conversation.scope(), pending->prompt);
  g.result.prefix = PrefixName(pending->prompt);
  // Kept for the response (return_prompt) and for counting the named prefixes it starts with.
  const std::vector<llama_token> first_prompt =
      pending->request.return_prompt || !named_prefixes_.empty() ? pending->prompt
                                                                 : std::vector<llama_token>{};
  Status status;
  while (true) {
    status = Generate(*pending, g, sink);
    if (!status.ok() || !g.hedged || g.remaining_tokens <= 0) break;
    // Mid-generation recall: search with the question and the reply so far, resume after it.
    Result<std::vector<llama_token>> prompt =
        BuildWindowPrompt(*pending, pending->query + "\n" + g.result.text, g.result.text);
    if (!prompt.ok()) {
      KV_LOG(kWarning) << "conversation '" << conversation.id()
                       << "': mid-generation recall failed: " << prompt.status().ToString();
      break;
    }
    pending->prompt = std::move(prompt).value();
    g.result.recalls.push_back({g.phrase, pending->recalled_turns});
    ++mid_generation_recalls_;
    KV_LOG(kInfo) << "conversation '" << conversation.id() << "': the reply hedged (\"" << g.phrase
                  << "\"); recalled " << pending->recalled_chunks << " chunks and resumed";
    if (static_cast<int>(g.result.recalls.size()) >= params_.max_recalls) {
      g.hedge = memory::HedgeDetector(std::vector<std::string>{});  // the last round runs free
    }
  }
  if (local && status.ok() && !g.held.empty()) {
    // The history spans the prompt held are kept as KV for later recalls (recall_kv.h).
    std::function<void(const kv::KvBlock&)> keep;
    if (pending->windowed && recall_kv_.active() && pending->request.explicit_conversation) {
      keep = [&](const kv::KvBlock& kv) {
        for (const memory::HistoryRun& run : pending->history_runs) {
          recall_kv_.Keep(kv, g.held, run, kv_cache_.PartitionOf(conversation.scope()),
                          conversation.key());
        }
      };
    }
    const CheckpointBlocks blocks =
        kv_cache_.Checkpoint(g.lease.seq_id, g.held, conversation->kv_tail,
                             pending->request.explicit_conversation, conversation.scope(), keep);
    conversation->kv_tail = blocks.tail;
    if (!(blocks.last == kv::BlockName{})) conversation->kv_last = blocks.last;
  }
  if (local) pool_.Release(conversation.key(), std::move(g.held));
  if (!status.ok()) return status;
  GenerateResult& result = g.result;
  if (pending->windowed) result.history = pending->history;
  if (pending->request.return_prompt) {
    result.prompt_text = tokenizer_.Detokenize(first_prompt, /*render_special=*/true);
  }
  named_prefixes_.Record(first_prompt, result.cached_tokens);
  result.finish_reason = g.hedged ? engine::FinishReason::kLength : g.reason;
  result.total_ms = MillisBetween(pending->start, Clock::now());
  conversation.conversation().Touch();
  ++conversation.conversation().n_requests;
  if (pending->windowed && result.finish_reason != engine::FinishReason::kCancelled) {
    // The reply is acknowledged only once stored (README: durability): if the journal
    // refuses it, the request fails, and the question stays stored, unanswered, for the
    // client's retry.
    Status stored = memory_.AppendReply(conversation, result.text);
    if (!stored.ok()) {
      KV_LOG(kWarning) << "conversation '" << conversation.id()
                       << "': reply not stored: " << stored.ToString();
      return stored.WithPrefix("the reply could not be stored, so it is not acknowledged");
    }
  } else if (!pending->windowed) {
    conversation.conversation().n_tokens =
        static_cast<int64_t>(pending->prompt.size()) + result.completion_tokens;
  }
  return result;
}

}  // namespace kvault::conversation
