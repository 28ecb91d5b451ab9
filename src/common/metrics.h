// Process metrics: lock-free counters and histograms, and their Prometheus text rendering.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace atomflow::metrics {

using Labels = std::vector<std::pair<std::string, std::string>>;

// A monotonically growing value. Add and value are lock free and may be called from any thread;
// a Counter is owned by the Registry that made it and lives as long as the process.
class Counter {
 public:
  void Add(double delta = 1);
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

// Counts observations into fixed buckets (upper bounds, ascending) and keeps their sum. Observe
// is lock free (one atomic per bucket); a scrape reads each atomic on its own, so it may see an
// observation in the count and not yet in the sum. Owned by its Registry.
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void Observe(double value);

  const std::vector<double>& bounds() const { return bounds_; }
  // Observations per bucket (not cumulative); the last one is the +Inf bucket.
  std::vector<uint64_t> BucketCounts() const;
  double sum() const { return sum_.load(std::memory_order_relaxed); }

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;  // bounds_.size() + 1
  std::atomic<double> sum_{0};
};

// The process's metrics. Thread safe: getting a metric takes a lock (callers cache the pointer
// and never look it up on a hot path); pointers it returns live as long as the process.
class Registry {
 public:
  static Registry& Global();

  // The same name and labels give the same metric; help of the first call wins.
  Counter* GetCounter(const std::string& name, const std::string& help, const Labels& labels = {});
  Histogram* GetHistogram(const std::string& name, const std::string& help,
                          std::vector<double> buckets, const Labels& labels = {});

  using GaugeSink = std::function<void(const std::string& name, const std::string& help,
                                       const Labels& labels, double value)>;
  // Gauges computed at scrape time (executions by state from the store, ...). A collector runs
  // on the scraping thread, under no lock of the registry's metrics.
  int AddCollector(std::function<void(const GaugeSink&)> collector);
  void RemoveCollector(int id);

  std::string RenderText() const;  // Prometheus text exposition format 0.0.4

 private:
  struct Family {
    std::string help;
    std::string type;  // "counter" or "histogram"
    std::map<Labels, std::unique_ptr<Counter>> counters;
    std::map<Labels, std::unique_ptr<Histogram>> histograms;
  };
  std::vector<std::function<void(const GaugeSink&)>> CollectorsCopy() const;

  mutable std::mutex mutex_;
  std::map<std::string, Family> families_;  // by name, so the rendering is stable
  std::map<int, std::function<void(const GaugeSink&)>> collectors_;
  int next_collector_ = 1;
};

// Default buckets for durations in seconds, from 0.5 ms to 10 s.
std::vector<double> DurationBuckets();

}  // namespace atomflow::metrics
