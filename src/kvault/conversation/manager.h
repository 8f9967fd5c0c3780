// conversation/manager.h: the life of a request (prepare, run, end, list). Admission (threads +
// queue, refusal beyond), the conversation's exclusive turn lock, the prompt, where its KV comes
// from (kv_cache.h), generation through the scheduler with stop strings, mid-generation recall, and
// the reply streamed to a sink on the request's own thread.
//
// A request runs in two phases so that an HTTP layer can answer errors before it commits to
// a streamed response: Prepare() does everything that can fail because of the request or
// load (admission, validation, tokenization, length); Run() generates.
//
// Conversation semantics.
//  - Without a conversation id the messages are the whole conversation (OpenAI's stateless
//    contract): the request gets a conversation of its own, forgotten afterwards (its KV
//    stays in the cache for any request that shares its prefix). Its prompt must fit the
//    window (context_length_exceeded otherwise), as with any OpenAI server.
//  - With a conversation id the server keeps the conversation's whole history (up to
//    --cache-size tokens): a client may send only its new messages or resend the whole
//    history (matched turn by turn; only what is new is processed). What a request does to
//    the history (append, delta, replace with the old turns archived, retry of an
//    unanswered turn) is history_plan.h's rule. The prompt is the window of that history
//    (memory/window_builder.h): system turns, the most recent turns, chunks recalled from
//    older ones, the new message.
//  - Validate, then commit: every check that can refuse a request (admission, pins,
//    max_tokens, roles, the message list, the window, the grammar) runs in Prepare before
//    anything is stored; a refused request leaves the conversation, its index and its
//    journal as they were. The new turns are then journaled (durable) before generation,
//    and the reply when it is complete.
//  - Mid-generation recall: when the reply contains a hedge ("if I recall", ...), the
//    phrase is held back, the sequence stops, chunks are recalled with the question and the
//    reply so far, and generation resumes after the text already sent, under a prompt that
//    holds them. The client sees one stream without the phrase; at most max_recalls times.
//
// Thread-safety: all methods may be called from any thread.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <llama.h>

#include "kvault/base/result.h"
#include "kvault/conversation/admission.h"
#include "kvault/conversation/conversation_memory.h"
#include "kvault/conversation/history_service.h"
#include "kvault/conversation/journal.h"
#include "kvault/conversation/kv_cache.h"
#include "kvault/conversation/named_prefixes.h"
#include "kvault/conversation/prompt_trie.h"
#include "kvault/conversation/recall_kv.h"
#include "kvault/conversation/registry.h"
#include "kvault/conversation/sequence_pool.h"
#include "kvault/conversation/session_service.h"
#include "kvault/conversation/session_store.h"
#include "kvault/conversation/text_normalizer.h"
#include "kvault/engine/chat_template.h"
#include "kvault/engine/sampler.h"
#include "kvault/engine/scheduler.h"
#include "kvault/engine/tokenizer.h"
#include "kvault/memory/hedge_detector.h"
#include "kvault/memory/knowledge_store.h"
#include "kvault/upstream/upstream_client.h"

