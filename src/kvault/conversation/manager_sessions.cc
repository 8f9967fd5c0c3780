// ConversationManager: named sessions.
#include <chrono>

#include "kvault/base/log.h"
#include "kvault/base/status_macros.h"
#include "kvault/conversation/manager.h"
#include "kvault/engine/model.h"

namespace kvault::conversation {
namespace {

int64_t UnixSeconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

void ConversationManager::RepinSessions() {
  if (sessions_ == nullptr || kv_cache_.store() == nullptr) return;
  Result<std::vector<Session>> all = sessions_->List("", /*all_scopes=*/true);
  if (!all.ok()) {
    KV_LOG(kWarning) << "sessions: " << all.status().ToString();
    return;
  }
  for (const Session& session : *all) kv_cache_.store()->PinNames(session.blocks, +1);
}

Result<std::vector<llama_token>> ConversationManager::RenderTurns(
    const std::vector<engine::ChatMessage>& turns) const {
  if (turns.empty()) return std::vector<llama_token>{};
  KV_ASSIGN_OR_RETURN(std::string text, chat_template_.Apply(turns, false));
  return tokenizer_.Tokenize(text, {.add_special = true, .parse_special = true});
}

Status ConversationManager::Unpin(const Session& session) {
  if (kv_cache_.store() != nullptr) kv_cache_.store()->PinNames(session.blocks, -1);
  return Status::Ok();
}

Result<Session> ConversationManager::SaveSession(
    const std::string& scope, const std::string& conversation_id,
    const std::string& name) KV_NO_THREAD_SAFETY_ANALYSIS {
  if (sessions_ == nullptr || kv_cache_.store() == nullptr) {
    return FailedPreconditionError("sessions need the block store");
  }
  KV_RETURN_IF_ERROR(ValidateSessionName(name));
  std::shared_ptr<Conversation> conversation = registry_.Find(scope, conversation_id);
  if (!conversation) return NotFoundError("no conversation '" + conversation_id + "'");
  MutexLock lock(&conversation->turn_lock);  // waits for a running generation
  if (conversation->ended) return NotFoundError("no conversation '" + conversation_id + "'");
  Session session;
  session.name = name;
  session.scope = scope;
  session.conversation_id = conversation_id;
  session.created_unix = UnixSeconds();
  session.model = model_fingerprint_;
  session.turns = conversation->turns;
  KV_ASSIGN_OR_RETURN(session.tokens, RenderTurns(session.turns));
  store::BlockStore& store = *kv_cache_.store();
  session.blocks = store.Pin(session.tokens, +1);
  const store::Lookup lookup = store.Find(session.tokens);
  for (size_t i = 0; i < session.blocks.size() && i < lookup.blocks.size(); ++i) {
    session.kv_tokens += lookup.blocks[i].n_tokens;
    session.kv_bytes += static_cast<int64_t>(lookup.blocks[i].bytes);
  }
  Result<Session> previous = sessions_->Get(scope, name);
  Status written = sessions_->Put(session);
  if (!written.ok()) {
    store.PinNames(session.blocks, -1);
    return written;
  }
  if (previous.ok()) Unpin(*previous).IgnoreError();
  return session;
}

Status ConversationManager::LoadSession(const std::string& scope, const std::string& name,
                                        const std::string& conversation_id)
    KV_NO_THREAD_SAFETY_ANALYSIS {
  if (sessions_ == nullptr) return FailedPreconditionError("sessions need the block store");
  KV_ASSIGN_OR_RETURN(Session session, sessions_->Get(scope, name));
  if (session.model != model_fingerprint_) {
    KV_LOG(kInfo) << "sessions: '" << name << "' was saved with model " << session.model
                  << "; its turns load, its KV will be recomputed";
  }
  while (true) {
    std::shared_ptr<Conversation> conversation = registry_.GetOrCreate(scope, conversation_id);
    MutexLock lock(&conversation->turn_lock);
    if (conversation->ended) continue;  // ended while we waited: use its successor
    CommitTurns(*conversation, session.turns);
    conversation->Touch();
    return Status::Ok();
  }
}

Result<Session> ConversationManager::GetSession(const std::string& scope,
                                                const std::string& name) const {
  if (sessions_ == nullptr) return FailedPreconditionError("sessions need the block store");
  return sessions_->Get(scope, name);
}

Result<std::vector<Session>> ConversationManager::ListSessions(const std::string& scope) const {
  if (sessions_ == nullptr) return std::vector<Session>{};
  return sessions_->List(scope);
}

Status ConversationManager::ClearSession(const std::string& scope, const std::string& name) {
  if (sessions_ == nullptr) return FailedPreconditionError("sessions need the block store");
  KV_ASSIGN_OR_RETURN(Session session, sessions_->Get(scope, name));
  Session cleared = session;
  cleared.turns.clear();
  cleared.tokens.clear();
  cleared.blocks.clear();
  cleared.kv_tokens = 0;
  cleared.kv_bytes = 0;
  KV_RETURN_IF_ERROR(sessions_->Put(cleared));
  return Unpin(session);
}

Status ConversationManager::DeleteSession(const std::string& scope, const std::string& name) {
  if (sessions_ == nullptr) return FailedPreconditionError("sessions need the block store");
  KV_ASSIGN_OR_RETURN(Session session, sessions_->Get(scope, name));
  KV_RETURN_IF_ERROR(sessions_->Remove(scope, name));
  return Unpin(session);
}

}  // namespace kvault::conversation
