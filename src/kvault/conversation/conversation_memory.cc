#include "kvault/conversation/conversation_memory.h"

#include <chrono>

#include "kvault/base/hash.h"
#include "kvault/base/log.h"
#include "kvault/base/status_macros.h"

namespace kvault::conversation {
namespace {

// Turns the conversation has had (numbers 0 .. n-1), dropped ones included.
int64_t TurnCount(const memory::TokenStore& store) {
  return store.turns().empty() ? store.n_dropped_turns() : store.turns().back().number + 1;
}

// Tokens of new turns beyond which ingestion reports its progress in the log (a client
// reconnecting with a long history to a server that does not know it).
constexpr int64_t kProgressTokens = 200000;

}  // namespace

uint64_t MessageDigest(const std::string& role, const std::string& content) {
  return Hash64(content, Hash64(role));
}

ConversationMemory::ConversationMemory(ChatTurnRenderer* renderer, memory::ChunkIndex* index,
                                       Journal* journal, memory::KnowledgeStore* knowledge,
                                       MemoryParams params)
    : renderer_(renderer),
      index_(index),
      journal_(journal),
      knowledge_(knowledge),
      params_(params) {}

Result<IngestResult> ConversationMemory::Ingest(Conversation& conversation,
                                                std::span<const engine::ChatMessage> messages,
                                                bool to_answer) KV_NO_THREAD_SAFETY_ANALYSIS {
  if (!conversation.history) conversation.history.emplace(params_.cache_size);
  memory::TokenStore& store = *conversation.history;
  std::vector<memory::TurnDigest> digests;
  for (const engine::ChatMessage& message : messages) {
    KV_ASSIGN_OR_RETURN(memory::Role role, memory::RoleFromName(message.role));
    digests.push_back({role, MessageDigest(message.role, message.content)});
  }
  const auto known = static_cast<size_t>(TurnCount(store));
  const size_t matched = store.CountMatchingDigests(digests);
  IngestResult result;
  size_t first_new = matched;
  if (matched < known && !(matched == 0 && !messages.empty() && messages[0].role != "system")) {
    result.replaced = true;  // the client's history diverges from ours at turn `matched`
  } else if (matched < known) {
    first_new = 0;  // a client that sends only its new messages
  }
  if (result.replaced) {
    memory::TokenStore kept(params_.cache_size);
    for (const memory::Turn& turn : store.turns()) {
      if (turn.number >= static_cast<int64_t>(matched)) break;
      KV_RETURN_IF_ERROR(kept.Append(turn.role, store.TurnTokens(turn), turn.text_hash).status());
    }
    if (index_ != nullptr)
      index_->RemoveConversation(conversation.key(), &store).status().IgnoreError();
    store = std::move(kept);
    conversation.clear_zone = {};
    KV_RETURN_IF_ERROR(IndexFrom(conversation, 0));
  }
  std::vector<JournalTurn> turns;
  int64_t n_tokens = 0, reported = 0;
  const auto start = std::chrono::steady_clock::now();
  for (size_t i = first_new; i < messages.size(); ++i) {
    JournalTurn turn{messages[i].role, messages[i].content, {}};
    KV_ASSIGN_OR_RETURN(memory::Role role, memory::RoleFromName(turn.role));
    KV_ASSIGN_OR_RETURN(turn.tokens, renderer_->Render(role, turn.content));
    n_tokens += static_cast<int64_t>(turn.tokens.size());
    turns.push_back(std::move(turn));
    if (n_tokens - reported >= kProgressTokens) {
      reported = n_tokens;
      KV_LOG(kInfo) << "conversation '" << conversation.id() << "': ingesting history, "
                    << (i + 1 - first_new) << " of " << (messages.size() - first_new)
                    << " messages (" << n_tokens << " tokens) rendered";
    }
  }
  KV_RETURN_IF_ERROR(AppendTurns(conversation, turns, result.replaced ? matched : known));
  if (reported > 0) {
    KV_LOG(kInfo) << "conversation '" << conversation.id() << "': ingested " << turns.size()
                  << " messages, " << n_tokens << " tokens, in "
                  << std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()
                  << " s";
  }
  result.new_turns = static_cast<int64_t>(turns.size());
  result.new_tokens = n_tokens;
  if (to_answer) {
    if (store.turns().empty()) return InvalidArgumentError("'messages' has nothing to answer");
    const memory::Role last = store.turns().back().role;
    if (last == memory::Role::kAssistant || last == memory::Role::kSystem) {
      return InvalidArgumentError("the conversation ends with a " +
                                  std::string(memory::RoleName(last)) +
                                  " message; send a user message to answer");
    }
  }
  return result;
}

Status ConversationMemory::AppendTurns(Conversation& conversation,
                                       std::span<const JournalTurn> turns,
                                       size_t journal_kept) KV_NO_THREAD_SAFETY_ANALYSIS {
  memory::TokenStore& store = *conversation.history;
  const int64_t first_pos = store.end_pos();
  for (const JournalTurn& turn : turns) {
    KV_ASSIGN_OR_RETURN(memory::Role role, memory::RoleFromName(turn.role));
    const int64_t keep_from = store.BeginPosAfterAppend(static_cast<int64_t>(turn.tokens.size()));
    if (index_ != nullptr && keep_from > store.begin_pos()) {
      // The index reads the dropped chunks' text from the store: before the append.
      index_->DropBefore(conversation.key(), keep_from, store).status().IgnoreError();
    }
    KV_RETURN_IF_ERROR(
        store.Append(role, turn.tokens, MessageDigest(turn.role, turn.content)).status());
  }
  KV_RETURN_IF_ERROR(IndexFrom(conversation, first_pos));
  UpdateCounts(conversation);
  if (journal_ == nullptr) return Status::Ok();
  return journal_->Record(conversation.scope(), conversation.id(), journal_kept, turns,
                          conversation.kv_tail, conversation.clear_zone.first_turn);
}

Status ConversationMemory::IndexFrom(Conversation& conversation,
                                     int64_t first_pos) KV_NO_THREAD_SAFETY_ANALYSIS {
  if (index_ == nullptr) return Status::Ok();
  const memory::TokenStore& store = *conversation.history;
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
  return index_->AppendTurns(conversation.key(), turns);
}

Result<memory::Window> ConversationMemory::BuildWindow(Conversation& conversation,
                                                       const std::string& query,
                                                       int generation_budget,
                                                       bool recall) KV_NO_THREAD_SAFETY_ANALYSIS {
  memory::TokenStore& store = *conversation.history;
  memory::WindowParams window_params;
  window_params.window = params_.window;
  window_params.generation_budget = generation_budget;
  window_params.recall_budget = std::min(params_.recall_budget, params_.window / 4);
  window_params.min_score = params_.min_score;
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
    inputs.recall = [this, key, query](int64_t fog_end) -> Result<std::vector<memory::ChunkHit>> {
      if (index_ == nullptr) return std::vector<memory::ChunkHit>{};
      memory::ChunkSearchParams search;
      search.k = params_.recall_k;
      search.end_pos_limit = fog_end;
      search.fog_alpha = params_.fog_alpha;
      search.cache_size = params_.cache_size;
      return index_->Search(key, query, search);
    };
  }
  return memory::WindowBuilder(window_params).Build(inputs, &conversation.clear_zone);
}

