// memory/knowledge_store.h: named topics holding key/value facts, with full-text search
// (SQLite FTS5, BM25 ranking), kept in one SQLite file. Shared by `kvault chat` (/topics,
// /store, /search, /stats) and the HTTP API; facts can be recalled into a prompt like chunks.
//
// Thread-safety: all methods may be called from any thread (one mutex around the database).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kvault/base/mutex.h"
#include "kvault/base/result.h"
#include "kvault/base/sqlite.h"

namespace kvault::memory {

struct Fact {
  std::string topic;
  std::string key;
  std::string value;
  double score = 0;  // search relevance, higher is better (0 outside searches)
};

struct TopicSummary {
  std::string name;
  int64_t n_facts = 0;
};

struct KnowledgeStats {
  int64_t topics = 0;
  int64_t facts = 0;
};

class KnowledgeStore {
 public:
  // Opens or creates the store (":memory:" for a throwaway one).
  static Result<std::unique_ptr<KnowledgeStore>> Open(const std::string& path);

  // Sets topic/key to value (replacing an earlier value). InvalidArgument for empty fields.
  Status Put(const std::string& topic, const std::string& key, const std::string& value);
  Result<std::vector<TopicSummary>> Topics();
  Result<std::vector<Fact>> TopicFacts(const std::string& topic);
  // Facts whose topic, key or value match the words of `query`, best first.
  Result<std::vector<Fact>> Search(const std::string& query, int limit);
  Result<KnowledgeStats> Stats();

 private:
  explicit KnowledgeStore(std::unique_ptr<SqliteDatabase> db) : db_(std::move(db)) {}
  Mutex mu_;
  std::unique_ptr<SqliteDatabase> db_ KV_PT_GUARDED_BY(mu_);
};

// An FTS5 MATCH expression for free text: each word quoted (so FTS syntax in user input is
// inert), joined by OR. Empty if the text has no words.
std::string FtsQuery(const std::string& text);

}  // namespace kvault::memory