namespace kvault::conversation {

struct ManagerParams {
  RestorePolicy restore = RestorePolicy::kAuto;
  int window = 4096;          // tokens one sequence may hold (prompt + reply)
  int max_generation = 4096;  // default and upper bound of max_tokens
  int threads = 4;
  int queue = 64;
  // How long a request may wait for a thread, and for another replica's lease on its
  // conversation (remote_journal.h), in all: 503 or 409 after that.
  std::chrono::milliseconds queue_timeout{120000};
  int n_sequences = 8;  // sequences of the llama context (>= threads)
  // Of them, how many pinned conversations may keep (`pin`), with n_sequences - max_pinned >=
  // threads; -1: the spare ones, n_sequences - threads.
  int max_pinned = -1;
  uint32_t n_stream = 1;  // streams of its KV cache (engine::Context::n_stream())
  // --shared-cache: API key scopes reuse each other's cached prefixes (kv_cache.h).
  bool share_cache_across_scopes = false;
  int64_t cache_size = 10000000;
  // Long-conversation memory (conversation_memory.h); window and cache_size come from above.
  int recall_budget = 1024;  // 0 = no recall
  int recall_k = 8;
  double recall_min_score = 1.0;
  double fog_alpha = 0.5;
  // Mid-generation recall: phrases that make the model's reply stop, recall and resume.
  std::vector<std::string> hedge_phrases = memory::HedgeDetector::DefaultPhrases();
  int max_recalls = 2;  // per response; 0 = off
  // Recalled chunks as KV (recall_kv.h); materialization needs a spare sequence of the
  // context for its imports (-1: none, every recalled chunk is then prefilled).
  RecallKvParams recall_kv;
  llama_seq_id recall_scratch_seq = -1;
  int recall_accumulators = 0;  // the sequences after the scratch one (RecallKv)
};

// What the manager uses and does not own; each may be null (that feature is then off).
class RemoteJournal;

struct ManagerDeps {
  store::BlockStore* store = nullptr;           // KV blocks off the device
  Journal* journal = nullptr;                   // conversations survive restarts
  SessionStore* sessions = nullptr;             // named sessions
  memory::ChunkIndex* index = nullptr;          // recall and search
  memory::KnowledgeStore* knowledge = nullptr;  // facts recalled like chunks
  StorageHealth* health = nullptr;              // hears of every write to the data folder
  // The shared Redis (remote_journal.h): leases, and conversations other replicas wrote.
  RemoteJournal* remote = nullptr;
  // --upstream: every round is generated by that server (upstream/upstream_client.h) from
  // the prompt the manager builds; the scheduler is then null and no KV is kept here.
  upstream::UpstreamClient* upstream = nullptr;
  // --normalize-rules: applied to every message's text before it is tokenized.
  const TextNormalizer* normalizer = nullptr;
};

// A prefix declared by name (zKV's preload form): `content` as a chat's system prompt, up to
// where the first user message begins.
struct NamedPrefix {
  std::string name;
  std::string content;
  bool preload = true;  // prefilled at start-up and pinned; else only counted
};

struct GenerateRequest {
  std::string scope;  // API key scope ("" without --api-key)
  std::string conversation_id = "default";
  bool explicit_conversation = false;
  std::vector<engine::ChatMessage> messages;  // chat
  std::optional<std::string> raw_prompt;      // completions (no template)
  engine::SamplingParams sampling;
  std::optional<int> max_tokens;
  std::vector<std::string> stop;
  bool ignore_eos = false;  // keep generating past end-of-generation tokens (benchmarks)
  // Keep the conversation's sequence on the device between requests (a dedicated slot):
  // never taken by another conversation, until the conversation ends.
  bool pin = false;
  bool recall = true;                             // pre- and mid-generation recall for this request
  HistoryMode history_mode = HistoryMode::kAuto;  // the request's `history` field
  bool return_prompt = false;  // put the prompt's text in the result (debugging, tests)
};

// One mid-generation recall, for the response's kvault extension and the log.
struct RecallEvent {
  std::string phrase;          // the hedge that triggered it
  std::vector<int64_t> turns;  // first turn of each recalled chunk
};

struct GenerateResult {
  std::string text;
  engine::FinishReason finish_reason = engine::FinishReason::kStop;
  int prompt_tokens = 0;
  int cached_tokens = 0;  // prompt tokens whose KV was reused, not recomputed
  PrefixSource cache_source = PrefixSource::kNone;  // where that KV came from
  int completion_tokens = 0;
  double queue_ms = 0;
  double first_token_ms = 0;  // request start to the first generated token; -1 if none
  double total_ms = 0;
  std::vector<double> text_times_ms;    // when each streamed piece of text was produced
  int recalled_chunks = 0;              // chunks recalled into the first prompt
  std::vector<RecallEvent> recalls;     // mid-generation recalls
  std::optional<IngestResult> history;  // what the request did to a kept conversation
  std::string prompt_text;  // the first prompt, special tokens shown (return_prompt only)
  // What recall did with the recalled chunks' KV, over every round (recall_kv.h).
  RecallKvCounts recall_kv;
  // For the analytics (analytics/analytics_store.h):
  std::string conversation_id;      // "" for a stateless request
  std::string scope;                // the API key's
  int64_t start_unix_ms = 0;        // when the request arrived
  int64_t trie_matched_tokens = 0;  // of the prompt, seen before (prompt_trie.h)
  std::string prefix;               // hex name of the prompt's first 128 tokens
};

// Receives the reply while it is generated, on the thread that called Run().
class ReplySink {
 public:
  virtual ~ReplySink() = default;
  // Returns false if the client is gone: the generation is then cancelled.
  virtual bool OnText(std::string_view text) = 0;
};

struct ConversationInfo {
  std::string conversation_id;
  int64_t tokens = 0;
  int64_t turns = 0;
  int64_t device_tokens = 0;
  int64_t index_entries = 0;
  int64_t dropped_turns = 0;  // beyond --cache-size, the oldest turns drop
  int64_t dropped_tokens = 0;
  double idle_seconds = 0;
};

struct ManagerStats {
  AdmissionStats admission;
  SequencePoolStats sequences;
  int64_t conversations = 0;
  int64_t total_conversations = 0;
  int64_t ended_conversations = 0;
  int64_t active_tokens = 0;
  int64_t history_bytes = 0;    // RAM of the token histories, all conversations
  int64_t index_entries = 0;    // chunks indexed, all conversations
  int64_t recalled_chunks = 0;  // pre-generation recall, chunks injected
  int64_t mid_generation_recalls = 0;
};

class ConversationManager {
 public:
  // The sequence pool of the scheduler's context is the manager's own. Conversations in the
  // journal are registered at once. `scheduler` is null with deps.upstream (`model` may then
  // be a vocabulary only).
  ConversationManager(const engine::Model& model, engine::Scheduler* scheduler,
                      const ManagerParams& params, ManagerDeps deps = {});
  ~ConversationManager();

  // A prepared request: it holds its admission ticket and its conversation's turn lock until
  // it is run or dropped.
  class Pending;
  struct PendingDeleter {
    void operator()(Pending* pending) const;
  };
  using PendingPtr = std::unique_ptr<Pending, PendingDeleter>;

