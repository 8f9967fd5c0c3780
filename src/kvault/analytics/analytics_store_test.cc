#include "kvault/analytics/analytics_store.h"

#include <filesystem>

#include <gtest/gtest.h>
#include <unistd.h>

namespace kvault::analytics {
namespace {

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

RequestRow Row(const std::string& conversation, int64_t prompt, int64_t cached, double ttft) {
  RequestRow r;
  r.ts_ms = NowMs();
  r.conversation = conversation;
  r.prefix = "p-" + conversation.substr(0, 1);
  r.prompt_tokens = prompt;
  r.cached_tokens = cached;
  r.trie_matched_tokens = cached / 2;
  r.completion_tokens = 4;
  r.ttft_ms = ttft;
  r.total_ms = ttft + 10;
  r.finish_reason = "stop";
  return r;
}

TEST(AnalyticsStoreTest, RowsAreWrittenInBatchesAndSummarizedPerGroup) {
  std::unique_ptr<AnalyticsStore> store = AnalyticsStore::Open({.path = ":memory:"}).value();
  for (int i = 1; i <= 100; ++i) store->Record(Row(i % 2 == 0 ? "even" : "odd", 100, i, i));
  store->Flush();
  const std::vector<RequestRow> rows = store->Rows(0, NowMs() + 1000, 1000).value();
  ASSERT_EQ(rows.size(), 100u);
  const std::vector<Summary> all = store->Summarize(0, NowMs() + 1000, GroupBy::kNone).value();
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].requests, 100);
  EXPECT_EQ(all[0].prompt_tokens, 10000);
  EXPECT_EQ(all[0].cached_tokens, 5050);
  EXPECT_DOUBLE_EQ(all[0].cache_hit_rate, 0.505);
  EXPECT_DOUBLE_EQ(all[0].ttft_p50_ms, 50);  // nearest rank of 1..100
  EXPECT_DOUBLE_EQ(all[0].ttft_p99_ms, 99);
  EXPECT_DOUBLE_EQ(all[0].total_p95_ms, 105);
  const std::vector<Summary> by =
      store->Summarize(0, NowMs() + 1000, GroupBy::kConversation).value();
  ASSERT_EQ(by.size(), 2u);
  EXPECT_EQ(by[0].group, "even");
  EXPECT_EQ(by[0].requests, 50);
  EXPECT_EQ(by[0].cached_tokens, 2550);
  EXPECT_EQ(store->Summarize(0, 1, GroupBy::kHour).value().size(), 0u);  // nothing that early
  EXPECT_FALSE(ParseGroupBy("week").ok());
}

TEST(AnalyticsStoreTest, RetentionKeepsTheNewestRows) {
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("kvault_analytics_" + std::to_string(::getpid()) + ".db"))
                               .string();
  {
    std::unique_ptr<AnalyticsStore> store =
        AnalyticsStore::Open({.path = path, .max_rows = 10}).value();
    RequestRow old = Row("old", 10, 0, 1);
    old.ts_ms = NowMs() - int64_t{40} * 86400 * 1000;  // beyond the 30 days kept
    store->Record(old);
    for (int i = 0; i < 25; ++i) store->Record(Row("new", 10, 0, i));
  }
  std::unique_ptr<AnalyticsStore> reopened = AnalyticsStore::Open({.path = path}).value();
  const std::vector<RequestRow> rows = reopened->Rows(0, NowMs() + 1000, 100).value();
  ASSERT_EQ(rows.size(), 10u);  // the destructor wrote the queue; the newest 10 kept
  EXPECT_EQ(rows.back().ttft_ms, 24);
  for (const RequestRow& r : rows) EXPECT_EQ(r.conversation, "new");
  reopened.reset();
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path + suffix);
}

}  // namespace
}  // namespace kvault::analytics
