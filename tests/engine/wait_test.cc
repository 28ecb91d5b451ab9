// Engine::Wait on executions the engine no longer keeps in memory: one finished by an earlier
// process on the same store, and one finished thousands of executions ago.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "connectors/connectors.h"
#include "engine/engine.h"
#include "lang/ast.h"
#include "support/workflow_check.h"

namespace atomflow::engine {
namespace {

// Returns its argument's number, doubled.
constexpr const char* kDoubler = R"(
main:
  params: [args]
  steps:
    - twice:
        return: ${args.n * 2}
)";

class WaitTest : public ::testing::Test {
 protected:
  std::unique_ptr<Engine> OpenEngine() {
    return testing::OpenEngineIn(temp_.path(), 2, connectors::MakeConnectors, &progress_);
  }

  // Starts kDoubler with n; with `wait_durable` false, Start returns before the row commits.
  std::string Start(Engine& engine, int n, bool wait_durable = true) {
    Result<std::shared_ptr<const lang::Workflow>> workflow =
        lang::LoadWorkflow("doubler.yaml", kDoubler);
    EXPECT_TRUE(workflow.ok()) << workflow.message();
    if (!workflow.ok()) return "";
    StartOptions options;
    if (!wait_durable) options.on_durable = [](Status) {};
    Result<std::string> id =
        engine.Start(std::move(workflow).value(), FromJson(Json{{"n", n}}), options);
    EXPECT_TRUE(id.ok()) << id.message();
    return id.ok() ? *id : "";
  }

  testing::TempDir temp_;
  testing::RecordingProgress progress_;
};

// Regression: Wait on an execution this engine never ran blocked until the engine shut down.
TEST_F(WaitTest, AnExecutionFinishedByAnEarlierProcessIsReadFromTheStore) {
  std::string id;
  {
    std::unique_ptr<Engine> first = OpenEngine();
    ASSERT_NE(first, nullptr);
    id = Start(*first, 21);
    EXPECT_EQ(first->Wait(id).state, "SUCCEEDED");
  }

  std::unique_ptr<Engine> second = OpenEngine();
  ASSERT_NE(second, nullptr);
  store::ExecutionRecord record = second->Wait(id);
  EXPECT_EQ(record.state, "SUCCEEDED");
  EXPECT_EQ(record.result, "42");
}

// Regression: every finished record (with its workflow's source) stayed in memory for the
// life of the process; only the latest are kept now, and an older one comes from the store.
TEST_F(WaitTest, AnExecutionFinishedLongAgoStillReportsItsOutcome) {
  std::unique_ptr<Engine> engine = OpenEngine();
  ASSERT_NE(engine, nullptr);
  std::vector<std::string> ids;
  for (int n = 0; n < 5000; ++n) ids.push_back(Start(*engine, n, /*wait_durable=*/false));
  for (const std::string& id : ids) ASSERT_EQ(engine->Wait(id).state, "SUCCEEDED") << id;

  store::ExecutionRecord oldest = engine->Wait(ids.front());
  EXPECT_EQ(oldest.result, "0");
  store::ExecutionRecord newest = engine->Wait(ids.back());
  EXPECT_EQ(newest.result, "9998");
}

}  // namespace
}  // namespace atomflow::engine
