// Metrics: the Prometheus text a scraper reads, and counts that stay exact under contention.
#include "common/metrics.h"

#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

namespace atomflow::metrics {
namespace {

TEST(MetricsTest, RendersCountersWithHelpTypeAndEscapedLabels) {
  Registry registry;
  registry.GetCounter("jobs_total", "Jobs run.\nAll of them.")->Add(3);
  registry.GetCounter("retries_total", "Retries.", {{"host", "a\"b\\c\nd"}})->Add();

  std::string text = registry.RenderText();

  EXPECT_NE(text.find("# HELP jobs_total Jobs run.\\nAll of them.\n# TYPE jobs_total counter\n"
                      "jobs_total 3\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("# TYPE retries_total counter\nretries_total{host=\"a\\\"b\\\\c\\nd\"} 1\n"),
            std::string::npos)
      << text;
}

TEST(MetricsTest, SameNameAndLabelsGiveTheSameCounter) {
  Registry registry;
  Counter* first = registry.GetCounter("x_total", "X.", {{"host", "a"}});
  EXPECT_EQ(first, registry.GetCounter("x_total", "X.", {{"host", "a"}}));
  EXPECT_NE(first, registry.GetCounter("x_total", "X.", {{"host", "b"}}));
}

TEST(MetricsTest, RendersHistogramBucketsCumulativelyWithInfSumAndCount) {
  Registry registry;
  Histogram* histogram = registry.GetHistogram("commit_seconds", "Commits.", {0.5, 1});
  histogram->Observe(0.25);
  histogram->Observe(0.5);  // le is inclusive
  histogram->Observe(0.75);
  histogram->Observe(8);

  std::string text = registry.RenderText();

  EXPECT_NE(text.find("# HELP commit_seconds Commits.\n# TYPE commit_seconds histogram\n"
                      "commit_seconds_bucket{le=\"0.5\"} 2\n"
                      "commit_seconds_bucket{le=\"1\"} 3\n"
                      "commit_seconds_bucket{le=\"+Inf\"} 4\n"
                      "commit_seconds_sum 9.5\n"
                      "commit_seconds_count 4\n"),
            std::string::npos)
      << text;
}

TEST(MetricsTest, CollectorsAddGaugesAtScrapeTimeUntilRemoved) {
  Registry registry;
  int id = registry.AddCollector([](const Registry::GaugeSink& sink) {
    sink("executions", "Executions by state.", {{"state", "ACTIVE"}}, 2);
    sink("executions", "Executions by state.", {{"state", "FAILED"}}, 0);
  });

  std::string text = registry.RenderText();
  EXPECT_NE(text.find("# HELP executions Executions by state.\n# TYPE executions gauge\n"
                      "executions{state=\"ACTIVE\"} 2\nexecutions{state=\"FAILED\"} 0\n"),
            std::string::npos)
      << text;

  registry.RemoveCollector(id);
  EXPECT_EQ(registry.RenderText().find("executions"), std::string::npos);
}

TEST(MetricsTest, ConcurrentIncrementsFromSeveralThreadsSumExactly) {
  Registry registry;
  Counter* counter = registry.GetCounter("steps_total", "Steps.");
  Histogram* histogram = registry.GetHistogram("seconds", "Seconds.", {0.5});
  constexpr int kThreads = 8;
  constexpr int kPerThread = 100000;

  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        counter->Add();
        histogram->Observe(t % 2 == 0 ? 0.25 : 1.0);
      }
    });
  }
  for (std::thread& thread : threads) thread.join();

  EXPECT_EQ(counter->value(), kThreads * kPerThread);
  std::vector<uint64_t> buckets = histogram->BucketCounts();
  EXPECT_EQ(buckets[0], kThreads / 2 * kPerThread);
  EXPECT_EQ(buckets[1], kThreads / 2 * kPerThread);
  EXPECT_EQ(histogram->sum(), kThreads / 2 * kPerThread * 1.25);
  EXPECT_NE(registry.RenderText().find("steps_total 800000\n"), std::string::npos);
}

}  // namespace
}  // namespace atomflow::metrics
