// A prepared SQL branch's prepare goes out before its intent is durable, so a process may die
// with a gid prepared that the journal does not know: an execution resumed from the store
// rolls each gid back before it prepares it (EffectContext::resumed), intent journaled or not,
// and an execution started fresh, whose gids cannot exist anywhere, never does.
#include <gtest/gtest.h>

#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "engine/engine.h"
#include "lang/ast.h"
#include "support/workflow_check.h"

namespace atomflow::engine {
namespace {

constexpr const char* kTwoBranches = R"yaml(
main:
  steps:
    - transfer:
        transaction:
          steps:
            - debit:
                call: atomflow.sql.exec
                args: {database: bank_a, statements: ["INSERT INTO moves VALUES (-5)"]}
            - credit:
                call: atomflow.sql.exec
                args: {database: bank_b, statements: ["INSERT INTO moves VALUES (5)"]}
    - done:
        return: "ok"
)yaml";

// One prepare as the handler received it.
struct SentPrepare {
  std::string execution_id;
  std::string xid;
  bool rolls_back_first = false;
};

// Answers every atomflow.sql.* effect with success and records the prepares; the log is shared
// with the test, which reads it after the executions ended. Thread safe.
class PrepareLog {
 public:
  void Add(SentPrepare prepare) {
    std::lock_guard<std::mutex> lock(mutex_);
    prepares_.push_back(std::move(prepare));
  }
  std::vector<SentPrepare> Of(const std::string& execution_id) {
    std::lock_guard<std::mutex> lock(mutex_);
    std::vector<SentPrepare> found;
    for (const SentPrepare& prepare : prepares_) {
      if (prepare.execution_id == execution_id) found.push_back(prepare);
    }
    return found;
  }

 private:
  std::mutex mutex_;
  std::vector<SentPrepare> prepares_;
};

// A database that prepares and commits whatever it is asked to.
class FakeDatabases : public EffectHandler {
 public:
  explicit FakeDatabases(std::shared_ptr<PrepareLog> log) : log_(std::move(log)) {}

  void Perform(const EffectRequest& request, EffectContext context,
               std::function<void(EffectOutcome)> done) override {
    if (request.op == "prepare") {
      const Value* xid = request.args.AsMap().Find("xid");
      log_->Add({context.execution_id, xid != nullptr ? xid->AsString() : "", context.resumed});
    }
    done(EffectOutcome::Success(Value(Map{})));
  }
  void Cancel(const std::string&, const EffectRequest&) override {}

 private:
  std::shared_ptr<PrepareLog> log_;
};

TEST(PrepareResumeTest, OnlyAResumedExecutionRollsItsGidsBackBeforePreparing) {
  testing::TempDir temp;
  testing::RecordingProgress progress;
  auto log = std::make_shared<PrepareLog>();
  std::unique_ptr<Engine> engine = testing::OpenEngineIn(
      temp.path(), 2,
      [log](IoLoop*, const EngineOptions&) { return std::make_unique<FakeDatabases>(log); },
      &progress);
  ASSERT_NE(engine, nullptr);
  Result<std::shared_ptr<const lang::Workflow>> workflow =
      lang::LoadWorkflow("transfer.yaml", kTwoBranches);
  ASSERT_TRUE(workflow.ok()) << workflow.message();

  // Started fresh here: nothing to roll back.
  Result<std::string> fresh = engine->Start(*workflow, Value());
  ASSERT_TRUE(fresh.ok()) << fresh.message();
  EXPECT_EQ(engine->Wait(*fresh).state, "SUCCEEDED");
  std::vector<SentPrepare> sent = log->Of(*fresh);
  ASSERT_EQ(sent.size(), 2u);
  for (const SentPrepare& prepare : sent) EXPECT_FALSE(prepare.rolls_back_first) << prepare.xid;

  // An execution whose process died before anything of it was journaled (its prepares may
  // have gone out all the same): resumed, every prepare rolls its gid back first.
  store::ExecutionRecord record;
  record.id = NewExecutionId();
  record.workflow_name = "transfer";
  record.source_file = "transfer.yaml";
  record.source = kTwoBranches;
  record.argument = "null";
  record.state = "ACTIVE";
  ASSERT_TRUE(engine->store()->CreateExecution(record).ok());
  Result<std::vector<std::string>> resumed = engine->Recover();
  ASSERT_TRUE(resumed.ok()) << resumed.message();
  ASSERT_EQ(*resumed, std::vector<std::string>{record.id});
  EXPECT_EQ(engine->Wait(record.id).state, "SUCCEEDED");
  sent = log->Of(record.id);
  ASSERT_EQ(sent.size(), 2u);
  EXPECT_EQ(sent[0].xid, "atomflow:" + record.id + ":transfer#1:1");
  EXPECT_EQ(sent[1].xid, "atomflow:" + record.id + ":transfer#1:2");
  for (const SentPrepare& prepare : sent) EXPECT_TRUE(prepare.rolls_back_first) << prepare.xid;
}

}  // namespace
}  // namespace atomflow::engine
