#include "kvault/analytics/analytics_store.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <limits>
#include <map>

#include "kvault/base/log.h"
#include "kvault/base/status_macros.h"

namespace kvault::analytics {
namespace {

constexpr char kSchema[] =
    "CREATE TABLE IF NOT EXISTS requests ("
    "  id INTEGER PRIMARY KEY, ts_ms INTEGER NOT NULL, conversation TEXT NOT NULL,"
    "  key TEXT NOT NULL, prefix TEXT NOT NULL, prompt_tokens INTEGER NOT NULL,"
    "  completion_tokens INTEGER NOT NULL, trie_matched_tokens INTEGER NOT NULL,"
    "  cached_tokens INTEGER NOT NULL, ttft_ms REAL NOT NULL, total_ms REAL NOT NULL,"
    "  finish_reason TEXT NOT NULL);"
    "CREATE INDEX IF NOT EXISTS requests_ts ON requests (ts_ms);";

constexpr size_t kBatchRows = 512;
constexpr std::chrono::milliseconds kBatchInterval{200};

// Nearest rank: the smallest value with at least p of the values at or below it.
double Percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const size_t rank = static_cast<size_t>(std::ceil(p * static_cast<double>(values.size())));
  return values[std::clamp<size_t>(rank, 1, values.size()) - 1];
}

std::string HourOf(int64_t ts_ms) {
  const std::time_t t = static_cast<std::time_t>(ts_ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char text[32];
  std::strftime(text, sizeof(text), "%Y-%m-%dT%H:00:00Z", &tm);
  return text;
}

}  // namespace

Result<GroupBy> ParseGroupBy(const std::string& name) {
  if (name.empty()) return GroupBy::kNone;
  if (name == "conversation") return GroupBy::kConversation;
  if (name == "key") return GroupBy::kKey;
  if (name == "prefix") return GroupBy::kPrefix;
  if (name == "hour") return GroupBy::kHour;
  return InvalidArgumentError("group_by is one of conversation, key, prefix, hour; not '" + name +
                              "'");
}

AnalyticsStore::AnalyticsStore(const AnalyticsOptions& options, std::unique_ptr<SqliteDatabase> db)
    : options_(options), db_(std::move(db)) {}

Result<std::unique_ptr<AnalyticsStore>> AnalyticsStore::Open(const AnalyticsOptions& options) {
  KV_ASSIGN_OR_RETURN(std::unique_ptr<SqliteDatabase> db, SqliteDatabase::Open(options.path));
  KV_RETURN_IF_ERROR(db->Execute(kSchema));
  std::unique_ptr<AnalyticsStore> store(new AnalyticsStore(options, std::move(db)));
  store->writer_ = std::thread([s = store.get()] { s->WriterLoop(); });
  return store;
}

AnalyticsStore::~AnalyticsStore() {
  {
    MutexLock lock(&mu_);
    stopping_ = true;
    wake_.SignalAll();
  }
  writer_.join();
}

void AnalyticsStore::Record(RequestRow row) {
  MutexLock lock(&mu_);
  queue_.push_back(std::move(row));
  ++queued_;
  if (queue_.size() >= kBatchRows) wake_.Signal();
}

void AnalyticsStore::Flush() {
  MutexLock lock(&mu_);
  const int64_t target = queued_;
  wake_.Signal();
  while (written_count_ < target) written_.Wait(&mu_);
}

int64_t AnalyticsStore::write_errors() const {
  MutexLock lock(&mu_);
  return write_errors_;
}

void AnalyticsStore::WriterLoop() {
  while (true) {
    std::vector<RequestRow> batch;
    bool stopping = false;
    {
      MutexLock lock(&mu_);
      if (queue_.empty() && !stopping_) wake_.WaitFor(&mu_, kBatchInterval);
      batch.swap(queue_);
      stopping = stopping_;
    }
    if (!batch.empty()) {
      Status written;
      {
        MutexLock db_lock(&db_mu_);
        written = WriteBatch(batch);
      }
      MutexLock lock(&mu_);
      if (!written.ok()) {
        // Analytics never fail a request: the batch is dropped, counted and logged once.
        if (write_errors_++ == 0) {
          KV_LOG(kWarning) << "analytics: " << written.ToString();
        }
      }
      written_count_ += static_cast<int64_t>(batch.size());
      written_.SignalAll();
    }
    if (stopping && batch.empty()) return;
  }
}

Status AnalyticsStore::WriteBatch(const std::vector<RequestRow>& rows) {
  KV_RETURN_IF_ERROR(db_->Execute("BEGIN IMMEDIATE"));
  Status status = InsertAndTrim(rows);
  if (!status.ok()) {
    db_->Execute("ROLLBACK").IgnoreError();
    return status;
  }
  return db_->Execute("COMMIT");
}

Status AnalyticsStore::InsertAndTrim(const std::vector<RequestRow>& rows) {
  {
    KV_ASSIGN_OR_RETURN(
        std::unique_ptr<SqliteStatement> insert,
        db_->Prepare("INSERT INTO requests (ts_ms, conversation, key, prefix, prompt_tokens,"
                     " completion_tokens, trie_matched_tokens, cached_tokens, ttft_ms, total_ms,"
                     " finish_reason) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"));
    for (const RequestRow& r : rows) {
      KV_RETURN_IF_ERROR(insert->Reset());
      KV_RETURN_IF_ERROR(insert->Bind(1, r.ts_ms));
      KV_RETURN_IF_ERROR(insert->Bind(2, r.conversation));
      KV_RETURN_IF_ERROR(insert->Bind(3, r.key));
      KV_RETURN_IF_ERROR(insert->Bind(4, r.prefix));
      KV_RETURN_IF_ERROR(insert->Bind(5, r.prompt_tokens));
      KV_RETURN_IF_ERROR(insert->Bind(6, r.completion_tokens));
      KV_RETURN_IF_ERROR(insert->Bind(7, r.trie_matched_tokens));
      KV_RETURN_IF_ERROR(insert->Bind(8, r.cached_tokens));
      KV_RETURN_IF_ERROR(insert->Bind(9, r.ttft_ms));
      KV_RETURN_IF_ERROR(insert->Bind(10, r.total_ms));
      KV_RETURN_IF_ERROR(insert->Bind(11, r.finish_reason));
      KV_RETURN_IF_ERROR(insert->Run());
    }
    // Retention: by age, then by count (the oldest first).
    const int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                               std::chrono::system_clock::now().time_since_epoch())
                               .count();
    KV_ASSIGN_OR_RETURN(std::unique_ptr<SqliteStatement> by_age,
                        db_->Prepare("DELETE FROM requests WHERE ts_ms < ?1"));
    KV_RETURN_IF_ERROR(
        by_age->Bind(1, now_ms - static_cast<int64_t>(options_.retention_days * 86400.0 * 1000.0)));
    KV_RETURN_IF_ERROR(by_age->Run());
    KV_ASSIGN_OR_RETURN(std::unique_ptr<SqliteStatement> by_count,
                        db_->Prepare("DELETE FROM requests WHERE id <= (SELECT MAX(id) FROM "
                                     "requests) - ?1"));
    KV_RETURN_IF_ERROR(by_count->Bind(1, options_.max_rows));
    return by_count->Run();
  }
}