  // Admission and everything that can fail before generation starts. ResourceExhausted
  // when threads and queue are full; InvalidArgument for a bad request or one that does not
  // fit the window; Unavailable when shutting down.
  Result<PendingPtr> Prepare(GenerateRequest request);
  // Generates. `sink` may be null (the text is only returned).
  Result<GenerateResult> Run(PendingPtr pending, ReplySink* sink);

  // Waits for a running request of the conversation, then frees everything it holds.
  // NotFound if the scope has no such conversation.
  Status End(const std::string& scope, const std::string& id);
  std::vector<ConversationInfo> List(const std::string& scope) const;
  // POST /v1/cache/clear: drops cached KV, never history. With `conversation_id` empty,
  // every stored block `scope` owns (KvCache::ClearScope) and the device sequences its
  // conversations hold; else that conversation's own blocks and its device sequence,
  // after a running request of it ends (NotFound if the scope has none). The next turn
  // recomputes what it needs.
  struct CacheCleared {
    store::Removed stored;
    int64_t device_sequences = 0;  // parked sequences emptied
    int64_t conversations = 0;
  };
  Result<CacheCleared> ClearCache(const std::string& scope, const std::string& conversation_id);
  ManagerStats stats() const;
  KvCacheStats kv_stats() const { return kv_cache_.stats(); }
  RecallKvStats recall_kv_stats() const { return recall_kv_.stats(); }
  const KvCache& kv_cache() const { return kv_cache_; }

  // History without generation (append, read, search) and named sessions: the objects that
  // own them, sharing this manager's registry, memory and KV cache.
  HistoryService& history() { return history_; }
  SessionService& sessions() { return sessions_; }
  // InvalidArgument (context_length_exceeded) for a message that surely cannot fit the
  // cache (--cache-size), judged by its bytes: appends call it before they tokenize.
  Status CheckMessagesFit(std::span<const engine::ChatMessage> messages) const;

  // Prefills each request once and pins its KV blocks (start-up warming of shared prefixes).
  Status Preload(std::vector<GenerateRequest> requests);
  // Declares named prefixes, prefilling and pinning those to preload; their use is counted
  // from then on (named_prefixes()).
  Status PreloadNamed(const std::vector<NamedPrefix>& prefixes);
  std::vector<NamedPrefixStats> named_prefixes() const { return named_prefixes_.Snapshot(); }
  // The prompts sent so far, as a trie of chunks (GET /v1/cache/tree).
  const PromptTrie& prompt_trie() const { return prompt_trie_; }
  const ManagerParams& params() const { return params_; }
  // Refuses new requests; waiting ones fail with Unavailable.
  void Shutdown();

 private:
  struct Generation;
  // The prompt of a stateless request or raw completion: all its messages, rendered whole.
  Result<std::vector<llama_token>> BuildPrompt(const GenerateRequest& request);
  // The prompt of a chat conversation: the history's window, with recall from its fog.
  Result<std::vector<llama_token>> BuildWindowPrompt(Pending& pending, const std::string& query,
                                                     const std::string& reply_so_far);
  Status Generate(Pending& pending, Generation& generation, ReplySink* sink);
  // The same round through ManagerDeps::upstream.
  Status GenerateUpstream(Pending& pending, Generation& generation, ReplySink* sink);
  // Tokens of the window a conversation's prompt leaves to the reply and the prompt start.
  int WindowReserve(const Pending& pending) const;
  // context_length_exceeded for text that cannot fit, judged by its bytes before it is
  // tokenized (a 50 MB prompt would hold a thread for seconds only to be refused).
  Status CheckTextFits(const GenerateRequest& request) const;
  // The fewest tokens `bytes` of text can be.
  int64_t MinTokens(size_t bytes) const;
  void RecoverJournal();
  // Under the conversation's lease: adopts what other replicas added to it (remote_journal.h).
  void ContinueFromRemote(TurnLock& conversation);
  // Takes the conversation's lease, waiting until `deadline` (409 after it), then adopts.
  Result<RemoteJournal::Lease> TakeRemote(TurnLock& conversation,
                                          std::chrono::steady_clock::time_point deadline);

  engine::Scheduler* const scheduler_;
  const ManagerParams params_;
  const ManagerDeps deps_;
  const engine::Tokenizer tokenizer_;
  const size_t max_piece_bytes_;  // tokenizer_.MaxPieceBytes()
  const engine::ChatTemplate chat_template_;
  ChatTurnRenderer renderer_;
  ConversationMemory memory_;
  Admission admission_;
  Registry registry_;
  SequencePool pool_;
  KvCache kv_cache_;
  RecallKv recall_kv_;
  HistoryService history_;
  SessionService sessions_;
  NamedPrefixes named_prefixes_;
  PromptTrie prompt_trie_;
  std::atomic<int64_t> ended_{0};
  std::atomic<int64_t> stateless_counter_{0};
  std::atomic<int64_t> recalled_chunks_{0};
  std::atomic<int64_t> mid_generation_recalls_{0};
};

}  // namespace kvault::conversation
