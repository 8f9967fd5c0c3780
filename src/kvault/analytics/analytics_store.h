// analytics/analytics_store.h: every generation request kvault answered, one row each, in a
// SQLite file (<data-dir>/analytics.db), for cache analytics (the KVern seed): what it asked,
// how much of its prompt kvault's prompt trie had seen before, what the engine (or the
// upstream) reported cached, and how fast it was.
//
// Rows are queued by Record() and written by a background thread in batches (one
// transaction per batch, every 200 ms or 512 rows), never on the request's path; Flush()
// waits for what is queued. Retention keeps the file bounded: rows older than
// `retention_days`, and the oldest beyond `max_rows`, are deleted after each batch.
//
// Summaries (Summarize) group rows by conversation, API key, prefix or hour and give counts,
// token totals, hit rates and TTFT / duration percentiles (nearest rank), computed from the
// rows themselves, so they equal a recomputation from Rows().
//
// Thread-safety: all methods may be called from any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "kvault/base/mutex.h"
#include "kvault/base/result.h"
#include "kvault/base/sqlite.h"

namespace kvault::analytics {

struct RequestRow {
  int64_t id = 0;            // assigned when written
  int64_t ts_ms = 0;         // Unix milliseconds, when the request arrived
  std::string conversation;  // "" for a stateless request
  std::string key;           // the API key's scope ("" without keys)
  std::string prefix;        // hex hash of the prompt's first 128 tokens (its shared start)
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  int64_t trie_matched_tokens = 0;  // prompt tokens the prompt trie had seen before
  int64_t cached_tokens = 0;        // reported reused by the engine or the upstream
  double ttft_ms = -1;              // -1: no token
  double total_ms = 0;
  std::string finish_reason;
};

enum class GroupBy { kNone, kConversation, kKey, kPrefix, kHour };
Result<GroupBy> ParseGroupBy(const std::string& name);  // "", conversation, key, prefix, hour

struct Summary {
  std::string group;  // the conversation, key, prefix or hour (ISO 8601); "" for kNone
  int64_t requests = 0;
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  int64_t trie_matched_tokens = 0;
  int64_t cached_tokens = 0;
  double cache_hit_rate = 0;                                 // cached_tokens / prompt_tokens
  double trie_hit_rate = 0;                                  // trie_matched_tokens / prompt_tokens
  double ttft_p50_ms = 0, ttft_p95_ms = 0, ttft_p99_ms = 0;  // of requests with a token
  double total_p50_ms = 0, total_p95_ms = 0, total_p99_ms = 0;
};

struct AnalyticsOptions {
  std::string path;  // ":memory:" for a throwaway store
  double retention_days = 30;
  int64_t max_rows = 1000000;
};

class AnalyticsStore {
 public:
  static Result<std::unique_ptr<AnalyticsStore>> Open(const AnalyticsOptions& options);
  ~AnalyticsStore();  // writes what is queued

  // Queues a row (never blocks on the disk).
  void Record(RequestRow row);
  // Waits until every row recorded before the call is written.
  void Flush();
  // Rows with since_ms <= ts_ms < until_ms (of one API key scope when `key` is given),
  // oldest first, at most `limit`.
  Result<std::vector<RequestRow>> Rows(int64_t since_ms, int64_t until_ms, int64_t limit,
                                       const std::string* key = nullptr);
  // The same rows summarized, one Summary per group (by group name).
  Result<std::vector<Summary>> Summarize(int64_t since_ms, int64_t until_ms, GroupBy group_by,
                                         const std::string* key = nullptr);
  int64_t write_errors() const;

 private:
  explicit AnalyticsStore(const AnalyticsOptions& options, std::unique_ptr<SqliteDatabase> db);
  void WriterLoop();
  Status WriteBatch(const std::vector<RequestRow>& rows) KV_REQUIRES(db_mu_);
  Status InsertAndTrim(const std::vector<RequestRow>& rows) KV_REQUIRES(db_mu_);

  const AnalyticsOptions options_;
  Mutex db_mu_;
  std::unique_ptr<SqliteDatabase> db_ KV_PT_GUARDED_BY(db_mu_);
  mutable Mutex mu_;
  CondVar wake_;
  CondVar written_;
  std::vector<RequestRow> queue_ KV_GUARDED_BY(mu_);
  int64_t queued_ KV_GUARDED_BY(mu_) = 0;         // rows ever queued
  int64_t written_count_ KV_GUARDED_BY(mu_) = 0;  // of them, written (or given up)
  int64_t write_errors_ KV_GUARDED_BY(mu_) = 0;
  bool stopping_ KV_GUARDED_BY(mu_) = false;
  std::thread writer_;
};

}  // namespace kvault::analytics
