#include "kvault/conversation/session_store.h"

#include <algorithm>
#include <chrono>
#include <ctime>
#include <filesystem>
#include <system_error>

#include "kvault/base/file.h"
#include "kvault/base/json.h"
#include "kvault/base/log.h"
#include "kvault/base/status_macros.h"
#include "kvault/memory/token_store.h"

namespace kvault::conversation {
namespace {

constexpr std::string_view kSuffix = ".session.json";

}  // namespace

Json SessionToJson(const Session& s) {
  Json turns = Json::array();
  for (const engine::ChatMessage& m : s.turns) {
    Json turn = {{"role", m.role}, {"content", m.content}};
    if (m.time > 0) turn["timestamp"] = m.time;  // Unix seconds; absent in older files
    turns.push_back(std::move(turn));
  }
  Json blocks = Json::array();
  for (const kv::BlockName& name : s.blocks) blocks.push_back(name.ToHex());
  return {{"format", "kvault-session-1"},
          {"name", s.name},
          {"scope", s.scope},
          {"conversation_id", s.conversation_id},
          {"created", s.created_unix},
          {"model", s.model},
          {"turns", turns},
          {"tokens", s.tokens},
          {"blocks", blocks},
          {"kv_tokens", s.kv_tokens},
          {"kv_bytes", s.kv_bytes},
          {"saved_ms", s.saved_ms}};
}

Result<kv::BlockName> ParseBlockName(const std::string& hex) {
  if (hex.size() != 32) return CorruptionError("bad block name in session: " + hex);
  kv::BlockName name;
  for (size_t i = 0; i < 32; ++i) {
    const char c = hex[i];
    uint64_t digit = 0;
    if (c >= '0' && c <= '9') {
      digit = static_cast<uint64_t>(c - '0');
    } else if (c >= 'a' && c <= 'f') {
      digit = static_cast<uint64_t>(c - 'a' + 10);
    } else {
      return CorruptionError("bad block name in session: " + hex);
    }
    uint64_t& word = i < 16 ? name.high : name.low;  // ToHex writes the high word first
    word = (word << 4) | digit;
  }
  return name;
}

Result<Session> SessionFromJson(const Json& j) {
  auto bad = [] { return CorruptionError("session file is malformed"); };
  if (!j.is_object() || j.value("format", "") != "kvault-session-1") return bad();
  Session s;
  auto str = [&](const char* key, std::string* out) {
    auto it = j.find(key);
    if (it == j.end() || !it->is_string()) return false;
    *out = it->get_ref<const std::string&>();
    return true;
  };
  if (!str("name", &s.name) || !str("scope", &s.scope) ||
      !str("conversation_id", &s.conversation_id) || !str("model", &s.model)) {
    return bad();
  }
  s.created_unix = static_cast<int64_t>(NumberOr(j, "created", 0));
  s.kv_tokens = static_cast<int64_t>(NumberOr(j, "kv_tokens", 0));
  s.kv_bytes = static_cast<int64_t>(NumberOr(j, "kv_bytes", 0));
  s.saved_ms = static_cast<int64_t>(NumberOr(j, "saved_ms", 0));
  const auto turns = j.find("turns"), tokens = j.find("tokens"), blocks = j.find("blocks");
  if (turns == j.end() || !turns->is_array() || tokens == j.end() || !tokens->is_array() ||
      blocks == j.end() || !blocks->is_array()) {
    return bad();
  }
  for (const Json& t : *turns) {
    if (!t.is_object() || !t.contains("role") || !t["role"].is_string() || !t.contains("content") ||
        !t["content"].is_string()) {
      return bad();
    }
    int64_t time = 0;
    if (auto at = t.find("timestamp"); at != t.end()) {
      if (!at->is_number_integer() || at->get<int64_t>() < 0 ||
          at->get<int64_t>() > memory::TokenStore::kMaxTime) {
        return bad();
      }
      time = at->get<int64_t>();
    }
    s.turns.push_back({t["role"].get<std::string>(), t["content"].get<std::string>(), time});
  }
  for (const Json& t : *tokens) {
    if (!t.is_number_integer()) return bad();
    s.tokens.push_back(t.get<llama_token>());
  }
  for (const Json& b : *blocks) {
    if (!b.is_string()) return bad();
    KV_ASSIGN_OR_RETURN(kv::BlockName name, ParseBlockName(b.get<std::string>()));
    s.blocks.push_back(name);
  }
  return s;
}

std::string IsoTimestampUtc(int64_t unix_seconds) {
  const std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char text[32];
  std::strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return text;
}

Status ValidateSessionName(const std::string& name) {
  const bool ok =
      !name.empty() && name.size() <= 128 && name[0] != '.' &&
      std::all_of(name.begin(), name.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
      });
  if (!ok) {
    return InvalidArgumentError(
        "session names are 1 to 128 characters of A-Z a-z 0-9 . _ - "
        "and do not start with a dot");
  }
  return Status::Ok();
}

