// Tests of asynchronous creates and time-ordered execution ids on real SQLite files: the row
// goes before the appends queued behind it, and an execution whose create failed never
// leaves a trace, in the store or (through Engine::Start) in the world.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <future>
#include <mutex>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "engine/engine.h"
#include "lang/ast.h"
#include "store/store.h"
#include "store_file_test.h"
#include "support/workflow_check.h"

namespace atomflow::store {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

ExecutionRecord MakeRecord(const std::string& id) {
  ExecutionRecord record;
  record.id = id;
  record.workflow_name = "pipeline";
  record.source_file = "pipeline.yaml";
  record.source = "main:\n  steps:\n    - done:\n        return: 1\n";
  record.argument = "null";
  record.state = "ACTIVE";
  record.start_time_ms = 100;
  return record;
}

JournalEntry MakeEntry(const std::string& key) {
  JournalEntry entry;
  entry.kind = "intent";
  entry.key = key;
  entry.payload = {{"key", key}};
  entry.time_ms = 1234;
  return entry;
}

// Collects the outcomes of queued writes in the order their callbacks ran.
class Outcomes {
 public:
  std::function<void(Status)> Expect(const std::string& name) {
    return [this, name](const Status& status) {
      std::lock_guard<std::mutex> lock(mutex_);
      seen_.push_back(name + (status.ok() ? ":ok" : ":" + status.message()));
    };
  }
  std::vector<std::string> seen() {
    std::lock_guard<std::mutex> lock(mutex_);
    return seen_;
  }

 private:
  std::mutex mutex_;
  std::vector<std::string> seen_;
};

using AsyncCreateTest = StoreFileTest;

TEST_F(AsyncCreateTest, AppendsQueuedRightAfterTheCreateLandAfterTheRow) {
  std::unique_ptr<Store> store = OpenStore();
  ASSERT_NE(store, nullptr);
  Outcomes outcomes;

  store->CreateExecutionAsync(MakeRecord("e1"), outcomes.Expect("create"));
  store->Append("e1", MakeEntry("main/1"), outcomes.Expect("append1"));
  store->Append("e1", MakeEntry("main/2"), outcomes.Expect("append2"));
  store->Finish("e1", "SUCCEEDED", "1", "", outcomes.Expect("finish"));
  ASSERT_TRUE(store->Flush().ok());

  EXPECT_THAT(outcomes.seen(), ElementsAre("create:ok", "append1:ok", "append2:ok", "finish:ok"));
  Result<std::vector<JournalEntry>> journal = store->ReadJournal("e1");
  ASSERT_TRUE(journal.ok()) << journal.message();
  ASSERT_EQ(journal->size(), 2u);
  EXPECT_EQ((*journal)[0].seq, 1);
  EXPECT_EQ((*journal)[1].key, "main/2");
  EXPECT_EQ(store->GetExecution("e1")->state, "SUCCEEDED");
}

// Regression: with Start no longer waiting for its row, an execution's first appends are
// queued before its create has committed; had a create failed on a taken id, they would have
// landed in the journal of the older execution with that id.
TEST_F(AsyncCreateTest, WritesOfAnExecutionWhoseCreateFailedAreRefusedAndNeverLand) {
  std::unique_ptr<Store> store = OpenStore();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->CreateExecution(MakeRecord("older")).ok());
  Outcomes outcomes;

  store->CreateExecutionAsync(MakeRecord("older"), outcomes.Expect("create"));
  store->Append("older", MakeEntry("main/1"), outcomes.Expect("append"));
  store->Finish("older", "SUCCEEDED", "1", "", outcomes.Expect("finish"));
  ASSERT_TRUE(store->Flush().ok());
  // Queued after the failure was known: refused just the same.
  store->Append("older", MakeEntry("main/2"), outcomes.Expect("late"));
  ASSERT_TRUE(store->Flush().ok());

  std::vector<std::string> seen = outcomes.seen();
  ASSERT_EQ(seen.size(), 4u);
  EXPECT_THAT(seen[0], HasSubstr("create:cannot create execution older"));
  EXPECT_THAT(seen[1], HasSubstr("append:execution older was never created"));
  EXPECT_THAT(seen[2], HasSubstr("finish:execution older was never created"));
  EXPECT_THAT(seen[3], HasSubstr("late:execution older was never created"));
  EXPECT_TRUE(store->ReadJournal("older")->empty());
  EXPECT_EQ(store->GetExecution("older")->state, "ACTIVE");
}

