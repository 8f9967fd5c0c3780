#include "kvault/conversation/session_service.h"

#include <chrono>

#include "kvault/base/log.h"
#include "kvault/base/status_macros.h"
#include "kvault/memory/token_store.h"

namespace kvault::conversation {
namespace {

int64_t UnixSeconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Status NotEnabled() { return FailedPreconditionError("sessions are not enabled"); }

}  // namespace

SessionService::SessionService(SessionServiceDeps deps) : deps_(std::move(deps)) {
  if (deps_.store == nullptr || deps_.kv_cache->store() == nullptr) return;
  // Pins are this replica's: it holds them for the sessions whose files it has (Repin
  // below), and releases them when another replica replaced or removed one.
  deps_.store->OnStale(
      [kv_cache = deps_.kv_cache](const Session& stale) { kv_cache->Unpin(stale.blocks); });
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
  if (deps_.store == nullptr || deps_.journal == nullptr) {
    return FailedPreconditionError("sessions need the journal");
  }
  KV_RETURN_IF_ERROR(ValidateSessionName(name));
  // Through the history service: with a shared Redis, a conversation only another replica has
  // recorded is adopted first, under its lease.
  RemoteJournal::Lease lease;
  KV_ASSIGN_OR_RETURN(TurnLock conversation,
                      deps_.history->LockExisting(scope, conversation_id, &lease));
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
    session.turns.push_back({std::move(turn.role), std::move(turn.content), turn.time});
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
  KV_ASSIGN_OR_RETURN(saved.replaced_as, Replace(session));
  saved.session = std::move(session);
  return saved;
}

Result<std::string> SessionService::Replace(const Session& session) {
  Result<Session> previous = deps_.store->Get(session.scope, session.name);
  std::string replaced_as;
  if (previous.ok()) {
    // Nothing is replaced silently: the old session stays loadable under a new name.
    Session archived = *previous;
    archived.name = deps_.store->ArchiveName(session.scope, session.name, previous->created_unix);
    archived.blocks.clear();
    archived.kv_tokens = 0;
    archived.kv_bytes = 0;
    Status kept = Put(archived);
    if (!kept.ok()) {
      deps_.kv_cache->Unpin(session.blocks);
      return kept.WithPrefix("session '" + session.name +
                             "' not replaced: the old one cannot be kept");
    }
    replaced_as = archived.name;
  }
  Status written = Put(session);
  if (!written.ok()) {
    deps_.kv_cache->Unpin(session.blocks);
    return written;
  }
  if (previous.ok()) {
    if (previous->local) deps_.kv_cache->Unpin(previous->blocks);
    KV_LOG(kInfo) << "sessions: '" << session.name << "' replaced; the previous one ("
                  << previous->turns.size() << " turns) is kept as '" << replaced_as << "'";
  }
  return replaced_as;
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
  if (session.local) deps_.kv_cache->Unpin(session.blocks);
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
  if (session.local) deps_.kv_cache->Unpin(session.blocks);
  return deps_.kv_cache->ClearBranch(session.blocks.back());
}

Status SessionService::Delete(const std::string& scope, const std::string& name) {
  if (deps_.store == nullptr) return NotEnabled();
  // The pins go only with this replica's own file (Remove says whether it went).
  KV_ASSIGN_OR_RETURN(Session removed, deps_.store->Remove(scope, name));
  if (removed.local) deps_.kv_cache->Unpin(removed.blocks);
  return Status::Ok();
}

Result<std::vector<uint8_t>> SessionService::Export(const std::string& scope,
                                                    const std::string& name) const {
  if (deps_.store == nullptr) return NotEnabled();
  KV_ASSIGN_OR_RETURN(Session session, deps_.store->Get(scope, name));
  std::vector<store::BlockBytes> found;
  if (deps_.kv_cache->store() != nullptr) {
    found = deps_.kv_cache->store()->ReadEncoded(session.blocks);
  }
  return EncodeSessionFile(PackSessionFile(std::move(session), std::move(found)));
}

Result<ImportedSession> SessionService::Import(const std::string& scope,
                                               std::span<const uint8_t> bytes,
                                               const std::string& name) {
  if (deps_.store == nullptr) return NotEnabled();
  // Validate, then commit: the file, the name and every block are checked before the first
  // block or record is written.
  KV_ASSIGN_OR_RETURN(SessionFile file, DecodeSessionFile(bytes));
  Session session = file.session;
  if (!name.empty()) session.name = name;
  KV_RETURN_IF_ERROR(ValidateSessionName(session.name));
  session.scope = scope;
  session.blocks.clear();
  session.kv_tokens = 0;
  session.kv_bytes = 0;
  ImportedSession imported;
  KV_ASSIGN_OR_RETURN(imported.kv, ImportKv(file, &session));
  if (imported.kv != "imported") {
    // The file's tokens are another model's (or another template's): this model's are what
    // the session's prompt will be.
    session.tokens = Render(session.turns);
  }
  session.model = deps_.model_fingerprint;
  KV_ASSIGN_OR_RETURN(imported.replaced_as, Replace(session));
  KV_LOG(kInfo) << "sessions: imported '" << session.name << "' (" << session.turns.size()
                << " turns); KV " << imported.kv;
  imported.session = std::move(session);
  return imported;
}

Result<std::string> SessionService::ImportKv(const SessionFile& file, Session* session) {
  store::BlockStore* store = deps_.kv_cache->store();
  if (file.blocks.empty()) return std::string("none");
  if (store == nullptr) return std::string("skipped: this server keeps no KV blocks");
  if (file.session.model != deps_.model_fingerprint) {
    return "skipped: other model (the file's is " + file.session.model + ", this server's " +
           deps_.model_fingerprint + "); the history is imported and its KV recomputed";
  }
  // Block names chain from the partition root of the importing key (kv/block_hash.h).
  const kv::BlockName root = deps_.kv_cache->PartitionOf(session->scope);
  Result<std::vector<store::BlockBytes>> rooted = ReRootBlocks(file.blocks, root);
  if (!rooted.ok()) return InvalidArgumentError("session file: " + rooted.status().message());
  Result<size_t> inserted = store->InsertEncoded(*rooted, root);
  if (!inserted.ok()) {
    if (inserted.status().code() == StatusCode::kFailedPrecondition) {
      return "skipped: other KV layout (" + inserted.status().message() +
             "); the history is imported and its KV recomputed";
    }
    return InvalidArgumentError("session file: " + inserted.status().message());
  }
  // Pinned as Save pins: the blocks of the longest cached prefix of the session's tokens.
  KvCache::Pinned pinned = deps_.kv_cache->Pin(session->tokens, session->scope);
  session->blocks = std::move(pinned.blocks);
  session->kv_tokens = pinned.tokens;
  session->kv_bytes = pinned.bytes;
  return std::string("imported");
}

std::vector<llama_token> SessionService::Render(
    const std::vector<engine::ChatMessage>& turns) const {
  if (deps_.renderer == nullptr) return {};
  std::vector<llama_token> tokens = deps_.renderer->prompt_start();
  for (const engine::ChatMessage& turn : turns) {
    Result<memory::Role> role = memory::RoleFromName(turn.role);
    if (!role.ok()) return {};
    Result<std::vector<int32_t>> rendered = deps_.renderer->Render(*role, turn.content);
    if (!rendered.ok()) return {};
    tokens.insert(tokens.end(), rendered->begin(), rendered->end());
  }
  return tokens;
}

Status SessionService::Put(const Session& session) {
  Status written = deps_.store->Put(session);
  return deps_.health != nullptr ? deps_.health->Note(StorageArea::kSessions, std::move(written))
                                 : written;
}

}  // namespace kvault::conversation
