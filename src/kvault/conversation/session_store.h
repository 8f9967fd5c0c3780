// conversation/session_store.h: named sessions on disk (the zKV seed's session API). A
// session is a saved conversation: its turns, the tokens they render to, and the names of the
// KV blocks that hold those tokens' KV. The blocks themselves stay in the block store, pinned
// while a session references them, so loading a session restores its KV instead of
// recomputing it. One JSON file per session under <data-dir>/sessions/, written crash-safe.
//
// Sessions belong to an API key scope like conversations do: each scope has a folder of its
// own (key-<digest>/; scope "" the top level), so two keys' sessions of the same name are
// two sessions, and one key can neither read nor replace the other's.
//
// Shared by several replicas (SetMirror, conversation/remote_sessions.h): the mirror is the
// truth while it answers, unless a local file is newer (saved_ms). A session is written to
// both; read, listed and removed through the mirror, where a removal is a tombstone so that a
// replica holding the file drops it rather than publishing it again. A session the mirror
// lacks, or holds an older version of (saved while it did not answer; Redis restarted empty
// or from an older snapshot), is published again from the file. While the mirror does not
// answer, the local files alone serve, as without one.
//
// Thread-safety: all methods may be called from any thread (one mutex; files are small).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <llama.h>

#include "kvault/base/json.h"
#include "kvault/base/mutex.h"
#include "kvault/base/result.h"
#include "kvault/engine/chat_template.h"
#include "kvault/kv/block_hash.h"

namespace kvault::conversation {

struct Session {
  std::string name;
  std::string scope;
  std::string conversation_id;  // the conversation it was saved from
  int64_t created_unix = 0;
  std::string model;  // model fingerprint (hex)
  std::vector<engine::ChatMessage> turns;
  std::vector<llama_token> tokens;
  std::vector<kv::BlockName> blocks;  // pinned blocks covering a prefix of `tokens`
  int64_t kv_tokens = 0;              // tokens those blocks cover
  int64_t kv_bytes = 0;               // their encoded size
  // When this version was written (Unix ms; Put sets it): with a mirror, the newer of two
  // copies of a session is the one kept.
  int64_t saved_ms = 0;
  // Read from this replica's own file: the replica pins `blocks` (a session another replica
  // saved, read through the mirror, pins nothing here). Not stored.
  bool local = false;
};

// Session names: 1 to 128 of [A-Za-z0-9._-], not starting with a dot.
Status ValidateSessionName(const std::string& name);

// A session as the JSON of its file (also the metadata of a session file, session_file.h),
// and back: Corruption for anything malformed.
Json SessionToJson(const Session& session);
Result<Session> SessionFromJson(const Json& json);
// `unix_seconds` as ISO 8601 UTC ("2025-01-31T12:00:00Z"): zKV's `created_at`.
std::string IsoTimestampUtc(int64_t unix_seconds);
// A block name from its 32 hex digits (kv::BlockName::ToHex); Corruption if malformed.
Result<kv::BlockName> ParseBlockName(const std::string& hex);

// Where sessions are shared with other replicas. Texts are SessionToJson's, or a tombstone
// {"removed": true, "saved_ms"} for a removed one. Unavailable while the shared store cannot
// be reached.
class SessionMirror {
 public:
  virtual ~SessionMirror() = default;
  // nullopt: the mirror holds nothing under that name.
  virtual Result<std::optional<std::string>> Get(const std::string& scope,
                                                 const std::string& name) = 0;
  virtual Status Put(const std::string& scope, const std::string& name,
                     const std::string& text) = 0;
  // Every name of the scope with its text (tombstones included).
  virtual Result<std::map<std::string, std::string>> List(const std::string& scope) = 0;
};

class SessionStore {
 public:
  static Result<std::unique_ptr<SessionStore>> Open(const std::string& dir);
  // Shares the sessions through `mirror` (outlives the store); set before use.
  void SetMirror(SessionMirror* mirror) { mirror_ = mirror; }
  // Called with a local session whose file is dropped because the mirror holds a newer
  // version or a tombstone (another replica replaced or removed it): its pins are released.
  void OnStale(std::function<void(const Session&)> on_stale) { on_stale_ = std::move(on_stale); }

  // Writes (or replaces) a session.
  Status Put(const Session& session);
  // NotFound if absent (or of another scope).
  Result<Session> Get(const std::string& scope, const std::string& name) const;
  // Every session of `scope`, by name; an empty scope with all_scopes lists everything
  // (the offline CLI).
  Result<std::vector<Session>> List(const std::string& scope, bool all_scopes = false) const;
  // A free name to keep a replaced session under: "<name>.replaced-<created>" (a suffix
  // added if taken), within the 128-character limit.
  std::string ArchiveName(const std::string& scope, const std::string& name,
                          int64_t created_unix) const;
  // The removed session; its `local` says whether this replica's file went (its pins are
  // then the caller's to release). NotFound if absent (or of another scope).
  Result<Session> Remove(const std::string& scope, const std::string& name);

 private:
  explicit SessionStore(std::string dir) : dir_(std::move(dir)) {}
  std::string PathOf(const std::string& scope, const std::string& name) const;
  static Result<Session> Read(const std::string& path);
  static Result<Session> Parse(const std::string& text, const std::string& where);
  // The local file's session, NotFound without one.
  Result<Session> GetLocal(const std::string& scope, const std::string& name) const
      KV_REQUIRES(mu_);
  // What the mirror says of a session: a session, NotFound (tombstone or absent: `absent`
  // tells which), or Unavailable.
  Result<Session> GetMirrored(const std::string& scope, const std::string& name,
                              bool* absent) const;
  Result<std::vector<Session>> ListLocal(const std::string& scope, bool all_scopes) const
      KV_REQUIRES(mu_);
  // Brings the local file of a session in line with the mirror's `text` (nullopt: absent):
  // absent there, the file is published again; a tombstone or another text drops the file
  // (OnStale). The session to answer with, NotFound if none.
  Result<Session> Reconcile(const std::string& scope, const std::string& name,
                            const std::optional<std::string>& text) const KV_REQUIRES(mu_);

  const std::string dir_;
  SessionMirror* mirror_ = nullptr;
  std::function<void(const Session&)> on_stale_;
  int64_t NextVersion() const KV_REQUIRES(mu_);
  mutable int64_t last_version_ KV_GUARDED_BY(mu_) = 0;
  mutable Mutex mu_;
};

}  // namespace kvault::conversation
