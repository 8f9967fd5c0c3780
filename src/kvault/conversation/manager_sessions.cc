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
  if (deps_.sessions == nullptr || kv_cache_.store() == nullptr) return;
  Result<std::vector<Session>> all = deps_.sessions->List("", /*all_scopes=*/true);
  if (!all.ok()) {
    KV_LOG(kWarning) << "sessions: " << all.status().ToString();
    return;
  }
  for (const Session& session : *all) kv_cache_.store()->PinNames(session.blocks, +1);
}

Status ConversationManager::Unpin(const Session& session) {
  if (kv_cache_.store() != nullptr) kv_cache_.store()->PinNames(session.blocks, -1);
  return Status::Ok();
}

Result<Session> ConversationManager::SaveSession(
    const std::string& scope, const std::string& conversation_id,
    const std::string& name) KV_NO_THREAD_SAFETY_ANALYSIS {
  if (deps_.sessions == nullptr || deps_.journal == nullptr || kv_cache_.store() == nullptr) {
    return FailedPreconditionError("sessions need the block store and the journal");
  }
  KV_RETURN_IF_ERROR(ValidateSessionName(name));
  KV_ASSIGN_OR_RETURN(std::shared_ptr<Conversation> conversation,
                      LockExisting(scope, conversation_id));
  MutexLock lock(&conversation->turn_lock, std::adopt_lock);
  if (!conversation->history) {
    return FailedPreconditionError("conversation '" + conversation_id + "' has no chat history");
  }
  Session session;
  session.name = name;
  session.scope = scope;
  session.conversation_id = conversation_id;
  session.created_unix = UnixSeconds();
  session.model = model_fingerprint_;
  KV_ASSIGN_OR_RETURN(JournalEntry entry, deps_.journal->Read(scope, conversation_id));
  for (JournalTurn& turn : entry.turns) {
    session.turns.push_back({std::move(turn.role), std::move(turn.content)});
  }
  // The tokens a prompt of this history starts with: their cached KV is what loading restores.
  const memory::TokenStore& history = *conversation->history;
  session.tokens = renderer_.prompt_start();
  KV_ASSIGN_OR_RETURN(std::vector<int32_t> tokens,
                      history.Tokens(history.begin_pos(), history.n_tokens()));
  session.tokens.insert(session.tokens.end(), tokens.begin(), tokens.end());
  store::BlockStore& store = *kv_cache_.store();
  session.blocks = store.Pin(session.tokens, +1);
  const store::Lookup lookup = store.Find(session.tokens);
  for (size_t i = 0; i < session.blocks.size() && i < lookup.blocks.size(); ++i) {
    session.kv_tokens += lookup.blocks[i].n_tokens;
    session.kv_bytes += static_cast<int64_t>(lookup.blocks[i].bytes);
  }
  Result<Session> previous = deps_.sessions->Get(scope, name);
  Status written = deps_.sessions->Put(session);
  if (!written.ok()) {
    store.PinNames(session.blocks, -1);
    return written;
  }
  if (previous.ok()) Unpin(*previous).IgnoreError();
  return session;
}

Status ConversationManager::LoadSession(const std::string& scope, const std::string& name,
                                        const std::string& conversation_id) {
  if (deps_.sessions == nullptr) return FailedPreconditionError("sessions are not enabled");
  KV_ASSIGN_OR_RETURN(Session session, deps_.sessions->Get(scope, name));
  if (session.model != model_fingerprint_) {
    KV_LOG(kInfo) << "sessions: '" << name << "' was saved with model " << session.model
                  << "; its turns load, its KV will be recomputed";
  }
  return Append(scope, conversation_id, session.turns).status();
}

Result<Session> ConversationManager::GetSession(const std::string& scope,
                                                const std::string& name) const {
  if (deps_.sessions == nullptr) return FailedPreconditionError("sessions need the block store");
  return deps_.sessions->Get(scope, name);
}

Result<std::vector<Session>> ConversationManager::ListSessions(const std::string& scope) const {
  if (deps_.sessions == nullptr) return std::vector<Session>{};
  return deps_.sessions->List(scope);
}

Status ConversationManager::ClearSession(const std::string& scope, const std::string& name) {
  if (deps_.sessions == nullptr) return FailedPreconditionError("sessions need the block store");
  KV_ASSIGN_OR_RETURN(Session session, deps_.sessions->Get(scope, name));
  Session cleared = session;
  cleared.turns.clear();
  cleared.tokens.clear();
  cleared.blocks.clear();
  cleared.kv_tokens = 0;
  cleared.kv_bytes = 0;
  KV_RETURN_IF_ERROR(deps_.sessions->Put(cleared));
  return Unpin(session);
}

Status ConversationManager::DeleteSession(const std::string& scope, const std::string& name) {
  if (deps_.sessions == nullptr) return FailedPreconditionError("sessions need the block store");
  KV_ASSIGN_OR_RETURN(Session session, deps_.sessions->Get(scope, name));
  KV_RETURN_IF_ERROR(deps_.sessions->Remove(scope, name));
  return Unpin(session);
}

}  // namespace kvault::conversation