Status ConversationMemory::AppendReply(Conversation& conversation,
                                       const std::string& text) KV_NO_THREAD_SAFETY_ANALYSIS {
  JournalTurn turn{"assistant", text, {}};
  KV_ASSIGN_OR_RETURN(turn.tokens, renderer_->Render(memory::Role::kAssistant, text));
  const auto known = static_cast<size_t>(TurnCount(*conversation.history));
  return AppendTurns(conversation, {&turn, 1}, known);
}

Result<std::vector<SearchResult>> ConversationMemory::Search(Conversation& conversation,
                                                             const std::string& query,
                                                             int k) KV_NO_THREAD_SAFETY_ANALYSIS {
  std::vector<SearchResult> results;
  if (index_ == nullptr || !conversation.history) return results;
  memory::ChunkSearchParams search;
  search.k = k;
  search.fog_alpha = params_.fog_alpha;
  search.cache_size = params_.cache_size;
  KV_ASSIGN_OR_RETURN(std::vector<memory::ChunkHit> hits,
                      index_->Search(conversation.key(), query, search));
  for (const memory::ChunkHit& hit : hits) {
    Result<std::vector<int32_t>> tokens = conversation.history->Tokens(hit.first_pos, hit.n_tokens);
    if (!tokens.ok()) continue;  // dropped meanwhile
    results.push_back({hit.score, renderer_->Text(*tokens), hit.first_turn, hit.last_turn,
                       hit.first_pos, hit.n_tokens});
  }
  return results;
}

void ConversationMemory::Forget(Conversation& conversation) KV_NO_THREAD_SAFETY_ANALYSIS {
  if (index_ == nullptr) return;
  const memory::TokenStore* store = conversation.history ? &*conversation.history : nullptr;
  Result<memory::ChunkDropResult> dropped = index_->RemoveConversation(conversation.key(), store);
  if (!dropped.ok()) {
    KV_LOG(kWarning) << "index: " << dropped.status().ToString();
  }
}

Status ConversationMemory::Recover(Conversation& conversation,
                                   JournalEntry entry) KV_NO_THREAD_SAFETY_ANALYSIS {
  conversation.history.emplace(params_.cache_size);
  memory::TokenStore& store = *conversation.history;
  for (const JournalTurn& turn : entry.turns) {
    KV_ASSIGN_OR_RETURN(memory::Role role, memory::RoleFromName(turn.role));
    KV_RETURN_IF_ERROR(
        store.Append(role, turn.tokens, MessageDigest(turn.role, turn.content)).status());
  }
  conversation.kv_tail = entry.tail;
  conversation.clear_zone.first_turn = entry.clear_first_turn;
  if (index_ != nullptr) {
    KV_ASSIGN_OR_RETURN(int64_t indexed, index_->IndexedEnd(conversation.key()));
    KV_RETURN_IF_ERROR(IndexFrom(conversation, indexed));
  }
  UpdateCounts(conversation);
  return Status::Ok();
}

void ConversationMemory::UpdateCounts(Conversation& conversation) KV_NO_THREAD_SAFETY_ANALYSIS {
  const memory::TokenStore& store = *conversation.history;
  conversation.n_turns = TurnCount(store);
  conversation.n_tokens = store.n_tokens();
  conversation.n_dropped_turns = store.n_dropped_turns();
  conversation.n_dropped_tokens = store.n_dropped_tokens();
  if (index_ != nullptr) {
    conversation.n_chunks = index_->CountChunks(conversation.key()).value_or(0);
  }
}

}  // namespace kvault::conversation
