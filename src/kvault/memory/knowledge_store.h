// memory/knowledge_store.h: named topics holding key/value facts, with full-text search
// (SQLite FTS5, BM25 ranking), kept in one SQLite file. Shared by `kvault chat` (/topics,
// /store, /search, /stats) and the HTTP API (/v1/knowledge); facts can be recalled into a
// prompt like chunks.
//
// Scopes: every fact belongs to a scope, and every read, write and search names one. The
// server passes the API key's scope (server/auth.h), so one key never sees another key's
// facts; `kvault chat` and a server without keys use the scope "". A topic or key is unique
// within its scope only.
//
// WART: BM25 scores use FTS5's statistics over the whole table, so a fact's score depends a
// little on how common its words are in other scopes' facts. Results are filtered by scope;
// only the score values are shared.
//
// Schema: files written before scopes existed (a `facts` table without a `scope` column) are
// migrated at Open: their facts move to the scope "".
//
// Shared by several replicas (SetFeed, conversation/remote_knowledge.h): every Put is also
// published to a feed, an ordered log of writes they all append to, and every call first
// applies what the feed holds beyond this store's cursor, in the feed's order (so replicas
// agree on the last value of a key). Every fact carries its write time (Fact::version) and
// an older version never replaces a newer one, so the order writes arrive in does not
// matter (last writer wins, by the writers' clocks). Joining a feed this store has not
// followed (a first start with one, Redis restarted empty or restored shorter than this
// store's cursor), the store applies the feed, then publishes everything it holds: what the
// feed lost comes back, and nothing older overwrites anything newer. While the feed does not
// answer, writes apply here and wait in memory to be published.
//
// Thread-safety: all methods may be called from any thread (one mutex around the database).
// Several processes may open the same file (SQLite WAL mode, 5 s busy timeout).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
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
  // When the value was written (wall clock, microseconds; Put sets it): with a shared feed
  // the newest version of a key wins wherever and in whatever order it arrives.
  int64_t version = 0;
};

struct TopicSummary {
  std::string name;
  int64_t n_facts = 0;
};

struct KnowledgeStats {
  int64_t topics = 0;
  int64_t facts = 0;
};

// An ordered log of fact writes shared by several stores. Its first entry names the feed
// (a new epoch whenever it is created empty); records follow from position 1.
class KnowledgeFeed {
 public:
  virtual ~KnowledgeFeed() = default;
  // Appends records in order, creating the feed (a new epoch) if empty; Unavailable when
  // the feed cannot be reached.
  virtual Status Publish(std::span<const std::string> records) = 0;
  struct Batch {
    std::string epoch;  // "" while the feed is empty
    std::vector<std::string> records;
  };
  // The records at positions [from, from + limit).
  virtual Result<Batch> Read(int64_t from, int64_t limit) = 0;
};

class KnowledgeStore {
 public:
  // Opens or creates the store (":memory:" for a throwaway one), migrating older files.
  static Result<std::unique_ptr<KnowledgeStore>> Open(const std::string& path);

  // Stores every fact in `scope` in one transaction, replacing the values of existing
  // (topic, key) pairs; `score` is ignored. InvalidArgument, and nothing stored, if a fact
  // has an empty topic, key or value.
  Status Put(const std::string& scope, const std::vector<Fact>& facts);
  // The scope's topics by name, with their fact counts.
  Result<std::vector<TopicSummary>> Topics(const std::string& scope);
  // The topic's facts by key; empty if the scope has no such topic.
  Result<std::vector<Fact>> TopicFacts(const std::string& scope, const std::string& topic);
  // The scope's facts whose topic, key or value match a word of `query`, best first, at most
  // `limit`. Empty for a query without words.
  Result<std::vector<Fact>> Search(const std::string& scope, const std::string& query, int limit);
  Result<KnowledgeStats> Stats(const std::string& scope);
  // Counts over every scope (for /health).
  Result<KnowledgeStats> TotalStats();
  // Shares the facts through `feed` (outlives the store); set before use.
  void SetFeed(KnowledgeFeed* feed);

 private:
  explicit KnowledgeStore(std::unique_ptr<SqliteDatabase> db) : db_(std::move(db)) {}
  Status PutLocked(const std::string& scope, const std::vector<Fact>& facts) KV_REQUIRES(mu_);
  Status PutInTransaction(const std::string& scope, const std::vector<Fact>& facts)
      KV_REQUIRES(mu_);
  // Applies the feed's records beyond the cursor (best effort: the store serves as it is when
  // the feed does not answer).
  void SyncLocked() KV_REQUIRES(mu_);
  // Joins the feed whose first batch is `batch` (see the class comment).
  Status JoinLocked(const KnowledgeFeed::Batch& batch) KV_REQUIRES(mu_);
  // Applies the records from the cursor on, `batch` first (read at the cursor). A record that
  // cannot be applied for a passing reason (a busy or full database) stops it there, the
  // cursor on that record.
  Status ApplyLocked(KnowledgeFeed::Batch batch) KV_REQUIRES(mu_);
  // Every local fact, as feed records.
  Result<std::vector<std::string>> LocalRecordsLocked() KV_REQUIRES(mu_);
  Status SaveCursorLocked() KV_REQUIRES(mu_);
  Mutex mu_;
  std::unique_ptr<SqliteDatabase> db_ KV_PT_GUARDED_BY(mu_);
  KnowledgeFeed* feed_ = nullptr;
  std::string epoch_ KV_GUARDED_BY(mu_);      // of the feed the cursor counts in
  int64_t cursor_ KV_GUARDED_BY(mu_) = 1;     // the next feed position to apply
  std::string last_hash_ KV_GUARDED_BY(mu_);  // of the record at cursor_ - 1
  std::vector<std::string> unpublished_ KV_GUARDED_BY(mu_);
  int64_t last_version_ KV_GUARDED_BY(mu_) = 0;  // versions Put gives only grow
};

// Topic names have 1 to kMaxTopicChars characters of UTF-8, none of them a control character
// (C0, DEL, C1) or '/' (the HTTP API puts topics in paths). InvalidArgument otherwise; Put
// checks every fact's topic with this.
constexpr int kMaxTopicChars = 128;
Status CheckTopicName(std::string_view topic);

// An FTS5 MATCH expression for free text: each word quoted (so FTS syntax in user input is
// inert), joined by OR. Empty if the text has no words.
std::string FtsQuery(const std::string& text);

}  // namespace kvault::memory
