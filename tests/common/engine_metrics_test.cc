// The engine feeds the process metrics: steps run, group commits timed, and retries by host.
#include <gtest/gtest.h>
#include <httplib.h>
#include <stdlib.h>

#include <atomic>
#include <memory>
#include <string>

#include "common/metrics.h"
#include "connectors/connectors.h"
#include "engine/engine.h"
#include "lang/ast.h"
#include "support/http_test_server.h"
#include "support/workflow_check.h"

namespace atomflow::metrics {
namespace {

constexpr const char* kRetried = R"(
main:
  params: [args]
  steps:
    - call_api:
        try:
          call: http.get
          args:
            url: ${args.url}
          result: reply
        retry:
          predicate: ${http.default_retry_predicate}
          max_retries: 5
          backoff:
            initial_delay: 1
            max_delay: 1
            multiplier: 1
    - done:
        return: ${reply.body}
)";

// The value of one sample line of the rendering, or -1 when it is missing.
double Sample(const std::string& text, const std::string& series) {
  size_t at = text.find("\n" + series + " ");
  if (at == std::string::npos) return -1;
  return std::stod(text.substr(at + series.size() + 2));
}

TEST(EngineMetricsTest, RetriedHttpCallsAreCountedByHostWithStepsAndCommits) {
  setenv("ATOMFLOW_SLEEP_SCALE", "0", 1);  // the backoff runs at once
  std::atomic<int> calls{0};
  testing::HttpTestServer server;
  server.routes().Get("/flaky", [&](const httplib::Request&, httplib::Response& res) {
    res.status = ++calls <= 2 ? 503 : 200;  // unavailable twice, then fine
    res.set_content(R"({"ok": true})", "application/json");
  });
  server.Start();
  std::string before = Registry::Global().RenderText();

  testing::TempDir temp;
  testing::RecordingProgress progress;
  Result<std::shared_ptr<const lang::Workflow>> workflow =
      lang::LoadWorkflow("retried.yaml", kRetried);
  ASSERT_TRUE(workflow.ok()) << workflow.message();
  store::ExecutionRecord record =
      testing::RunToEnd(*workflow, FromJson(Json{{"url", server.Url("/flaky")}}), temp.path(),
                        connectors::MakeConnectors, &progress);
  ASSERT_EQ(record.state, "SUCCEEDED") << record.error;

  std::string after = Registry::Global().RenderText();
  EXPECT_EQ(Sample(after, "atomflow_retries_total{host=\"127.0.0.1\"}"), 2) << after;
  EXPECT_GE(Sample(after, "atomflow_steps_total"), 2) << after;
  EXPECT_GT(Sample(after, "atomflow_journal_commit_seconds_count"),
            Sample(before, "atomflow_journal_commit_seconds_count"))
      << after;
  EXPECT_NE(after.find("# TYPE atomflow_journal_commit_seconds histogram"), std::string::npos);
}

}  // namespace
}  // namespace atomflow::metrics
