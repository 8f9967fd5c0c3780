// conversation/session_service.h: named sessions, within the caller's API key scope. Saving
// one records the conversation's turns (from the journal) and pins the KV blocks of its
// prompt, so loading it into any conversation restores that KV instead of recomputing it.
// Pins are the KV cache's (kv_cache.h); at start-up the saved sessions' blocks are pinned
// again.
//
// Thread-safety: all methods may be called from any thread.
#pragma once

#include <string>
#include <vector>

#include "kvault/base/result.h"
#include "kvault/base/storage_health.h"
#include "kvault/conversation/history_service.h"
#include "kvault/conversation/journal.h"
#include "kvault/conversation/kv_cache.h"
#include "kvault/conversation/registry.h"
#include "kvault/conversation/session_store.h"
#include "kvault/conversation/turn_renderer.h"

namespace kvault::conversation {

struct SessionServiceDeps {
  Registry* registry = nullptr;
  Journal* journal = nullptr;     // null: sessions cannot be saved
  SessionStore* store = nullptr;  // null: sessions are off
  KvCache* kv_cache = nullptr;    // its block store may be null: sessions cannot be saved
  HistoryService* history = nullptr;
  const ChatTurnRenderer* renderer = nullptr;
  StorageHealth* health = nullptr;  // may be null; hears of every session write
  std::string model_fingerprint;    // hex, recorded in sessions
};

struct SavedSession {
  Session session;
  // Saving over a session of the same name keeps the old one, under this name (its turns;
  // its KV pins are released); "" if there was none.
  std::string replaced_as;
};

class SessionService {
 public:
  // Pins the blocks of every saved session. REQUIRES: the pointees outlive this.
  explicit SessionService(SessionServiceDeps deps);

  // Saves the conversation (waiting for a running request) as `name`, pinning the KV blocks
  // of its turns. NotFound for an unknown conversation; FailedPrecondition without a store.
  Result<SavedSession> Save(const std::string& scope, const std::string& conversation_id,
                            const std::string& name);
  // Makes `conversation_id` hold the session's turns; its next request restores their KV.
  Status Load(const std::string& scope, const std::string& name,
              const std::string& conversation_id);
  Result<Session> Get(const std::string& scope, const std::string& name) const;
  Result<std::vector<Session>> List(const std::string& scope) const;
  // Empties the session (turns and KV pins) but keeps its name.
  Status Clear(const std::string& scope, const std::string& name);
  // Releases the session's KV pins and drops its own blocks (POST /v1/cache/clear), keeping
  // its turns: loading it then recomputes their KV.
  Result<store::Removed> DropKv(const std::string& scope, const std::string& name);
  Status Delete(const std::string& scope, const std::string& name);

 private:
  // The store's Put, heard by the storage health.
  Status Put(const Session& session);
  std::string ArchiveName(const std::string& scope, const std::string& name,
                          int64_t created_unix) const;

  SessionServiceDeps deps_;
};

}  // namespace kvault::conversation
