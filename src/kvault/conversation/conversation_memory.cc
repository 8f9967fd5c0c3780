#include "kvault/conversation/conversation_memory.h"

#include <chrono>

#include "kvault/base/hash.h"
#include "kvault/base/log.h"
#include "kvault/base/status_macros.h"
#include "kvault/base/time_text.h"

namespace kvault::conversation {
namespace {

// Tokens of new turns beyond which ingestion reports its progress in the log (a client
// reconnecting with a long history to a server that does not know it).
constexpr int64_t kProgressTokens = 200000;

}  // namespace

uint64_t MessageDigest(const std::string& role, const std::string& content) {
  return Hash64(content, Hash64(role));
}

ConversationMemory::ConversationMemory(ChatTurnRenderer* renderer, memory::ChunkIndex* index,
                                       Journal* journal, memory::KnowledgeStore* knowledge,
                                       StorageHealth* health, MemoryParams params)
    : renderer_(renderer),
      index_(index),
      journal_(journal),
      health_(health),
      knowledge_(knowledge),
      params_(params) {}

Result<IngestPlan> ConversationMemory::Plan(const TurnLock& conversation,
                                            std::span<const engine::ChatMessage> messages,
                                            HistoryMode mode, bool to_answer) {
  const memory::TokenStore* store = conversation->history ? &*conversation->history : nullptr;
  std::vector<memory::TurnDigest> digests;
  for (const engine::ChatMessage& message : messages) {
    KV_ASSIGN_OR_RETURN(memory::Role role, memory::RoleFromName(message.role));
    digests.push_back({role, MessageDigest(message.role, message.content)});
  }
  IngestPlan plan;
  plan.to_answer = to_answer;
  plan.history = PlanHistory({store, digests, mode, conversation->unanswered_turn});
  // Render what is new: the only expensive step, and one that can refuse a message.
  const memory::TokenStore empty(params_.cache_size);
  const memory::TokenStore& capacity = store != nullptr ? *store : empty;
  int64_t reported = 0;
  const size_t first = plan.history.first_new_message;
  const int64_t now = UnixNow();
  for (size_t i = first; i < messages.size(); ++i) {
    JournalTurn turn{
        messages[i].role, messages[i].content, {}, messages[i].time > 0 ? messages[i].time : now};
    KV_ASSIGN_OR_RETURN(turn.tokens, renderer_->Render(digests[i].role, turn.content));
    KV_RETURN_IF_ERROR(capacity.CheckTurn(turn.tokens));
    plan.new_tokens += static_cast<int64_t>(turn.tokens.size());
    plan.new_turns.push_back(std::move(turn));
    if (plan.new_tokens - reported >= kProgressTokens) {
      reported = plan.new_tokens;
      KV_LOG(kInfo) << "conversation '" << conversation.id() << "': ingesting history, "
                    << (i + 1 - first) << " of " << (messages.size() - first) << " messages ("
                    << plan.new_tokens << " tokens) rendered";
    }
  }
  // The history the plan leads to: the kept turns, then the new ones. Its leading system
  // turns and its last turn are what every window must hold (window_builder.h).
  std::vector<std::pair<memory::Role, int64_t>> result_turns;
  if (store != nullptr) {
    for (const memory::Turn& turn : store->turns()) {
      if (turn.number >= plan.history.keep_turns) break;
      result_turns.push_back({turn.role, turn.n_tokens});
    }
  }
  for (size_t i = 0; i < plan.new_turns.size(); ++i) {
    result_turns.push_back(
        {digests[first + i].role, static_cast<int64_t>(plan.new_turns[i].tokens.size())});
  }
  if (to_answer) {
    if (result_turns.empty()) return InvalidArgumentError("'messages' has nothing to answer");
    const memory::Role last = result_turns.back().first;
    if (last == memory::Role::kAssistant || last == memory::Role::kSystem) {
      return InvalidArgumentError("the conversation ends with a " +
                                  std::string(memory::RoleName(last)) +
                                  " message; send a user message to answer");
    }
  }
  if (!result_turns.empty()) {
    plan.last_turn_tokens = result_turns.back().second;
    for (size_t i = 0; i + 1 < result_turns.size(); ++i) {
      if (result_turns[i].first != memory::Role::kSystem) break;
      plan.system_tokens += result_turns[i].second;
    }
  }
  return plan;
}

Result<IngestResult> ConversationMemory::Commit(TurnLock& conversation, IngestPlan plan) {
  if (!conversation->history) conversation->history.emplace(params_.cache_size);
  memory::TokenStore& store = *conversation->history;
  const HistoryPlan& history = plan.history;
  IngestResult result;
  result.action = history.action;
  result.reason = history.reason;
  result.new_turns = static_cast<int64_t>(plan.new_turns.size());
  result.new_tokens = plan.new_tokens;
  if (history.replaces()) {
    result.replaced = true;
    result.from_turn = history.keep_turns;
    result.archived_turns = history.known_turns - history.keep_turns;
    result.archived_branch = BranchName(conversation->n_branches + 1);
  }
  // A chat request's new last turn waits for its reply until AppendReply; bulk ingestion
  // clears the mark once anything comes after (or replaces) the unanswered turn.
  int64_t unanswered = conversation->unanswered_turn;
  if (history.replaces() || !plan.new_turns.empty()) unanswered = -1;
  if (plan.to_answer) {
    unanswered = history.keep_turns + static_cast<int64_t>(plan.new_turns.size()) - 1;
  }
  const JournalState state{conversation->kv_tail,
                           history.replaces() ? -1 : conversation->clear_zone.first_turn,
                           unanswered};
  if (!history.replaces() && plan.new_turns.empty()) {
    // Nothing new to store; only a changed unanswered mark is worth a record.
    if (unanswered != conversation->unanswered_turn) {
      KV_RETURN_IF_ERROR(Record(conversation, static_cast<size_t>(history.known_turns), {}, state));
      conversation->unanswered_turn = unanswered;
    }
    return result;
  }
  if (history.replaces()) {
    // Journal first: the record that drops the turns from the live history is the one that
    // archives them (journal.h), and once written the change survives a crash.
    KV_RETURN_IF_ERROR(
        Record(conversation, static_cast<size_t>(history.keep_turns), plan.new_turns, state));
    // The index reads the removed chunks' text from the store: before the truncation.
    if (index_ != nullptr) {
      index_->RemoveConversation(conversation.key(), &store).status().IgnoreError();
    }
    KV_RETURN_IF_ERROR(store.TruncateTurns(history.keep_turns));
    conversation->clear_zone = {};
    ++conversation->n_branches;
    KV_LOG(kInfo) << "conversation '" << conversation.id() << "': history replaced from turn "
                  << history.keep_turns << " (" << history.reason << "); " << result.archived_turns
                  << " turns archived as " << result.archived_branch;
  } else {
    KV_RETURN_IF_ERROR(
        Record(conversation, static_cast<size_t>(history.known_turns), plan.new_turns, state));
  }
  conversation->unanswered_turn = unanswered;
  // A replaced history is indexed again from its start (its old entries are gone).
  const int64_t index_from = history.replaces() ? 0 : store.end_pos();
  KV_RETURN_IF_ERROR(AppendTurns(conversation, plan.new_turns));
  KV_RETURN_IF_ERROR(IndexFrom(conversation, index_from));
  UpdateCounts(conversation);
  if (plan.new_tokens >= kProgressTokens) {
    KV_LOG(kInfo) << "conversation '" << conversation.id() << "': ingested "
                  << plan.new_turns.size() << " messages, " << plan.new_tokens << " tokens";
  }
  return result;
}

Result<IngestResult> ConversationMemory::Ingest(TurnLock& conversation,
                                                std::span<const engine::ChatMessage> messages,
                                                bool to_answer, HistoryMode mode) {
  KV_ASSIGN_OR_RETURN(IngestPlan plan, Plan(conversation, messages, mode, to_answer));
  return Commit(conversation, std::move(plan));
}

Status ConversationMemory::Record(TurnLock& conversation, size_t kept,
                                  std::span<const JournalTurn> turns, const JournalState& state) {
  if (journal_ == nullptr) return Status::Ok();
  Status recorded = journal_->Record(conversation.scope(), conversation.id(), kept, turns, state);
  return health_ != nullptr ? health_->Note(StorageArea::kJournal, std::move(recorded)) : recorded;
}

Status ConversationMemory::AppendTurns(TurnLock& conversation, std::span<const JournalTurn> turns) {
  memory::TokenStore& store = *conversation->history;
  for (const JournalTurn& turn : turns) {
    KV_ASSIGN_OR_RETURN(memory::Role role, memory::RoleFromName(turn.role));
    const int64_t keep_from = store.BeginPosAfterAppend(static_cast<int64_t>(turn.tokens.size()));
    if (index_ != nullptr && keep_from > store.begin_pos()) {
      // The index reads the dropped chunks' text from the store: before the append.
      index_->DropBefore(conversation.key(), keep_from, store).status().IgnoreError();
    }
    KV_RETURN_IF_ERROR(
        store.Append(role, turn.tokens, MessageDigest(turn.role, turn.content), turn.time)
            .status());
  }
  return Status::Ok();
}

Status ConversationMemory::IndexFrom(TurnLock& conversation, int64_t first_pos) {
  if (index_ == nullptr) return Status::Ok();
  if (conversation->index_behind) {
    const Result<int64_t> indexed = index_->IndexedEnd(conversation.key());
    if (indexed.ok()) first_pos = std::min(first_pos, *indexed);
  }
  const memory::TokenStore& store = *conversation->history;
  std::vector<std::vector<int32_t>> tokens;
  std::vector<memory::IndexTurn> turns;
  for (const memory::Turn& turn : store.turns()) {
    if (turn.end_pos() <= first_pos) continue;
    tokens.push_back(store.TurnTokens(turn));
  }
  size_t i = 0;
  for (const memory::Turn& turn : store.turns()) {
    if (turn.end_pos() <= first_pos) continue;
    turns.push_back({turn.number, turn.first_pos, tokens[i++]});
  }
  if (turns.empty()) return Status::Ok();
  Status indexed = index_->AppendTurns(conversation.key(), turns);
  if (health_ != nullptr) indexed = health_->Note(StorageArea::kIndex, std::move(indexed));
  if (!indexed.ok() && IsStorageFailure(indexed)) {
    // The turns are in the journal and the token store: search misses them until a later
    // write catches the index up, but the turn itself stands (failing it now would leave a
    // stored turn behind an error).
    conversation->index_behind = true;
    return Status::Ok();
  }
  if (indexed.ok()) conversation->index_behind = false;
  return indexed;
}

memory::WindowParams ConversationMemory::WindowParamsFor(int generation_budget) const {
  memory::WindowParams window_params;
  window_params.window = params_.window;
  window_params.generation_budget = generation_budget;
  window_params.recall_budget = std::min(params_.recall_budget, params_.window / 4);
  window_params.min_score = params_.min_score;
  window_params.token_recall = params_.token_recall;
  return window_params;
}

Status ConversationMemory::CheckWindow(const IngestPlan& plan, int generation_budget) const {
  const int64_t fixed = plan.system_tokens + plan.last_turn_tokens +
                        static_cast<int64_t>(renderer_->GenerationPrompt().size());
  return memory::WindowBuilder(WindowParamsFor(generation_budget)).CheckFits(fixed);
}

Result<memory::Window> ConversationMemory::BuildWindow(TurnLock& conversation,
                                                       const std::string& query,
                                                       int generation_budget, bool recall) {
  memory::TokenStore& store = *conversation->history;
  const memory::WindowParams window_params = WindowParamsFor(generation_budget);
  memory::WindowInputs inputs;
  inputs.store = &store;
  inputs.renderer = renderer_;
  inputs.detokenize = [this](std::span<const int32_t> tokens) { return renderer_->Text(tokens); };
  // Facts of the knowledge store that match the question are recalled like chunks.
  if (recall && knowledge_ != nullptr && window_params.recall_budget > 0) {
    Result<std::vector<memory::Fact>> facts =
        knowledge_->Search(conversation.scope(), query, params_.recall_facts);
    for (const memory::Fact& fact : facts.value_or(std::vector<memory::Fact>{})) {
      inputs.facts.push_back({"[known fact: " + fact.topic + " / " + fact.key + "]", fact.value});
    }
  }
  // Recall reserves its budget in every prompt, so it starts only once the history no longer
  // fits (or facts are to be recalled): a short conversation keeps the whole window.
  const int64_t fits = params_.window - generation_budget -
                       static_cast<int64_t>(renderer_->GenerationPrompt().size());
  if (recall && window_params.recall_budget > 0 &&
      (!inputs.facts.empty() || (index_ != nullptr && store.n_tokens() > fits))) {
    const std::string key = conversation.key();
    // Called by Build below, while the conversation (and its store) is locked.
    inputs.recall = [this, key, query,
                     &store](int64_t fog_end) -> Result<std::vector<memory::ChunkHit>> {
      if (index_ == nullptr) return std::vector<memory::ChunkHit>{};
      memory::ChunkSearchParams search;
      search.k = params_.recall_k;
      search.end_pos_limit = fog_end;
      search.fog_alpha = params_.fog_alpha;
      search.cache_size = params_.cache_size;
      search.store = &store;  // the second search step reads the best hits' text
      return index_->Search(key, query, search);
    };
  }
  return memory::WindowBuilder(window_params).Build(inputs, &conversation->clear_zone);
}

Status ConversationMemory::AppendReply(TurnLock& conversation, const std::string& text) {
  memory::TokenStore& store = *conversation->history;
  // A reply is dated with its question: a replayed or imported conversation, whose messages
  // carry their own past times, keeps its timeline (a live one differs by seconds).
  const int64_t asked = store.turns().empty() ? 0 : store.turns().back().time;
  JournalTurn turn{"assistant", text, {}, asked != 0 ? asked : UnixNow()};
  KV_ASSIGN_OR_RETURN(turn.tokens, renderer_->Render(memory::Role::kAssistant, text));
  KV_RETURN_IF_ERROR(store.CheckTurn(turn.tokens));
  const auto known = static_cast<size_t>(TurnCount(store));
  const JournalState state{conversation->kv_tail, conversation->clear_zone.first_turn, -1};
  KV_RETURN_IF_ERROR(Record(conversation, known, {&turn, 1}, state));  // durable: acknowledged
  conversation->unanswered_turn = -1;
  const int64_t index_from = store.end_pos();
  KV_RETURN_IF_ERROR(AppendTurns(conversation, {&turn, 1}));
  KV_RETURN_IF_ERROR(IndexFrom(conversation, index_from));
  UpdateCounts(conversation);
  return Status::Ok();
}

Result<std::vector<SearchResult>> ConversationMemory::Search(const TurnLock& conversation,
                                                             const std::string& query, int k,
                                                             int64_t time) {
  std::vector<SearchResult> results;
  if (index_ == nullptr || !conversation->history) return results;
  memory::ChunkSearchParams search;
  search.k = k;
  search.fog_alpha = params_.fog_alpha;
  search.cache_size = params_.cache_size;
  search.store = &*conversation->history;
  search.now = time;
  KV_ASSIGN_OR_RETURN(std::vector<memory::ChunkHit> hits,
                      index_->Search(conversation.key(), query, search));
  for (const memory::ChunkHit& hit : hits) {
    Result<std::vector<int32_t>> tokens =
        conversation->history->Tokens(hit.first_pos, hit.n_tokens);
    if (!tokens.ok()) continue;  // dropped meanwhile
    const memory::Turn* first = conversation->history->FindTurn(hit.first_turn);
    results.push_back({hit.score, renderer_->Text(*tokens), hit.first_turn, hit.last_turn,
                       hit.first_pos, hit.n_tokens, first != nullptr ? first->time : 0});
  }
  return results;
}

void ConversationMemory::Forget(TurnLock& conversation) {
  if (index_ == nullptr) return;
  const memory::TokenStore* store = conversation->history ? &*conversation->history : nullptr;
  Result<memory::ChunkDropResult> dropped = index_->RemoveConversation(conversation.key(), store);
  if (!dropped.ok()) {
    KV_LOG(kWarning) << "index: " << dropped.status().ToString();
  }
}

Status ConversationMemory::Recover(TurnLock& conversation, JournalEntry entry) {
  conversation->history.emplace(params_.cache_size);
  memory::TokenStore& store = *conversation->history;
  for (const JournalTurn& turn : entry.turns) {
    KV_ASSIGN_OR_RETURN(memory::Role role, memory::RoleFromName(turn.role));
    KV_RETURN_IF_ERROR(
        store.Append(role, turn.tokens, MessageDigest(turn.role, turn.content), turn.time)
            .status());
  }
  conversation->kv_tail = entry.tail;
  conversation->clear_zone.first_turn = entry.clear_first_turn;
  conversation->unanswered_turn = entry.unanswered_turn;
  conversation->n_branches = static_cast<int64_t>(entry.branches.size());
  if (index_ != nullptr) {
    KV_ASSIGN_OR_RETURN(int64_t indexed, index_->IndexedEnd(conversation.key()));
    KV_RETURN_IF_ERROR(IndexFrom(conversation, indexed));
  }
  UpdateCounts(conversation);
  return Status::Ok();
}

void ConversationMemory::UpdateCounts(TurnLock& turn) {
  const memory::TokenStore& store = *turn->history;
  Conversation& conversation = turn.conversation();
  conversation.n_turns = TurnCount(store);
  conversation.n_tokens = store.n_tokens();
  conversation.history_bytes = static_cast<int64_t>(store.MemoryBytes());
  conversation.n_dropped_turns = store.n_dropped_turns();
  conversation.n_dropped_tokens = store.n_dropped_tokens();
  if (index_ != nullptr) {
    conversation.n_chunks = index_->CountChunks(conversation.key()).value_or(0);
  }
}

}  // namespace kvault::conversation
