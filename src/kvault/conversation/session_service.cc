#include "kvault/conversation/session_service.h"

#include <chrono>

#include "kvault/base/log.h"
#include "kvault/base/status_macros.h"

namespace kvault::conversation {
namespace {

int64_t UnixSeconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Status NotEnabled() { return FailedPreconditionError("sessions are not enabled"); }

}  // namespace

// "<name>.replaced-<created>" (a free suffix added if taken), within the 128-character limit.
std::string SessionService::ArchiveName(const std::string& scope, const std::string& name,
                                        int64_t created_unix) const {
  const std::string base = name.substr(0, 96) + ".replaced-" + std::to_string(created_unix);
  std::string candidate = base;
  for (int i = 2; deps_.store->Get(scope, candidate).ok(); ++i) {
    candidate = base + "-" + std::to_string(i);
  }
  return candidate;
}

SessionService::SessionService(SessionServiceDeps deps) : deps_(std::move(deps)) {
  if (deps_.store == nullptr || deps_.kv_cache->store() == nullptr) return;
  Result<std::vector<Session>> all = deps_.store->List("", /*all_scopes=*/true);
  if (!all.ok()) {
    KV_LOG(kWarning) << "sessions: " << all.status().ToString();
    return;
  }
  for (const Session& session : *all) deps_.kv_cache->Repin(session.blocks);
}

Result<SavedSession> SessionService::Save(const std::string& scope,
                                          const std::string& conversation_id,
                                          const std::string& name) {
  if (deps_.store == nullptr || deps_.journal == nullptr || deps_.kv_cache->store() == nullptr) {
    return FailedPreconditionError("sessions need the block store and the journal");
  }
  KV_RETURN_IF_ERROR(ValidateSessionName(name));
  KV_ASSIGN_OR_RETURN(TurnLock conversation, deps_.registry->LockExisting(scope, conversation_id));
  if (!conversation->history) {
    return FailedPreconditionError("conversation '" + conversation_id + "' has no chat history");
  }
  Session session;
  session.name = name;
  session.scope = scope;
  session.conversation_id = conversation_id;
  session.created_unix = UnixSeconds();
  session.model = deps_.model_fingerprint;
  KV_ASSIGN_OR_RETURN(JournalEntry entry, deps_.journal->Read(scope, conversation_id));
  for (JournalTurn& turn : entry.turns) {
    session.turns.push_back({std::move(turn.role), std::move(turn.content)});
  }
  // The tokens a prompt of this history starts with: their cached KV is what loading restores.
  const memory::TokenStore& history = *conversation->history;
  session.tokens = deps_.renderer->prompt_start();
  KV_ASSIGN_OR_RETURN(std::vector<int32_t> tokens,
                      history.Tokens(history.begin_pos(), history.n_tokens()));
  session.tokens.insert(session.tokens.end(), tokens.begin(), tokens.end());
  KvCache::Pinned pinned = deps_.kv_cache->Pin(session.tokens, scope);
  session.blocks = std::move(pinned.blocks);
  session.kv_tokens = pinned.tokens;
  session.kv_bytes = pinned.bytes;
  SavedSession saved;
  Result<Session> previous = deps_.store->Get(scope, name);
  if (previous.ok()) {
    // Nothing is replaced silently: the old session stays loadable under a new name.
    Session archived = *previous;
    archived.name = ArchiveName(scope, name, previous->created_unix);
    archived.blocks.clear();
    archived.kv_tokens = 0;
    archived.kv_bytes = 0;
    Status kept = Put(archived);
    if (!kept.ok()) {
      deps_.kv_cache->Unpin(session.blocks);
      return kept.WithPrefix("session '" + name + "' not replaced: the old one cannot be kept");
    }
    saved.replaced_as = archived.name;
  }
  Status written = Put(session);
  if (!written.ok()) {
    deps_.kv_cache->Unpin(session.blocks);
    return written;
  }
  if (previous.ok()) {
    deps_.kv_cache->Unpin(previous->blocks);
    KV_LOG(kInfo) << "sessions: '" << name << "' replaced; the previous one ("
                  << previous->turns.size() << " turns) is kept as '" << saved.replaced_as << "'";
  }
  saved.session = std::move(session);
  return saved;
}

Status SessionService::Load(const std::string& scope, const std::string& name,
                            const std::string& conversation_id) {
  if (deps_.store == nullptr) return NotEnabled();
  KV_ASSIGN_OR_RETURN(Session session, deps_.store->Get(scope, name));
  if (session.model != deps_.model_fingerprint) {
    KV_LOG(kInfo) << "sessions: '" << name << "' was saved with model " << session.model
                  << "; its turns load, its KV will be recomputed";
  }
  return deps_.history->Append(scope, conversation_id, session.turns).status();
}

Result<Session> SessionService::Get(const std::string& scope, const std::string& name) const {
  if (deps_.store == nullptr) return NotEnabled();
  return deps_.store->Get(scope, name);
}

Result<std::vector<Session>> SessionService::List(const std::string& scope) const {
  if (deps_.store == nullptr) return std::vector<Session>{};
  return deps_.store->List(scope);
}

Status SessionService::Clear(const std::string& scope, const std::string& name) {
  if (deps_.store == nullptr) return NotEnabled();
  KV_ASSIGN_OR_RETURN(Session session, deps_.store->Get(scope, name));
  Session cleared = session;
  cleared.turns.clear();
  cleared.tokens.clear();
  cleared.blocks.clear();
  cleared.kv_tokens = 0;
  cleared.kv_bytes = 0;
  KV_RETURN_IF_ERROR(Put(cleared));
  deps_.kv_cache->Unpin(session.blocks);
  return Status::Ok();
}

Result<store::Removed> SessionService::DropKv(const std::string& scope, const std::string& name) {
  if (deps_.store == nullptr) return NotEnabled();
  KV_ASSIGN_OR_RETURN(Session session, deps_.store->Get(scope, name));
  if (session.blocks.empty()) return store::Removed{};
  Session dropped = session;
  dropped.blocks.clear();
  dropped.kv_tokens = 0;
  dropped.kv_bytes = 0;
  // The record first: a session that still names its blocks after a failed write keeps them
  // pinned, and loses nothing.
  KV_RETURN_IF_ERROR(Put(dropped));
  deps_.kv_cache->Unpin(session.blocks);
  return deps_.kv_cache->ClearBranch(session.blocks.back());
}

Status SessionService::Delete(const std::string& scope, const std::string& name) {
  if (deps_.store == nullptr) return NotEnabled();
  KV_ASSIGN_OR_RETURN(Session session, deps_.store->Get(scope, name));
  KV_RETURN_IF_ERROR(deps_.store->Remove(scope, name));
  deps_.kv_cache->Unpin(session.blocks);
  return Status::Ok();
}

Status SessionService::Put(const Session& session) {
  Status written = deps_.store->Put(session);
  return deps_.health != nullptr ? deps_.health->Note(StorageArea::kSessions, std::move(written))
                                 : written;
}

}  // namespace kvault::conversation
