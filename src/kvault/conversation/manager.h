// conversation/manager.h: the life of a request. Admission (threads + queue, refusal beyond),
// the conversation's exclusive turn lock, the prompt (the conversation's turns through the
// chat template, or a raw completion prompt), reuse of the KV the conversation's sequence
// still holds, generation through the scheduler with stop strings, and the reply streamed to
// a sink on the request's own thread.
//
// A request runs in two phases so that an HTTP layer can answer errors before it commits to
// a streamed response: Prepare() does everything that can fail because of the request or
// load (admission, validation, tokenization, length); Run() generates.
//
// Conversation semantics. Without an explicit conversation id the messages are the whole
// conversation (OpenAI's stateless contract): the request gets a conversation of its own,
// forgotten afterwards (its KV stays in the cache for any request that shares its prefix).
// With a conversation id, a request whose first message equals the stored first turn
// restates the history and replaces it; any other request appends its messages to the stored
// turns (clients that send only the new message).
//
// Thread-safety: all methods may be called from any thread.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <llama.h>

#include "kvault/base/result.h"
#include "kvault/conversation/admission.h"
#include "kvault/conversation/journal.h"
#include "kvault/conversation/kv_cache.h"
#include "kvault/conversation/registry.h"
#include "kvault/conversation/sequence_pool.h"
#include "kvault/conversation/session_store.h"
#include "kvault/engine/chat_template.h"
#include "kvault/engine/sampler.h"
#include "kvault/engine/scheduler.h"
#include "kvault/engine/tokenizer.h"

namespace kvault::conversation {

struct ManagerParams {
  RestorePolicy restore = RestorePolicy::kAuto;
  int window = 4096;          // tokens one sequence may hold (prompt + reply)
  int max_generation = 4096;  // default and upper bound of max_tokens
  int threads = 4;
  int queue = 64;
  int n_sequences = 8;  // sequences of the llama context (>= threads)
  int64_t cache_size = 10000000;
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
  std::vector<double> text_times_ms;  // when each streamed piece of text was produced
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
  double idle_seconds = 0;
};

struct ManagerStats {
  AdmissionStats admission;
  SequencePoolStats sequences;
  int64_t conversations = 0;
  int64_t total_conversations = 0;
  int64_t ended_conversations = 0;
  int64_t active_tokens = 0;
};

class ConversationManager {
 public:
  // The sequence pool of the scheduler's context is the manager's own; `store` (the block
  // store, may be null) and `journal` (may be null: nothing persists) outlive the manager.
  // Conversations in the journal are registered at once.
  ConversationManager(const engine::Model& model, engine::Scheduler* scheduler,
                      const ManagerParams& params, store::BlockStore* store = nullptr,
                      Journal* journal = nullptr, SessionStore* sessions = nullptr);
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
  ManagerStats stats() const;
  KvCacheStats kv_stats() const { return kv_cache_.stats(); }

  // --- Named sessions (session_store.h), all within the caller's scope ---------------------
  // Saves the conversation (waiting for a running request) as `name`, pinning the KV blocks
  // of its turns. NotFound for an unknown conversation; FailedPrecondition without a store.
  Result<Session> SaveSession(const std::string& scope, const std::string& conversation_id,
                              const std::string& name);
  // Makes `conversation_id` hold the session's turns; its next request restores their KV.
  Status LoadSession(const std::string& scope, const std::string& name,
                     const std::string& conversation_id);
  Result<Session> GetSession(const std::string& scope, const std::string& name) const;
  Result<std::vector<Session>> ListSessions(const std::string& scope) const;
  // Empties the session (turns and KV pins) but keeps its name.
  Status ClearSession(const std::string& scope, const std::string& name);
  Status DeleteSession(const std::string& scope, const std::string& name);

  // Prefills each request once and pins its KV blocks (start-up warming of shared prefixes).
  Status Preload(std::vector<GenerateRequest> requests);
  const ManagerParams& params() const { return params_; }
  // Refuses new requests; waiting ones fail with Unavailable.
  void Shutdown();

 private:
  Result<std::vector<llama_token>> BuildPrompt(const GenerateRequest& request,
                                               Conversation& conversation,
                                               std::vector<engine::ChatMessage>* turns);
  void RecoverJournal();
  void RepinSessions();
  Result<std::vector<llama_token>> RenderTurns(const std::vector<engine::ChatMessage>& turns) const;
  Status Unpin(const Session& session);
  // Stores the conversation's turns after a reply, and journals what changed.
  void CommitTurns(Conversation& conversation, std::vector<engine::ChatMessage> turns);

  engine::Scheduler* const scheduler_;
  const std::string model_fingerprint_;  // hex, recorded in sessions
  const ManagerParams params_;
  const engine::Tokenizer tokenizer_;
  const engine::ChatTemplate chat_template_;
  Admission admission_;
  Registry registry_;
  SequencePool pool_;
  KvCache kv_cache_;
  Journal* const journal_;
  SessionStore* const sessions_;
  std::atomic<int64_t> ended_{0};
  std::atomic<int64_t> stateless_counter_{0};
};

}  // namespace kvault::conversation
