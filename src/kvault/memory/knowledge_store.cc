#include "kvault/memory/knowledge_store.h"

#include <algorithm>
#include <cctype>
#include <chrono>

#include "kvault/base/hash.h"
#include "kvault/base/json.h"
#include "kvault/base/log.h"
#include "kvault/base/status_macros.h"

namespace kvault::memory {
namespace {

constexpr char kFactsTable[] =
    "CREATE TABLE IF NOT EXISTS facts ("
    "  id INTEGER PRIMARY KEY, scope TEXT NOT NULL DEFAULT '', topic TEXT NOT NULL,"
    "  key TEXT NOT NULL, value TEXT NOT NULL,"
    "  updated_at INTEGER NOT NULL DEFAULT (unixepoch()), version INTEGER NOT NULL DEFAULT 0,"
    "  UNIQUE (scope, topic, key));";

// Where this store is in a shared feed (KnowledgeFeed): one row. `last` is the hash of the
// record before the cursor, the check that the feed is still the one applied.
constexpr char kFeedTable[] =
    "CREATE TABLE IF NOT EXISTS feed_cursor ("
    "  id INTEGER PRIMARY KEY, epoch TEXT NOT NULL, cursor INTEGER NOT NULL,"
    "  last TEXT NOT NULL);";

std::string RecordHash(const std::string& record) { return std::to_string(Hash64(record)); }

// Facts per feed record, and records read from the feed at once.
constexpr size_t kFactsPerRecord = 256;

// The full-text index holds topic, key and value; the scope is filtered through the join with
// `facts`, so a scope is never a search term.
constexpr char kFtsSchema[] =
    "CREATE VIRTUAL TABLE IF NOT EXISTS facts_fts USING fts5("
    "  topic, key, value, content='facts', content_rowid='id');"
    "CREATE TRIGGER IF NOT EXISTS facts_ai AFTER INSERT ON facts BEGIN"
    "  INSERT INTO facts_fts(rowid, topic, key, value)"
    "  VALUES (new.id, new.topic, new.key, new.value); END;"
    "CREATE TRIGGER IF NOT EXISTS facts_ad AFTER DELETE ON facts BEGIN"
    "  INSERT INTO facts_fts(facts_fts, rowid, topic, key, value)"
    "  VALUES ('delete', old.id, old.topic, old.key, old.value); END;"
    "CREATE TRIGGER IF NOT EXISTS facts_au AFTER UPDATE ON facts BEGIN"
    "  INSERT INTO facts_fts(facts_fts, rowid, topic, key, value)"
    "  VALUES ('delete', old.id, old.topic, old.key, old.value);"
    "  INSERT INTO facts_fts(rowid, topic, key, value)"
    "  VALUES (new.id, new.topic, new.key, new.value); END;";

// Files from before scopes have `facts` without a `scope` column and UNIQUE (topic, key),
// which SQLite cannot alter: the table is rebuilt with the same row ids, so the full-text
// index (keyed by row id) stays valid.
// Whether a `facts` table from an older version lacks `column` (false without a table).
Result<bool> FactsLack(SqliteDatabase& db, const std::string& column) {
  KV_ASSIGN_OR_RETURN(std::unique_ptr<SqliteStatement> probe,
                      db.Prepare("SELECT (SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'"
                                 " AND name = 'facts'), (SELECT COUNT(*) FROM"
                                 " pragma_table_info('facts') WHERE name = ?1)"));
  KV_RETURN_IF_ERROR(probe->Bind(1, column));
  KV_ASSIGN_OR_RETURN(bool row, probe->Step());
  // The statement ends here: left open, it would lock the table against a rebuild.
  return row && probe->ColumnInt(0) > 0 && probe->ColumnInt(1) == 0;
}

Status MigrateUnscopedFacts(SqliteDatabase& db) {
  KV_ASSIGN_OR_RETURN(const bool unscoped, FactsLack(db, "scope"));
  if (!unscoped) return Status::Ok();
  KV_RETURN_IF_ERROR(db.Execute("BEGIN IMMEDIATE"));
  Status migrated =
      db.Execute(std::string("DROP TRIGGER IF EXISTS facts_ai; DROP TRIGGER IF EXISTS facts_ad;"
                             "DROP TRIGGER IF EXISTS facts_au;"
                             "ALTER TABLE facts RENAME TO facts_unscoped;") +
                 kFactsTable +
                 "INSERT INTO facts (id, scope, topic, key, value, updated_at)"
                 "  SELECT id, '', topic, key, value, updated_at FROM facts_unscoped;"
                 "DROP TABLE facts_unscoped; COMMIT;");
  if (!migrated.ok()) {
    db.Execute("ROLLBACK").IgnoreError();
    return migrated.WithPrefix("knowledge: migrating facts to scopes");
  }
  return Status::Ok();
}

// Files from before shared feeds have no versions: their facts are version 0, older than
// any write since.
Status AddVersions(SqliteDatabase& db) {
  KV_ASSIGN_OR_RETURN(const bool missing, FactsLack(db, "version"));
  if (!missing) return Status::Ok();
  return db.Execute("ALTER TABLE facts ADD COLUMN version INTEGER NOT NULL DEFAULT 0");
}

// The length of the UTF-8 sequence that `lead` starts, or 0 if it cannot start one.
int Utf8Length(unsigned char lead) {
  if (lead < 0x80) return 1;
  if (lead >= 0xC2 && lead <= 0xDF) return 2;
  if (lead >= 0xE0 && lead <= 0xEF) return 3;
  if (lead >= 0xF0 && lead <= 0xF4) return 4;
  return 0;
}

Status CheckFact(const Fact& fact) {
  if (fact.topic.empty() || fact.key.empty() || fact.value.empty()) {
    return InvalidArgumentError("knowledge: a fact needs a topic, a key and a value");
  }
  return CheckTopicName(fact.topic);
}

Result<std::vector<Fact>> ReadFacts(SqliteStatement& query, bool scored) {
  std::vector<Fact> facts;
  while (true) {
    KV_ASSIGN_OR_RETURN(bool row, query.Step());
    if (!row) break;
    facts.push_back({query.ColumnText(0), query.ColumnText(1), query.ColumnText(2),
                     scored ? query.ColumnDouble(3) : 0});
  }
  return facts;
}

Result<KnowledgeStats> ReadStats(SqliteStatement& query) {
  KV_ASSIGN_OR_RETURN(bool row, query.Step());
  if (!row) return KnowledgeStats{};
  return KnowledgeStats{query.ColumnInt(0), query.ColumnInt(1)};
}

// A feed record: {"scope": ..., "facts": [[topic, key, value], ...]}.
std::string FeedRecord(const std::string& scope, const std::vector<Fact>& facts) {
  Json list = Json::array();
  for (const Fact& fact : facts) {
    list.push_back(Json::array({fact.topic, fact.key, fact.value, fact.version}));
  }
  return DumpJson(Json{{"scope", scope}, {"facts", std::move(list)}});
}

Result<std::pair<std::string, std::vector<Fact>>> ParseFeedRecord(const std::string& record) {
  Result<Json> json = ParseJson(record);
  const auto bad = [] { return CorruptionError("malformed knowledge record"); };
  if (!json.ok() || !json->is_object() || !json->contains("facts")) return bad();
  const Json& scope = (*json)["scope"];
  const Json& list = (*json)["facts"];
  if (!scope.is_string() || !list.is_array()) return bad();
  std::vector<Fact> facts;
  for (const Json& entry : list) {
    if (!entry.is_array() || entry.size() < 3 || entry.size() > 4 || !entry[0].is_string() ||
        !entry[1].is_string() || !entry[2].is_string() ||
        (entry.size() == 4 && !entry[3].is_number_integer())) {
      return bad();
    }
    Fact fact{entry[0].get<std::string>(), entry[1].get<std::string>(),
              entry[2].get<std::string>()};
    if (entry.size() == 4) fact.version = entry[3].get<int64_t>();
    KV_RETURN_IF_ERROR(CheckFact(fact));
    facts.push_back(std::move(fact));
  }
  return std::pair(scope.get<std::string>(), std::move(facts));
}

}  // namespace

std::string FtsQuery(const std::string& text) {
  std::string query;
  std::string word;
  auto flush = [&] {
    if (word.empty()) return;
    query += (query.empty() ? "\"" : " OR \"") + word + "\"";
    word.clear();
  };
  for (unsigned char c : text) {
    // Letters, digits and any non-ASCII byte (UTF-8 words) belong to words.
    if (std::isalnum(c) || c >= 0x80) {
      word += static_cast<char>(c);
    } else {
      flush();
    }
  }
  flush();
  return query;
}

Status CheckTopicName(std::string_view topic) {
  const auto bad = [](std::string_view why) {
    return InvalidArgumentError(
        "knowledge: topic names have 1 to 128 printable characters and no '/' (this one " +
        std::string(why) + ")");
  };
  if (topic.empty()) return bad("is empty");
  int n_chars = 0;
  for (size_t i = 0; i < topic.size(); ++n_chars) {
    const auto lead = static_cast<unsigned char>(topic[i]);
    const int length = Utf8Length(lead);
    if (length == 0 || i + length > topic.size()) return bad("is not valid UTF-8");
    for (int j = 1; j < length; ++j) {
      if ((static_cast<unsigned char>(topic[i + j]) & 0xC0) != 0x80) {
        return bad("is not valid UTF-8");
      }
    }
    const bool c1 = lead == 0xC2 && static_cast<unsigned char>(topic[i + 1]) < 0xA0;
    if (lead < 0x20 || lead == 0x7F || c1) return bad("has a control character");
    if (lead == '/') return bad("has a '/'");
    i += length;
  }
  if (n_chars > kMaxTopicChars) return bad("has " + std::to_string(n_chars) + " characters");
  return Status::Ok();
}

Result<std::unique_ptr<KnowledgeStore>> KnowledgeStore::Open(const std::string& path) {
  KV_ASSIGN_OR_RETURN(std::unique_ptr<SqliteDatabase> db, SqliteDatabase::Open(path));
  KV_RETURN_IF_ERROR(MigrateUnscopedFacts(*db));
  KV_RETURN_IF_ERROR(AddVersions(*db));
  KV_RETURN_IF_ERROR(db->Execute(std::string(kFactsTable) + kFtsSchema + kFeedTable));
  return std::unique_ptr<KnowledgeStore>(new KnowledgeStore(std::move(db)));
}

Status KnowledgeStore::Put(const std::string& scope, const std::vector<Fact>& facts) {
  for (const Fact& fact : facts) KV_RETURN_IF_ERROR(CheckFact(fact));
  if (facts.empty()) return Status::Ok();
  MutexLock lock(&mu_);
  SyncLocked();
  std::vector<Fact> versioned = facts;
  const int64_t now_us = std::chrono::duration_cast<std::chrono::microseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
  last_version_ = std::max(last_version_ + 1, now_us);
  for (Fact& fact : versioned) fact.version = last_version_;
  KV_RETURN_IF_ERROR(PutInTransaction(scope, versioned));
  if (feed_ != nullptr) {
    // Applied here first, so the write holds whatever the feed does; published after the
    // writes that still wait. Applying it again from the feed changes nothing.
    unpublished_.push_back(FeedRecord(scope, versioned));
    SyncLocked();
  }
  return Status::Ok();
}

Status KnowledgeStore::PutInTransaction(const std::string& scope, const std::vector<Fact>& facts) {
  KV_RETURN_IF_ERROR(db_->Execute("BEGIN IMMEDIATE"));
  Status stored = PutLocked(scope, facts);
  if (!stored.ok()) {
    db_->Execute("ROLLBACK").IgnoreError();
    return stored;
  }
  return db_->Execute("COMMIT");
}

void KnowledgeStore::SetFeed(KnowledgeFeed* feed) {
  MutexLock lock(&mu_);
  feed_ = feed;
  Result<std::unique_ptr<SqliteStatement>> query =
      db_->Prepare("SELECT epoch, cursor, last FROM feed_cursor WHERE id = 1");
  if (query.ok() && (*query)->Step().value_or(false)) {
    epoch_ = (*query)->ColumnText(0);
    cursor_ = (*query)->ColumnInt(1);
    last_hash_ = (*query)->ColumnText(2);
  }
  SyncLocked();  // joins now: a store's own facts go in before anyone reads the feed
}

Status KnowledgeStore::SaveCursorLocked() {
  KV_ASSIGN_OR_RETURN(std::unique_ptr<SqliteStatement> save,
                      db_->Prepare("INSERT OR REPLACE INTO feed_cursor (id, epoch, cursor, last)"
                                   " VALUES (1, ?1, ?2, ?3)"));
  KV_RETURN_IF_ERROR(save->Bind(1, epoch_));
  KV_RETURN_IF_ERROR(save->Bind(2, cursor_));
  KV_RETURN_IF_ERROR(save->Bind(3, last_hash_));
  return save->Run();
}

Result<std::vector<std::string>> KnowledgeStore::LocalRecordsLocked() {
  KV_ASSIGN_OR_RETURN(std::unique_ptr<SqliteStatement> query,
                      db_->Prepare("SELECT scope, topic, key, value, version FROM facts"
                                   " ORDER BY scope, version, id"));
  std::vector<std::string> records;
  std::string scope;
  std::vector<Fact> facts;
  auto flush = [&] {
    if (!facts.empty()) records.push_back(FeedRecord(scope, facts));
    facts.clear();
  };
  while (true) {
    KV_ASSIGN_OR_RETURN(bool row, query->Step());
    if (!row) break;
    std::string row_scope = query->ColumnText(0);
    if (row_scope != scope || facts.size() >= kFactsPerRecord) {
      flush();
      scope = std::move(row_scope);
    }
    Fact fact{query->ColumnText(1), query->ColumnText(2), query->ColumnText(3)};
    fact.version = query->ColumnInt(4);
    facts.push_back(std::move(fact));
  }
  flush();
  return records;
}

Status KnowledgeStore::ApplyLocked(KnowledgeFeed::Batch batch) {
  while (true) {
    for (const std::string& record : batch.records) {
      Result<std::pair<std::string, std::vector<Fact>>> parsed = ParseFeedRecord(record);
      Status applied =
          parsed.ok() ? PutInTransaction(parsed->first, parsed->second) : parsed.status();
      if (!applied.ok() && applied.code() != StatusCode::kCorruption &&
          applied.code() != StatusCode::kInvalidArgument) {
        return applied;  // busy or full: this record again at the next call
      }
      if (!applied.ok()) {
        KV_LOG(kWarning) << "knowledge: shared record " << cursor_
                         << " skipped: " << applied.ToString();
      }
      last_hash_ = RecordHash(record);
      ++cursor_;
    }
    if (batch.records.size() < kFactsPerRecord) return Status::Ok();
    KV_ASSIGN_OR_RETURN(batch, feed_->Read(cursor_, kFactsPerRecord));
    if (batch.epoch != epoch_) return UnavailableError("the shared feed changed while read");
  }
}

Status KnowledgeStore::JoinLocked(const KnowledgeFeed::Batch& first) {
  epoch_ = first.epoch;
  cursor_ = 1;
  last_hash_.clear();
  if (!epoch_.empty()) {
    KV_ASSIGN_OR_RETURN(KnowledgeFeed::Batch batch, feed_->Read(1, kFactsPerRecord));
    KV_RETURN_IF_ERROR(ApplyLocked(std::move(batch)));
  }
  // Everything this store holds, its writes made while away included: what the feed lost
  // comes back, and versions keep older copies from overwriting newer ones anywhere.
  KV_ASSIGN_OR_RETURN(std::vector<std::string> records, LocalRecordsLocked());
  if (!records.empty()) KV_RETURN_IF_ERROR(feed_->Publish(records));
  unpublished_.clear();
  if (epoch_.empty()) {
    KV_ASSIGN_OR_RETURN(KnowledgeFeed::Batch created, feed_->Read(1, 0));
    epoch_ = created.epoch;
  }
  return Status::Ok();
}

void KnowledgeStore::SyncLocked() {
  if (feed_ == nullptr) return;
  if (!unpublished_.empty() && !epoch_.empty()) {
    // Before reading: applied from the feed below, in their place among others' writes.
    if (!feed_->Publish(unpublished_).ok()) return;
    unpublished_.clear();
  }
  // The record before the cursor comes along: the feed is still the one applied only if it is
  // the one applied there (a feed restored from an older snapshot keeps its epoch, but not
  // its records at those positions, and new records there would be skipped).
  const int64_t from = cursor_ > 1 ? cursor_ - 1 : 1;
  Result<KnowledgeFeed::Batch> batch =
      feed_->Read(from, kFactsPerRecord + static_cast<int64_t>(cursor_ - from));
  if (!batch.ok()) return;
  bool followed = !batch->epoch.empty() && batch->epoch == epoch_;
  if (followed && from < cursor_) {
    followed = !batch->records.empty() && RecordHash(batch->records.front()) == last_hash_;
    if (followed) batch->records.erase(batch->records.begin());
  }
  if (!followed) {
    if (Status joined = JoinLocked(*batch); !joined.ok()) {
      epoch_.clear();  // joined again from the start at the next call
      KV_LOG(kDebug) << "knowledge: not joined to the shared feed yet: " << joined.ToString();
      return;
    }
    batch = feed_->Read(cursor_, kFactsPerRecord);
    if (!batch.ok()) return;
  }
  if (Status applied = ApplyLocked(std::move(batch).value()); !applied.ok()) {
    KV_LOG(kDebug) << "knowledge: shared feed applied in part: " << applied.ToString();
  }
  SaveCursorLocked().IgnoreError();
}

Status KnowledgeStore::PutLocked(const std::string& scope, const std::vector<Fact>& facts) {
  KV_ASSIGN_OR_RETURN(
      std::unique_ptr<SqliteStatement> insert,
      db_->Prepare("INSERT INTO facts (scope, topic, key, value, version)"
                   " VALUES (?1, ?2, ?3, ?4, ?5)"
                   " ON CONFLICT (scope, topic, key) DO UPDATE SET value = ?4, version = ?5,"
                   " updated_at = unixepoch() WHERE ?5 >= facts.version"));
  for (const Fact& fact : facts) {
    KV_RETURN_IF_ERROR(insert->Reset());
    KV_RETURN_IF_ERROR(insert->Bind(1, scope));
    KV_RETURN_IF_ERROR(insert->Bind(2, fact.topic));
    KV_RETURN_IF_ERROR(insert->Bind(3, fact.key));
    KV_RETURN_IF_ERROR(insert->Bind(4, fact.value));
    KV_RETURN_IF_ERROR(insert->Bind(5, fact.version));
    KV_RETURN_IF_ERROR(insert->Run());
  }
  return Status::Ok();
}

Result<std::vector<TopicSummary>> KnowledgeStore::Topics(const std::string& scope) {
  MutexLock lock(&mu_);
  SyncLocked();
  KV_ASSIGN_OR_RETURN(std::unique_ptr<SqliteStatement> query,
                      db_->Prepare("SELECT topic, COUNT(*) FROM facts WHERE scope = ?1"
                                   " GROUP BY topic ORDER BY topic"));
  KV_RETURN_IF_ERROR(query->Bind(1, scope));
  std::vector<TopicSummary> topics;
  while (true) {
    KV_ASSIGN_OR_RETURN(bool row, query->Step());
    if (!row) break;
    topics.push_back({query->ColumnText(0), query->ColumnInt(1)});
  }
  return topics;
}

Result<std::vector<Fact>> KnowledgeStore::TopicFacts(const std::string& scope,
                                                     const std::string& topic) {
  MutexLock lock(&mu_);
  SyncLocked();
  KV_ASSIGN_OR_RETURN(std::unique_ptr<SqliteStatement> query,
                      db_->Prepare("SELECT topic, key, value FROM facts"
                                   " WHERE scope = ?1 AND topic = ?2 ORDER BY key"));
  KV_RETURN_IF_ERROR(query->Bind(1, scope));
  KV_RETURN_IF_ERROR(query->Bind(2, topic));
  return ReadFacts(*query, /*scored=*/false);
}

Result<std::vector<Fact>> KnowledgeStore::Search(const std::string& scope, const std::string& text,
                                                 int limit) {
  const std::string match = FtsQuery(text);
  if (match.empty() || limit <= 0) return std::vector<Fact>();
  MutexLock lock(&mu_);
  SyncLocked();
  KV_ASSIGN_OR_RETURN(std::unique_ptr<SqliteStatement> query,
                      db_->Prepare("SELECT f.topic, f.key, f.value, -bm25(facts_fts)"
                                   " FROM facts_fts JOIN facts f ON f.id = facts_fts.rowid"
                                   " WHERE facts_fts MATCH ?1 AND f.scope = ?3"
                                   " ORDER BY bm25(facts_fts) LIMIT ?2"));
  KV_RETURN_IF_ERROR(query->Bind(1, match));
  KV_RETURN_IF_ERROR(query->Bind(2, static_cast<int64_t>(limit)));
  KV_RETURN_IF_ERROR(query->Bind(3, scope));
  return ReadFacts(*query, /*scored=*/true);
}

Result<KnowledgeStats> KnowledgeStore::Stats(const std::string& scope) {
  MutexLock lock(&mu_);
  SyncLocked();
  KV_ASSIGN_OR_RETURN(
      std::unique_ptr<SqliteStatement> query,
      db_->Prepare("SELECT COUNT(DISTINCT topic), COUNT(*) FROM facts WHERE scope = ?1"));
  KV_RETURN_IF_ERROR(query->Bind(1, scope));
  return ReadStats(*query);
}

Result<KnowledgeStats> KnowledgeStore::TotalStats() {
  MutexLock lock(&mu_);
  SyncLocked();
  // A topic name in two scopes is two topics.
  KV_ASSIGN_OR_RETURN(std::unique_ptr<SqliteStatement> query,
                      db_->Prepare("SELECT (SELECT COUNT(*) FROM (SELECT DISTINCT scope, topic"
                                   " FROM facts)), COUNT(*) FROM facts"));
  return ReadStats(*query);
}

}  // namespace kvault::memory