Result<std::unique_ptr<SessionStore>> SessionStore::Open(const std::string& dir) {
  KV_RETURN_IF_ERROR(CreateDirectories(dir));
  return std::unique_ptr<SessionStore>(new SessionStore(dir));
}

static Status ValidateScope(const std::string& scope) {
  // Scopes are "key-<digest>" (server/auth.h); anything else must not become a path.
  const bool ok = scope.size() <= 80 && std::all_of(scope.begin(), scope.end(), [](char c) {
                    return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '-';
                  });
  return ok ? Status::Ok() : InvalidArgumentError("sessions: bad scope");
}

std::string SessionStore::PathOf(const std::string& scope, const std::string& name) const {
  // Scope "" (no API keys) keeps the folder's top level; each key has a folder of its own,
  // so equal names of two keys are two sessions.
  const std::string folder = scope.empty() ? dir_ : dir_ + "/" + scope;
  return folder + "/" + name + std::string(kSuffix);
}

Result<Session> SessionStore::Parse(const std::string& text, const std::string& where) {
  Result<Json> json = ParseJson(text);
  if (!json.ok()) return CorruptionError(where + ": " + json.status().message());
  Result<Session> session = SessionFromJson(*json);
  if (!session.ok()) return session.status().WithPrefix(where);
  return session;
}

Result<Session> SessionStore::Read(const std::string& path) {
  KV_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  KV_ASSIGN_OR_RETURN(Session session, Parse(text, path));
  session.local = true;
  return session;
}

static Status NoSession(const std::string& name) {
  return NotFoundError("no session '" + name + "'").WithDetail(ErrorDetail::kSessionNotFound);
}

int64_t SessionStore::NextVersion() const {
  const int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
  last_version_ = std::max(last_version_ + 1, now_ms);
  return last_version_;
}

namespace {

// What the mirror holds of a session: removed (a tombstone) or a text, and its version.
struct Mirrored {
  bool removed = false;
  int64_t saved_ms = 0;
};

Mirrored ReadMirrored(const std::string& text) {
  Result<Json> json = ParseJson(text);
  if (!json.ok() || !json->is_object()) return {};
  return {json->value("removed", false), static_cast<int64_t>(NumberOr(*json, "saved_ms", 0))};
}

std::string Tombstone(int64_t saved_ms) {
  return DumpJson(Json{{"removed", true}, {"saved_ms", saved_ms}});
}

}  // namespace

Status SessionStore::Put(const Session& session) {
  KV_RETURN_IF_ERROR(ValidateSessionName(session.name));
  KV_RETURN_IF_ERROR(ValidateScope(session.scope));
  MutexLock lock(&mu_);
  const std::string path = PathOf(session.scope, session.name);
  KV_RETURN_IF_ERROR(CreateDirectories(std::filesystem::path(path).parent_path().string()));
  Session versioned = session;
  versioned.saved_ms = NextVersion();
  const std::string text = DumpJson(SessionToJson(versioned));
  KV_RETURN_IF_ERROR(WriteFileAtomic(path, text));
  if (mirror_ != nullptr) {
    // The file holds it: the next read with the mirror up publishes it (Reconcile).
    if (Status shared = mirror_->Put(session.scope, session.name, text); !shared.ok()) {
      KV_LOG(kWarning) << "sessions: '" << session.name
                       << "' kept here only for now: " << shared.ToString();
    }
  }
  return Status::Ok();
}

Result<Session> SessionStore::GetLocal(const std::string& scope, const std::string& name) const {
  const std::string path = PathOf(scope, name);
  if (!PathExists(path)) return NoSession(name);
  KV_ASSIGN_OR_RETURN(Session session, Read(path));
  if (session.scope != scope) return NoSession(name);
  return session;
}

