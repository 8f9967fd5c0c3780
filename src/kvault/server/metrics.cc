#include "kvault/server/metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "kvault/base/check.h"

namespace kvault::server {
namespace {

std::string EscapeLabel(const std::string& value) {
  std::string out;
  for (char c : value) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

std::string FormatNumber(double value) {
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  if (std::isnan(value)) return "NaN";
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), "%.17g", value);
  return buffer;
}

// {a="x",b="y"} plus an optional extra label (le for histogram buckets).
std::string LabelText(const std::vector<std::string>& names, const LabelValues& values,
                      const std::string& extra_name = "", const std::string& extra_value = "") {
  std::string text;
  for (size_t i = 0; i < names.size(); ++i) {
    text += (text.empty() ? "" : ",") + names[i] + "=\"" + EscapeLabel(values[i]) + "\"";
  }
  if (!extra_name.empty()) {
    text += (text.empty() ? "" : ",") + extra_name + "=\"" + extra_value + "\"";
  }
  return text.empty() ? "" : "{" + text + "}";
}

}  // namespace

std::vector<double> LatencyBuckets() {
  return {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
}

double HitRate(int64_t hits, int64_t misses) {
  const int64_t total = hits + misses;
  return total > 0 ? static_cast<double>(hits) / static_cast<double>(total) : 0;
}

void MetricsRegistry::Define(const std::string& name, Family family) {
  MutexLock lock(&mu_);
  families_.emplace(name, std::move(family));
}

void MetricsRegistry::DefineCounter(const std::string& name, const std::string& help,
                                    std::vector<std::string> labels) {
  Define(name, {Kind::kCounter, help, std::move(labels), {}, {}});
}

void MetricsRegistry::DefineGauge(const std::string& name, const std::string& help,
                                  std::vector<std::string> labels) {
  Define(name, {Kind::kGauge, help, std::move(labels), {}, {}});
}

void MetricsRegistry::DefineHistogram(const std::string& name, const std::string& help,
                                      std::vector<double> bucket_bounds,
                                      std::vector<std::string> labels) {
  std::sort(bucket_bounds.begin(), bucket_bounds.end());
  Define(name, {Kind::kHistogram, help, std::move(labels), std::move(bucket_bounds), {}});
}

MetricsRegistry::Series& MetricsRegistry::SeriesFor(const std::string& name,
                                                    const LabelValues& values, Kind kind) {
  auto it = families_.find(name);
  KV_CHECK(it != families_.end(), "undefined metric " + name);
  Family& family = it->second;
  KV_CHECK(family.kind == kind, "metric " + name + " used as the wrong kind");
  KV_CHECK(values.size() == family.labels.size(), "metric " + name + ": wrong label count");
  Series& series = family.series[values];
  if (kind == Kind::kHistogram && series.counts.empty()) {
    series.counts.assign(family.bounds.size() + 1, 0);
  }
  return series;
}

void MetricsRegistry::Increment(const std::string& name, const LabelValues& values, double by) {
  MutexLock lock(&mu_);
  SeriesFor(name, values, Kind::kCounter).value += by;
}

void MetricsRegistry::Set(const std::string& name, const LabelValues& values, double value) {
  MutexLock lock(&mu_);
  SeriesFor(name, values, Kind::kGauge).value = value;
}

void MetricsRegistry::SetTotal(const std::string& name, const LabelValues& values, double value) {
  MutexLock lock(&mu_);
  SeriesFor(name, values, Kind::kCounter).value = value;
}

void MetricsRegistry::Observe(const std::string& name, const LabelValues& values, double value) {
  MutexLock lock(&mu_);
  Series& series = SeriesFor(name, values, Kind::kHistogram);
  const std::vector<double>& bounds = families_.at(name).bounds;
  const size_t bucket = std::lower_bound(bounds.begin(), bounds.end(), value) - bounds.begin();
  ++series.counts[bucket];
  series.sum += value;
  ++series.count;
}

void MetricsRegistry::AddCollector(std::function<void(MetricsRegistry&)> collector) {
  MutexLock lock(&mu_);
  collectors_.push_back(std::move(collector));
}

double MetricsRegistry::Value(const std::string& name, const LabelValues& values) const {
  MutexLock lock(&mu_);
  auto family = families_.find(name);
  if (family == families_.end()) return 0;
  auto series = family->second.series.find(values);
  return series == family->second.series.end() ? 0 : series->second.value;
}

std::string MetricsRegistry::Export() {
  std::vector<std::function<void(MetricsRegistry&)>> collectors;
  {
    MutexLock lock(&mu_);
    collectors = collectors_;
  }
  for (auto& collect : collectors) collect(*this);

  MutexLock lock(&mu_);
  std::ostringstream out;
  for (const auto& [name, family] : families_) {
    const char* type = family.kind == Kind::kCounter ? "counter"
                       : family.kind == Kind::kGauge ? "gauge"
                                                     : "histogram";
    out << "# HELP " << name << ' ' << family.help << '\n'
        << "# TYPE " << name << ' ' << type << '\n';
    if (family.series.empty() && family.labels.empty()) {
      if (family.kind != Kind::kHistogram) out << name << " 0\n";
      continue;
    }
    for (const auto& [values, series] : family.series) {
      if (family.kind != Kind::kHistogram) {
        out << name << LabelText(family.labels, values) << ' ' << FormatNumber(series.value)
            << '\n';
        continue;
      }
      uint64_t cumulative = 0;
      for (size_t b = 0; b <= family.bounds.size(); ++b) {
        cumulative += series.counts[b];
        const std::string le =
            b < family.bounds.size() ? FormatNumber(family.bounds[b]) : std::string("+Inf");
        out << name << "_bucket" << LabelText(family.labels, values, "le", le) << ' ' << cumulative
            << '\n';
      }
      out << name << "_sum" << LabelText(family.labels, values) << ' ' << FormatNumber(series.sum)
          << '\n';
      out << name << "_count" << LabelText(family.labels, values) << ' ' << series.count << '\n';
    }
  }
  return out.str();
}

}  // namespace kvault::server
