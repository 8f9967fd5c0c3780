#include "kvault/server/metrics.h"

#include <gtest/gtest.h>

namespace kvault::server {
namespace {

TEST(MetricsTest, CountersAndGaugesExportWithLabels) {
  MetricsRegistry registry;
  registry.DefineCounter("req_total", "requests", {"route", "status"});
  registry.DefineGauge("depth", "queue depth");
  registry.Increment("req_total", {"chat", "200"});
  registry.Increment("req_total", {"chat", "200"});
  registry.Increment("req_total", {"chat", "503"});
  registry.Set("depth", {}, 3);
  const std::string text = registry.Export();
  EXPECT_NE(text.find("# TYPE req_total counter"), std::string::npos);
  EXPECT_NE(text.find("req_total{route=\"chat\",status=\"200\"} 2\n"), std::string::npos);
  EXPECT_NE(text.find("req_total{route=\"chat\",status=\"503\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("depth 3\n"), std::string::npos);
  EXPECT_EQ(registry.Value("req_total", {"chat", "200"}), 2);
}

TEST(MetricsTest, HistogramBucketsAreCumulative) {
  MetricsRegistry registry;
  registry.DefineHistogram("latency_seconds", "latency", {0.1, 1});
  registry.Observe("latency_seconds", {}, 0.05);
  registry.Observe("latency_seconds", {}, 0.5);
  registry.Observe("latency_seconds", {}, 5);
  const std::string text = registry.Export();
  EXPECT_NE(text.find("latency_seconds_bucket{le=\"0.10000000000000001\"} 1\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("latency_seconds_bucket{le=\"1\"} 2\n"), std::string::npos);
  EXPECT_NE(text.find("latency_seconds_bucket{le=\"+Inf\"} 3\n"), std::string::npos);
  EXPECT_NE(text.find("latency_seconds_count 3\n"), std::string::npos);
  EXPECT_NE(text.find("latency_seconds_sum 5.5499999999999998\n"), std::string::npos);
}

TEST(MetricsTest, LabelValuesAreEscaped) {
  MetricsRegistry registry;
  registry.DefineCounter("c", "c", {"l"});
  registry.Increment("c", {"a\"b\\c\nd"});
  EXPECT_NE(registry.Export().find("c{l=\"a\\\"b\\\\c\\nd\"} 1"), std::string::npos);
}

TEST(MetricsTest, CollectorsRunAtExport) {
  MetricsRegistry registry;
  registry.DefineGauge("live", "live value");
  int calls = 0;
  registry.AddCollector([&](MetricsRegistry& r) { r.Set("live", {}, ++calls); });
  EXPECT_NE(registry.Export().find("live 1\n"), std::string::npos);
  EXPECT_NE(registry.Export().find("live 2\n"), std::string::npos);
}

TEST(MetricsTest, HitRateIsHitsOverLookupsAndZeroWithoutAny) {
  EXPECT_EQ(HitRate(0, 0), 0);
  EXPECT_EQ(HitRate(1, 1), 0.5);
  EXPECT_EQ(HitRate(3, 1), 0.75);
  EXPECT_EQ(HitRate(0, 4), 0);
  EXPECT_EQ(HitRate(2, 0), 1);
}

}  // namespace
}  // namespace kvault::server
