// Metrics: counters, histograms, scrape-time gauges and the Prometheus text rendering.
#include "common/metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>

namespace atomflow::metrics {

namespace {

// A sample value as Prometheus reads it: shortest round-trip text, +Inf, -Inf, NaN.
std::string FormatValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  // Counts print as integers ("800000", not "8e+05").
  if (value == std::floor(value) && std::fabs(value) < 9007199254740992.0) {
    return std::to_string(static_cast<int64_t>(value));
  }
  char text[64];
  auto [end, error] = std::to_chars(text, text + sizeof(text), value);
  if (error != std::errc()) return "NaN";
  return std::string(text, end);
}

// HELP text escapes backslash and newline; label values also escape the double quote.
std::string Escape(const std::string& text, bool quote) {
  std::string escaped;
  escaped.reserve(text.size());
  for (char c : text) {
    if (c == '\\') {
      escaped += "\\\\";
    } else if (c == '\n') {
      escaped += "\\n";
    } else if (c == '"' && quote) {
      escaped += "\\\"";
    } else {
      escaped += c;
    }
  }
  return escaped;
}

// `{a="1",b="2"}`, or nothing for no labels.
std::string FormatLabels(const Labels& labels) {
  if (labels.empty()) return "";
  std::string text = "{";
  for (size_t i = 0; i < labels.size(); ++i) {
    if (i > 0) text += ',';
    text += labels[i].first + "=\"" + Escape(labels[i].second, true) + "\"";
  }
  return text + "}";
}

void AppendHeader(std::string& out, const std::string& name, const std::string& help,
                  const char* type) {
  out += "# HELP " + name + " " + Escape(help, false) + "\n";
  out += "# TYPE " + name + " " + type + "\n";
}

void AppendHistogram(std::string& out, const std::string& name, const Labels& labels,
                     const Histogram& histogram) {
  std::vector<uint64_t> counts = histogram.BucketCounts();
  uint64_t cumulative = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    cumulative += counts[i];
    Labels with_le = labels;
    bool last = i == histogram.bounds().size();
    with_le.emplace_back("le", last ? "+Inf" : FormatValue(histogram.bounds()[i]));
    out += name + "_bucket" + FormatLabels(with_le) + " " + std::to_string(cumulative) + "\n";
  }
  out += name + "_sum" + FormatLabels(labels) + " " + FormatValue(histogram.sum()) + "\n";
  out += name + "_count" + FormatLabels(labels) + " " + std::to_string(cumulative) + "\n";
}

}  // namespace

void Counter::Add(double delta) { value_.fetch_add(delta, std::memory_order_relaxed); }

Histogram::Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)) {
  std::sort(bounds_.begin(), bounds_.end());
  bounds_.erase(std::unique(bounds_.begin(), bounds_.end()), bounds_.end());
  buckets_ = std::make_unique<std::atomic<uint64_t>[]>(bounds_.size() + 1);
  for (size_t i = 0; i <= bounds_.size(); ++i) buckets_[i].store(0);
}

void Histogram::Observe(double value) {
  // The first bucket whose upper bound holds the value (le is inclusive).
  size_t bucket = std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin();
  buckets_[bucket].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(value, std::memory_order_relaxed);
}

std::vector<uint64_t> Histogram::BucketCounts() const {
  std::vector<uint64_t> counts(bounds_.size() + 1);
  for (size_t i = 0; i < counts.size(); ++i) {
    counts[i] = buckets_[i].load(std::memory_order_relaxed);
  }
  return counts;
}

Registry& Registry::Global() {
  static Registry* registry = new Registry();  // never destroyed: pointers outlive main
  return *registry;
}

Counter* Registry::GetCounter(const std::string& name, const std::string& help,
                              const Labels& labels) {
  std::lock_guard<std::mutex> lock(mutex_);
  Family& family = families_[name];
  if (family.type.empty()) {
    family.type = "counter";
    family.help = help;
  }
  std::unique_ptr<Counter>& counter = family.counters[labels];
  if (!counter) counter = std::make_unique<Counter>();
  return counter.get();
}

Histogram* Registry::GetHistogram(const std::string& name, const std::string& help,
                                  std::vector<double> buckets, const Labels& labels) {
  std::lock_guard<std::mutex> lock(mutex_);
  Family& family = families_[name];
  if (family.type.empty()) {
    family.type = "histogram";
    family.help = help;
  }
  std::unique_ptr<Histogram>& histogram = family.histograms[labels];
  if (!histogram) histogram = std::make_unique<Histogram>(std::move(buckets));
  return histogram.get();
}

int Registry::AddCollector(std::function<void(const GaugeSink&)> collector) {
  std::lock_guard<std::mutex> lock(mutex_);
  int id = next_collector_++;
  collectors_[id] = std::move(collector);
  return id;
}

void Registry::RemoveCollector(int id) {
  std::lock_guard<std::mutex> lock(mutex_);
  collectors_.erase(id);
}

std::vector<std::function<void(const Registry::GaugeSink&)>> Registry::CollectorsCopy() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<std::function<void(const GaugeSink&)>> copy;
  for (const auto& [id, collector] : collectors_) copy.push_back(collector);
  return copy;
}

std::string Registry::RenderText() const {
  // Gauges first gathered by name, so each family gets one HELP and TYPE.
  struct Gauges {
    std::string help;
    std::vector<std::pair<Labels, double>> samples;
  };
  std::map<std::string, Gauges> gauges;
  GaugeSink sink = [&gauges](const std::string& name, const std::string& help, const Labels& labels,
                             double value) {
    Gauges& family = gauges[name];
    if (family.help.empty()) family.help = help;
    family.samples.emplace_back(labels, value);
  };
  for (const auto& collector : CollectorsCopy()) collector(sink);

  std::string out;
  for (const auto& [name, family] : gauges) {
    AppendHeader(out, name, family.help, "gauge");
    for (const auto& [labels, value] : family.samples) {
      out += name + FormatLabels(labels) + " " + FormatValue(value) + "\n";
    }
  }

  std::lock_guard<std::mutex> lock(mutex_);
  for (const auto& [name, family] : families_) {
    if (gauges.count(name)) continue;  // a name is one family only
    AppendHeader(out, name, family.help, family.type.c_str());
    for (const auto& [labels, counter] : family.counters) {
      out += name + FormatLabels(labels) + " " + FormatValue(counter->value()) + "\n";
    }
    for (const auto& [labels, histogram] : family.histograms) {
      AppendHistogram(out, name, labels, *histogram);
    }
  }
  return out;
}

std::vector<double> DurationBuckets() {
  return {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
}

}  // namespace atomflow::metrics
