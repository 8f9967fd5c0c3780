// conversation/session_service.h: named sessions, within the caller's API key scope. Saving
// one records the conversation's turns (from the journal) and pins the KV blocks of its
// prompt, so loading it into any conversation restores that KV instead of recomputing it.
// Pins are the KV cache's (kv_cache.h); at start-up the saved sessions' blocks are pinned
// again.
//
// Sessions also travel as files (session_file.h): Export writes one with the KV blocks this
// server has of the session, Import stores one. Its KV comes along only into a server of the
// same model and KV layout (block namespace, kv/block_hash.h); elsewhere the history alone
// is imported, and its KV is recomputed on the first turn after a load.
//
// Thread-safety: all methods may be called from any thread.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "kvault/base/result.h"
#include "kvault/base/storage_health.h"
#include "kvault/conversation/history_service.h"
#include "kvault/conversation/journal.h"
#include "kvault/conversation/kv_cache.h"
#include "kvault/conversation/registry.h"
#include "kvault/conversation/session_file.h"
#include "kvault/conversation/session_store.h"
#include "kvault/conversation/turn_renderer.h"

namespace kvault::conversation {

struct SessionServiceDeps {
  Registry* registry = nullptr;
  Journal* journal = nullptr;     // null: sessions cannot be saved
  SessionStore* store = nullptr;  // null: sessions are off
  KvCache* kv_cache = nullptr;    // its block store may be null: sessions cannot be saved
  HistoryService* history = nullptr;
  ChatTurnRenderer* renderer = nullptr;  // renders an imported history for another model
  StorageHealth* health = nullptr;       // may be null; hears of every session write
  std::string model_fingerprint;         // hex, recorded in sessions
};

struct SavedSession {
  Session session;
  // Saving over a session of the same name keeps the old one, under this name (its turns;
  // its KV pins are released); "" if there was none.
  std::string replaced_as;
};

struct ImportedSession {
  Session session;
  std::string replaced_as;  // as in SavedSession
  // What became of the file's KV: "imported", "none" (the file has none), or "skipped: <why>"
  // (another model or KV layout, or no block store here: the history alone was imported).
  std::string kv;
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

  // The session as a portable file (session_file.h) with the KV blocks this server still has
  // of it: its pinned blocks (a prefix of them if some were lost). NotFound if absent.
  Result<std::vector<uint8_t>> Export(const std::string& scope, const std::string& name) const;
  // Stores a session file in `scope`, as `name` ("": the name in the file). An existing
  // session of that name is kept under another name, as Save does. InvalidArgument for a bad
  // or truncated file, with nothing stored.
  Result<ImportedSession> Import(const std::string& scope, std::span<const uint8_t> file,
                                 const std::string& name = "");

 private:
  // The store's Put, heard by the storage health.
  Status Put(const Session& session);
  // Writes `session` (its blocks pinned), keeping an existing one of its name under an
  // archive name, which it returns ("" if none). On failure the session's pins are released.
  Result<std::string> Replace(const Session& session);
  // Brings the KV of an imported file into the store and pins it for `session`; returns
  // ImportedSession::kv. InvalidArgument for blocks that fail their checks.
  Result<std::string> ImportKv(const SessionFile& file, Session* session);
  // The tokens `turns` render to with this server's model ({} if one does not render).
  std::vector<llama_token> Render(const std::vector<engine::ChatMessage>& turns) const;

  SessionServiceDeps deps_;
};

}  // namespace kvault::conversation