Result<std::vector<RequestRow>> AnalyticsStore::Rows(int64_t since_ms, int64_t until_ms,
                                                     int64_t limit, const std::string* key) {
  MutexLock db_lock(&db_mu_);
  KV_ASSIGN_OR_RETURN(
      std::unique_ptr<SqliteStatement> query,
      db_->Prepare(std::string("SELECT id, ts_ms, conversation, key, prefix, prompt_tokens,"
                               " completion_tokens, trie_matched_tokens, cached_tokens, ttft_ms,"
                               " total_ms, finish_reason FROM requests"
                               " WHERE ts_ms >= ?1 AND ts_ms < ?2") +
                   (key != nullptr ? " AND key = ?4" : "") + " ORDER BY id LIMIT ?3"));
  KV_RETURN_IF_ERROR(query->Bind(1, since_ms));
  KV_RETURN_IF_ERROR(query->Bind(2, until_ms));
  KV_RETURN_IF_ERROR(query->Bind(3, limit));
  if (key != nullptr) KV_RETURN_IF_ERROR(query->Bind(4, *key));
  std::vector<RequestRow> rows;
  while (true) {
    KV_ASSIGN_OR_RETURN(bool row, query->Step());
    if (!row) break;
    RequestRow r;
    r.id = query->ColumnInt(0);
    r.ts_ms = query->ColumnInt(1);
    r.conversation = query->ColumnText(2);
    r.key = query->ColumnText(3);
    r.prefix = query->ColumnText(4);
    r.prompt_tokens = query->ColumnInt(5);
    r.completion_tokens = query->ColumnInt(6);
    r.trie_matched_tokens = query->ColumnInt(7);
    r.cached_tokens = query->ColumnInt(8);
    r.ttft_ms = query->ColumnDouble(9);
    r.total_ms = query->ColumnDouble(10);
    r.finish_reason = query->ColumnText(11);
    rows.push_back(std::move(r));
  }
  return rows;
}

Result<std::vector<Summary>> AnalyticsStore::Summarize(int64_t since_ms, int64_t until_ms,
                                                       GroupBy group_by, const std::string* key) {
  KV_ASSIGN_OR_RETURN(std::vector<RequestRow> rows,
                      Rows(since_ms, until_ms, std::numeric_limits<int64_t>::max(), key));
  struct Acc {
    Summary summary;
    std::vector<double> ttft, total;
  };
  std::map<std::string, Acc> groups;
  for (const RequestRow& r : rows) {
    std::string name;
    switch (group_by) {
      case GroupBy::kNone: break;
      case GroupBy::kConversation: name = r.conversation; break;
      case GroupBy::kKey: name = r.key; break;
      case GroupBy::kPrefix: name = r.prefix; break;
      case GroupBy::kHour: name = HourOf(r.ts_ms); break;
    }
    Acc& acc = groups[name];
    Summary& s = acc.summary;
    s.group = name;
    ++s.requests;
    s.prompt_tokens += r.prompt_tokens;
    s.completion_tokens += r.completion_tokens;
    s.trie_matched_tokens += r.trie_matched_tokens;
    s.cached_tokens += r.cached_tokens;
    if (r.ttft_ms >= 0) acc.ttft.push_back(r.ttft_ms);
    acc.total.push_back(r.total_ms);
  }
  std::vector<Summary> summaries;
  for (auto& [name, acc] : groups) {
    Summary& s = acc.summary;
    if (s.prompt_tokens > 0) {
      s.cache_hit_rate =
          static_cast<double>(s.cached_tokens) / static_cast<double>(s.prompt_tokens);
      s.trie_hit_rate =
          static_cast<double>(s.trie_matched_tokens) / static_cast<double>(s.prompt_tokens);
    }
    s.ttft_p50_ms = Percentile(acc.ttft, 0.50);
    s.ttft_p95_ms = Percentile(acc.ttft, 0.95);
    s.ttft_p99_ms = Percentile(acc.ttft, 0.99);
    s.total_p50_ms = Percentile(acc.total, 0.50);
    s.total_p95_ms = Percentile(acc.total, 0.95);
    s.total_p99_ms = Percentile(acc.total, 0.99);
    summaries.push_back(std::move(s));
  }
  return summaries;
}

}  // namespace kvault::analytics