Result<Session> SessionStore::Reconcile(const std::string& scope, const std::string& name,
                                        const std::optional<std::string>& text) const {
  Result<Session> local = GetLocal(scope, name);
  const Mirrored mirrored = text ? ReadMirrored(*text) : Mirrored{};
  if (local.ok() && (!text.has_value() || local->saved_ms > mirrored.saved_ms)) {
    // Redis lost it (restarted empty), or holds an older version (this one was saved while
    // it did not answer, or it came back from an older snapshot): ours is the copy.
    (void)mirror_->Put(scope, name, DumpJson(SessionToJson(*local)));
    return local;
  }
  if (!text.has_value()) return local;
  if (local.ok() && DumpJson(SessionToJson(*local)) != *text) {
    // Another replica replaced or removed it since: this file and its pins are stale.
    if (RemoveFile(PathOf(scope, name)).ok() && on_stale_) on_stale_(*local);
    KV_LOG(kInfo) << "sessions: '" << name << "' was "
                  << (mirrored.removed ? "removed" : "replaced") << " on another replica";
  }
  if (mirrored.removed) return NoSession(name);
  return Parse(*text, "shared session '" + name + "'");
}

Result<Session> SessionStore::Get(const std::string& scope, const std::string& name) const {
  KV_RETURN_IF_ERROR(ValidateSessionName(name));
  KV_RETURN_IF_ERROR(ValidateScope(scope));
  MutexLock lock(&mu_);
  if (mirror_ != nullptr) {
    Result<std::optional<std::string>> shared = mirror_->Get(scope, name);
    if (shared.ok()) {
      Result<Session> session = Reconcile(scope, name, *shared);
      // A local file that matches the mirror is this replica's own (it pins the blocks).
      if (session.ok() && PathExists(PathOf(scope, name))) session->local = true;
      return session;
    }
  }
  return GetLocal(scope, name);
}

Result<std::vector<Session>> SessionStore::ListLocal(const std::string& scope,
                                                     bool all_scopes) const {
  std::vector<Session> sessions;
  std::error_code error;
  for (std::filesystem::recursive_directory_iterator it(dir_, error), end; !error && it != end;
       it.increment(error)) {
    const std::string path = it->path().string();
    if (!path.ends_with(kSuffix)) continue;
    Result<Session> session = Read(path);
    if (!session.ok()) continue;  // unreadable: `kvault session info` reports it
    if (all_scopes || session->scope == scope) sessions.push_back(std::move(session).value());
  }
  if (error) return IOError("cannot list " + dir_ + ": " + error.message());
  return sessions;
}

Result<std::vector<Session>> SessionStore::List(const std::string& scope, bool all_scopes) const {
  MutexLock lock(&mu_);
  KV_ASSIGN_OR_RETURN(std::vector<Session> sessions, ListLocal(scope, all_scopes));
  Result<std::map<std::string, std::string>> shared =
      mirror_ != nullptr && !all_scopes
          ? mirror_->List(scope)
          : Result<std::map<std::string, std::string>>(UnavailableError("no mirror"));
  if (shared.ok()) {
    std::vector<Session> merged;
    for (const Session& session : sessions) {
      if (!shared->contains(session.name)) {
        Result<Session> kept = Reconcile(scope, session.name, std::nullopt);
        if (kept.ok()) merged.push_back(std::move(kept).value());
      }
    }
    for (const auto& [name, text] : *shared) {
      Result<Session> session = Reconcile(scope, name, text);
      if (!session.ok()) continue;  // a tombstone, or another key's (never: scoped hash)
      if (PathExists(PathOf(scope, name))) session->local = true;
      merged.push_back(std::move(session).value());
    }
    sessions = std::move(merged);
  }
  std::sort(sessions.begin(), sessions.end(),
            [](const Session& a, const Session& b) { return a.name < b.name; });
  return sessions;
}

std::string SessionStore::ArchiveName(const std::string& scope, const std::string& name,
                                      int64_t created_unix) const {
  const std::string base = name.substr(0, 96) + ".replaced-" + std::to_string(created_unix);
  std::string candidate = base;
  for (int i = 2; Get(scope, candidate).ok(); ++i) candidate = base + "-" + std::to_string(i);
  return candidate;
}

Result<Session> SessionStore::Remove(const std::string& scope, const std::string& name) {
  KV_ASSIGN_OR_RETURN(Session session, Get(scope, name));
  MutexLock lock(&mu_);
  if (mirror_ != nullptr) {
    // The tombstone first: removed here but not there, the session would come back.
    Status shared = mirror_->Put(scope, name, Tombstone(NextVersion()));
    if (!shared.ok()) {
      return shared.WithPrefix("session '" + name +
                               "' not removed: the replicas' shared store does not answer");
    }
  }
  // Get may have found this replica's file stale and dropped it (and its pins) already.
  session.local = session.local && PathExists(PathOf(scope, name));
  if (session.local) KV_RETURN_IF_ERROR(RemoveFile(PathOf(scope, name)));
  return session;
}

}  // namespace kvault::conversation
