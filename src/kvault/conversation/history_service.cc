#include "kvault/conversation/history_service.h"

#include "kvault/base/status_macros.h"

namespace kvault::conversation {

HistoryService::HistoryService(Registry* registry, ConversationMemory* memory, Journal* journal,
                               const TextNormalizer* normalizer, RemoteHook remote)
    : registry_(registry),
      memory_(memory),
      journal_(journal),
      normalizer_(normalizer),
      remote_(std::move(remote)) {}

Result<TurnLock> HistoryService::LockExisting(const std::string& scope, const std::string& id,
                                              RemoteJournal::Lease* lease) {
  Result<TurnLock> known = registry_->LockExisting(scope, id);
  if (!remote_ || (!known.ok() && known.status().code() != StatusCode::kNotFound)) return known;
  // Another replica may have recorded more of it, or all of it: looked for under its lease,
  // and not kept if it is nowhere.
  const bool was_known = known.ok();
  TurnLock conversation = was_known ? std::move(known).value() : registry_->Lock(scope, id);
  Result<RemoteJournal::Lease> taken = remote_(conversation);
  if (!taken.ok()) {
    if (!was_known) registry_->RetireIfEmpty(conversation);
    return taken.status();
  }
  *lease = std::move(taken).value();
  if (!was_known && !conversation->history) {
    registry_->RetireIfEmpty(conversation);
    return NotFoundError("no conversation '" + id + "'")
        .WithDetail(ErrorDetail::kConversationNotFound);
  }
  return conversation;
}

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
  RemoteJournal::Lease lease;  // released after the turn lock's work is done
  if (remote_) {
    Result<RemoteJournal::Lease> taken = remote_(conversation);
    if (!taken.ok()) {
      registry_->RetireIfEmpty(conversation);
      return taken.status();
    }
    lease = std::move(taken).value();
  }
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
  RemoteJournal::Lease lease;
  KV_ASSIGN_OR_RETURN(TurnLock conversation, LockExisting(scope, id, &lease));
  return journal_->Read(scope, id);
}

Result<std::vector<SearchResult>> HistoryService::Search(const std::string& scope,
                                                         const std::string& id,
                                                         const std::string& query, int k,
                                                         int64_t time) {
  RemoteJournal::Lease lease;
  KV_ASSIGN_OR_RETURN(TurnLock conversation, LockExisting(scope, id, &lease));
  return memory_->Search(conversation, query, k, time);
}

}  // namespace kvault::conversation