// A create that aborts its whole batch (here a trigger that rolls the transaction back, as a
// full disk fails the COMMIT): the row and the appends beside it are gone, and a later
// append of the execution is refused, not taken for an unknown id's.
TEST_F(AsyncCreateTest, ACreateThatFailsItsWholeBatchRefusesTheExecutionsLaterWrites) {
  std::unique_ptr<Store> store = OpenStore();
  ASSERT_NE(store, nullptr);
  ExecOnFile(
      "CREATE TRIGGER doom BEFORE INSERT ON executions WHEN NEW.id = 'doomed' "
      "BEGIN SELECT RAISE(ROLLBACK, 'no room for this execution'); END");
  Outcomes outcomes;

  store->CreateExecutionAsync(MakeRecord("doomed"), outcomes.Expect("create"));
  store->Append("doomed", MakeEntry("main/1"), outcomes.Expect("append"));
  Status flushed = store->Flush();  // fails too if it shared the doomed batch
  (void)flushed;
  store->Append("doomed", MakeEntry("main/2"), outcomes.Expect("late"));
  ASSERT_TRUE(store->Flush().ok());

  std::vector<std::string> seen = outcomes.seen();
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_THAT(seen[0], HasSubstr("no room for this execution"));
  // The batch's failure if the append shared it, else the refusal.
  EXPECT_THAT(seen[1], ::testing::StartsWith("append:"));
  EXPECT_NE(seen[1], "append:ok");
  EXPECT_THAT(seen[2], HasSubstr("late:execution doomed was never created"));
  EXPECT_EQ(store->GetExecution("doomed").status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(store->ReadJournal("doomed")->empty());

  // The store goes on: another execution is created and journaled.
  ASSERT_TRUE(store->CreateExecution(MakeRecord("fine")).ok());
  std::promise<Status> durable;
  store->Append("fine", MakeEntry("main/1"), [&](const Status& s) { durable.set_value(s); });
  EXPECT_TRUE(durable.get_future().get().ok());
}

TEST(ExecutionIdTest, IdsAreVersion7UuidsUniqueAndIncreasingUnderManyThreads) {
  constexpr int kThreads = 8;
  constexpr int kPerThread = 5000;
  std::vector<std::vector<std::string>> made(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&made, t] {
      for (int i = 0; i < kPerThread; ++i) made[t].push_back(engine::NewExecutionId());
    });
  }
  for (std::thread& thread : threads) thread.join();

  const std::regex kShape("[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}");
  std::set<std::string> all;
  for (const std::vector<std::string>& ids : made) {
    for (size_t i = 0; i < ids.size(); ++i) {
      ASSERT_TRUE(std::regex_match(ids[i], kShape)) << ids[i];
      // Each thread sees ids grow: they sort in the order they were made.
      if (i > 0) {
        ASSERT_LT(ids[i - 1], ids[i]);
      }
      all.insert(ids[i]);
    }
  }
  EXPECT_EQ(all.size(), static_cast<size_t>(kThreads * kPerThread));

  // The first 48 bits are the Unix time in milliseconds.
  std::string hex = made[0][0].substr(0, 8) + made[0][0].substr(9, 4);
  int64_t ms = std::stoll(hex, nullptr, 16);
  int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                    std::chrono::system_clock::now().time_since_epoch())
                    .count();
  EXPECT_LE(ms, now);
  EXPECT_GT(ms, now - 60 * 1000);
}

// Counts the effects the engine issues; answers each at once.
class CountingHandler : public engine::EffectHandler {
 public:
  explicit CountingHandler(std::atomic<int>* issued) : issued_(issued) {}
  void Perform(const engine::EffectRequest&, engine::EffectContext,
               std::function<void(engine::EffectOutcome)> done) override {
    ++*issued_;
    done(engine::EffectOutcome::Success(Value()));
  }
  void Cancel(const std::string&, const engine::EffectRequest&) override {}

 private:
  std::atomic<int>* issued_;
};

// An engine on the test's store whose effects only count themselves in *issued, and the
// workflow both engine tests start: one HTTP call, then a return.
class AsyncCreateEngineTest : public AsyncCreateTest {
 protected:
  std::unique_ptr<engine::Engine> OpenEngine(std::atomic<int>* issued) {
    engine::EngineOptions options;
    options.store_path = path_;
    options.workers = 2;
    auto factory = [issued](engine::IoLoop*, const engine::EngineOptions&) {
      return std::unique_ptr<engine::EffectHandler>(new CountingHandler(issued));
    };
    Result<std::unique_ptr<engine::Engine>> engine =
        engine::Engine::Open(options, factory, &progress_);
    EXPECT_TRUE(engine.ok()) << engine.message();
    return engine.ok() ? std::move(engine).value() : nullptr;
  }

