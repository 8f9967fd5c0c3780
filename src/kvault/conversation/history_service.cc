#include "kvault/conversation/history_service.h"

#include "kvault/base/status_macros.h"

namespace kvault::conversation {

HistoryService::HistoryService(Registry* registry, ConversationMemory* memory, Journal* journal,
                               const TextNormalizer* normalizer)
    : registry_(registry), memory_(memory), journal_(journal), normalizer_(normalizer) {}

Result<IngestResult> HistoryService::Append(const std::string& scope, const std::string& id,
                                            std::span<const engine::ChatMessage> messages,
                                            HistoryMode mode) {
  std::vector<engine::ChatMessage> normalized;
  if (normalizer_ != nullptr) {
    normalized.assign(messages.begin(), messages.end());
    normalizer_->ApplyTo(&normalized);
    messages = normalized;
  }
  TurnLock conversation = registry_->Lock(scope, id);
  conversation.conversation().Touch();
  Result<IngestResult> ingested =
      memory_->Ingest(conversation, messages, /*to_answer=*/false, mode);
  if (!ingested.ok()) registry_->RetireIfEmpty(conversation);  // created for a refused call
  return ingested;
}

Result<JournalEntry> HistoryService::Read(const std::string& scope, const std::string& id) {
  if (journal_ == nullptr) {
    return FailedPreconditionError("conversation history needs the journal (--data-dir)");
  }
  // Under the turn lock: the journal then holds the conversation between two requests.
  KV_ASSIGN_OR_RETURN(TurnLock conversation, registry_->LockExisting(scope, id));
  return journal_->Read(scope, id);
}

Result<std::vector<SearchResult>> HistoryService::Search(const std::string& scope,
                                                         const std::string& id,
                                                         const std::string& query, int k) {
  KV_ASSIGN_OR_RETURN(TurnLock conversation, registry_->LockExisting(scope, id));
  return memory_->Search(conversation, query, k);
}

}  // namespace kvault::conversation
