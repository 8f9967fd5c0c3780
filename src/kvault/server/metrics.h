// server/metrics.h: counters, gauges and histograms with labels, exported in Prometheus'
// text format (version 0.0.4) on GET /metrics. Debian has no Prometheus client library for
// C++, and the exposition format is small: this is the whole of it.
//
// Thread-safety: all methods may be called from any thread. Lookups by label take a mutex;
// hot paths record a handful of observations per request, not per token of every sequence.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "kvault/base/mutex.h"

namespace kvault::server {

// Label values, in the order of the family's label names.
using LabelValues = std::vector<std::string>;

class MetricsRegistry {
 public:
  // Families. `labels` names the labels; every call then passes values in that order.
  void DefineCounter(const std::string& name, const std::string& help,
                     std::vector<std::string> labels = {});
  void DefineGauge(const std::string& name, const std::string& help,
                   std::vector<std::string> labels = {});
  void DefineHistogram(const std::string& name, const std::string& help,
                       std::vector<double> bucket_bounds, std::vector<std::string> labels = {});

  void Increment(const std::string& name, const LabelValues& values = {}, double by = 1);
  void Set(const std::string& name, const LabelValues& values, double value);
  // Sets a counter to a total another component keeps (collectors mirror cumulative stats).
  void SetTotal(const std::string& name, const LabelValues& values, double value);
  void Observe(const std::string& name, const LabelValues& values, double value);

  // Called at every export, to set gauges from live state (queue depth, cache sizes...).
  void AddCollector(std::function<void(MetricsRegistry&)> collector);

  // Current value of a counter or gauge (0 if never set); for tests and JSON stats.
  double Value(const std::string& name, const LabelValues& values = {}) const;

  // The Prometheus text exposition of every family.
  std::string Export();

 private:
  enum class Kind { kCounter, kGauge, kHistogram };
  struct Series {
    double value = 0;              // counter / gauge
    std::vector<uint64_t> counts;  // histogram, one per bound, plus +Inf
    double sum = 0;
    uint64_t count = 0;
  };
  struct Family {
    Kind kind;
    std::string help;
    std::vector<std::string> labels;
    std::vector<double> bounds;
    std::map<LabelValues, Series> series;
  };
  void Define(const std::string& name, Family family);
  Series& SeriesFor(const std::string& name, const LabelValues& values, Kind kind) KV_REQUIRES(mu_);

  mutable Mutex mu_;
  std::map<std::string, Family> families_ KV_GUARDED_BY(mu_);
  std::vector<std::function<void(MetricsRegistry&)>> collectors_ KV_GUARDED_BY(mu_);
};

// Bucket bounds in seconds for request latencies, 5 ms to 60 s.
std::vector<double> LatencyBuckets();

// hits / (hits + misses); 0 when there were neither.
double HitRate(int64_t hits, int64_t misses);

}  // namespace kvault::server
