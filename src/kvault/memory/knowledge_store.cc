#include "kvault/memory/knowledge_store.h"

#include <cctype>

#include "kvault/base/status_macros.h"

namespace kvault::memory {

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

Result<std::unique_ptr<KnowledgeStore>> KnowledgeStore::Open(const std::string& path) {
  KV_ASSIGN_OR_RETURN(std::unique_ptr<SqliteDatabase> db, SqliteDatabase::Open(path));
  KV_RETURN_IF_ERROR(db->Execute(
      "CREATE TABLE IF NOT EXISTS facts ("
      "  id INTEGER PRIMARY KEY, topic TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,"
      "  updated_at INTEGER NOT NULL DEFAULT (unixepoch()), UNIQUE (topic, key));"
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
      "  VALUES (new.id, new.topic, new.key, new.value); END;"));
  return std::unique_ptr<KnowledgeStore>(new KnowledgeStore(std::move(db)));
}

Status KnowledgeStore::Put(const std::string& topic, const std::string& key,
                           const std::string& value) {
  if (topic.empty() || key.empty() || value.empty()) {
    return InvalidArgumentError("a fact needs a topic, a key and a value");
  }
  MutexLock lock(&mu_);
  KV_ASSIGN_OR_RETURN(std::unique_ptr<SqliteStatement> insert,
                      db_->Prepare("INSERT INTO facts (topic, key, value) VALUES (?1, ?2, ?3)"
                                   " ON CONFLICT (topic, key) DO UPDATE SET value = ?3,"
                                   " updated_at = unixepoch()"));
  KV_RETURN_IF_ERROR(insert->Bind(1, topic));
  KV_RETURN_IF_ERROR(insert->Bind(2, key));
  KV_RETURN_IF_ERROR(insert->Bind(3, value));
  return insert->Run();
}

Result<std::vector<TopicSummary>> KnowledgeStore::Topics() {
  MutexLock lock(&mu_);
  KV_ASSIGN_OR_RETURN(std::unique_ptr<SqliteStatement> query,
                      db_->Prepare("SELECT topic, COUNT(*) FROM facts GROUP BY topic"
                                   " ORDER BY topic"));
  std::vector<TopicSummary> topics;
  while (true) {
    KV_ASSIGN_OR_RETURN(bool row, query->Step());
    if (!row) break;
    topics.push_back({query->ColumnText(0), query->ColumnInt(1)});
  }
  return topics;
}

Result<std::vector<Fact>> KnowledgeStore::TopicFacts(const std::string& topic) {
  MutexLock lock(&mu_);
  KV_ASSIGN_OR_RETURN(std::unique_ptr<SqliteStatement> query,
                      db_->Prepare("SELECT topic, key, value FROM facts WHERE topic = ?1"
                                   " ORDER BY key"));
  KV_RETURN_IF_ERROR(query->Bind(1, topic));
  std::vector<Fact> facts;
  while (true) {
    KV_ASSIGN_OR_RETURN(bool row, query->Step());
    if (!row) break;
    facts.push_back({query->ColumnText(0), query->ColumnText(1), query->ColumnText(2), 0});
  }
  return facts;
}

Result<std::vector<Fact>> KnowledgeStore::Search(const std::string& text, int limit) {
  const std::string match = FtsQuery(text);
  if (match.empty() || limit <= 0) return std::vector<Fact>();
  MutexLock lock(&mu_);
  KV_ASSIGN_OR_RETURN(std::unique_ptr<SqliteStatement> query,
                      db_->Prepare("SELECT f.topic, f.key, f.value, -bm25(facts_fts)"
                                   " FROM facts_fts JOIN facts f ON f.id = facts_fts.rowid"
                                   " WHERE facts_fts MATCH ?1 ORDER BY bm25(facts_fts) LIMIT ?2"));
  KV_RETURN_IF_ERROR(query->Bind(1, match));
  KV_RETURN_IF_ERROR(query->Bind(2, static_cast<int64_t>(limit)));
  std::vector<Fact> facts;
  while (true) {
    KV_ASSIGN_OR_RETURN(bool row, query->Step());
    if (!row) break;
    facts.push_back(
        {query->ColumnText(0), query->ColumnText(1), query->ColumnText(2), query->ColumnDouble(3)});
  }
  return facts;
}

Result<KnowledgeStats> KnowledgeStore::Stats() {
  MutexLock lock(&mu_);
  KV_ASSIGN_OR_RETURN(std::unique_ptr<SqliteStatement> query,
                      db_->Prepare("SELECT COUNT(DISTINCT topic), COUNT(*) FROM facts"));
  KV_ASSIGN_OR_RETURN(bool row, query->Step());
  if (!row) return KnowledgeStats{};
  return KnowledgeStats{query->ColumnInt(0), query->ColumnInt(1)};
}

}  // namespace kvault::memory