  static std::shared_ptr<const lang::Workflow> LoadCallWorkflow() {
    Result<std::shared_ptr<const lang::Workflow>> workflow = lang::LoadWorkflow(
        "call.yaml",
        "main:\n  steps:\n    - call:\n        call: http.post\n"
        "        args: {url: \"http://participant/charge\"}\n    - done:\n        return: 1\n");
    EXPECT_TRUE(workflow.ok()) << workflow.message();
    return workflow.ok() ? *workflow : nullptr;
  }

  testing::RecordingProgress progress_;
};

// Start launches an execution before its row is durable; when the row cannot be written,
// its first effect (here an HTTP call, waiting for its intent) must never go out.
TEST_F(AsyncCreateEngineTest, EngineStartWhoseCreateFailsIssuesNoEffectAndEndsTheExecution) {
  {
    std::unique_ptr<Store> store = OpenStore();  // creates the schema
    ASSERT_NE(store, nullptr);
  }
  ExecOnFile(
      "CREATE TRIGGER doom BEFORE INSERT ON executions "
      "BEGIN SELECT RAISE(ABORT, 'the disk is full'); END");
  std::atomic<int> issued{0};
  std::unique_ptr<engine::Engine> engine = OpenEngine(&issued);
  ASSERT_NE(engine, nullptr);
  std::shared_ptr<const lang::Workflow> workflow = LoadCallWorkflow();
  ASSERT_NE(workflow, nullptr);

  // Blocking: Start answers with the failure.
  Result<std::string> blocking = engine->Start(workflow, Value());
  EXPECT_FALSE(blocking.ok());
  EXPECT_THAT(blocking.message(), HasSubstr("the disk is full"));

  // Not blocking: Start answers at once, on_durable and Wait tell of the failure.
  std::promise<Status> durable;
  engine::StartOptions start;
  start.on_durable = [&durable](const Status& status) { durable.set_value(status); };
  Result<std::string> id = engine->Start(workflow, Value(), start);
  ASSERT_TRUE(id.ok()) << id.message();
  EXPECT_THAT(durable.get_future().get().message(), HasSubstr("the disk is full"));
  ExecutionRecord record = engine->Wait(*id);
  EXPECT_EQ(record.state, "FAILED");
  EXPECT_THAT(record.error, HasSubstr("could not be recorded"));

  ASSERT_TRUE(engine->store()->Flush().ok());
  EXPECT_EQ(issued.load(), 0);
  EXPECT_EQ(engine->store()->GetExecution(*id).status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(engine->store()->ReadJournal(*id)->empty());
  EXPECT_EQ(engine->ActiveCount(), 0u);
}

TEST_F(AsyncCreateEngineTest, EngineStartWithOnDurableRunsTheExecutionToTheEnd) {
  std::atomic<int> issued{0};
  std::unique_ptr<engine::Engine> engine = OpenEngine(&issued);
  ASSERT_NE(engine, nullptr);
  std::shared_ptr<const lang::Workflow> workflow = LoadCallWorkflow();
  ASSERT_NE(workflow, nullptr);

  std::vector<std::string> ids;
  std::atomic<int> durable{0};
  for (int i = 0; i < 50; ++i) {
    engine::StartOptions start;
    start.on_durable = [&durable](const Status& status) { durable += status.ok(); };
    Result<std::string> id = engine->Start(workflow, Value(), start);
    ASSERT_TRUE(id.ok()) << id.message();
    ids.push_back(*id);
  }
  for (const std::string& id : ids) EXPECT_EQ(engine->Wait(id).state, "SUCCEEDED") << id;
  EXPECT_EQ(durable.load(), 50);
  EXPECT_EQ(issued.load(), 50);
  // Each journal starts at seq 1 with the call's intent.
  Result<std::vector<JournalEntry>> journal = engine->store()->ReadJournal(ids[0]);
  ASSERT_TRUE(journal.ok()) << journal.message();
  ASSERT_FALSE(journal->empty());
  EXPECT_EQ(journal->front().seq, 1);
}

}  // namespace
}  // namespace atomflow::store
