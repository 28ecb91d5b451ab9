// Step history on a real engine and SQLite store: steps journaled in batches ("steps"
// records), read back in order with old one-per-step "step" records, and complete after a
// resumed execution whose last batch was lost with its process.
#include "engine/step_history.h"

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "connectors/connectors.h"
#include "engine/engine.h"
#include "lang/ast.h"
#include "support/workflow_check.h"

namespace atomflow::engine {
namespace {

// 300 iterations of one named step: more than one batch (StepHistory::kBatch).
constexpr const char* kLoop = R"(
main:
  steps:
    - init:
        assign:
          - n: 0
    - loop:
        for:
          value: i
          range: [1, 300]
          steps:
            - tick:
                assign:
                  - n: ${n + i}
    - done:
        return: ${n}
)";

// The step names a run of kLoop records, in order: a step's entry comes when it ends, so the
// loop's own entry follows its iterations'.
std::vector<std::string> LoopSteps() {
  std::vector<std::string> steps = {"init"};
  for (int i = 0; i < 300; ++i) steps.push_back("tick");
  steps.push_back("loop");
  steps.push_back("done");
  return steps;
}

std::vector<std::string> StepNames(const std::vector<StepEntry>& entries) {
  std::vector<std::string> names;
  for (const StepEntry& entry : entries) names.push_back(entry.payload.value("step", ""));
  return names;
}

// Counts the steps reported to the user as they run, per execution.
class StepCountingProgress : public testing::RecordingProgress {
 public:
  void OnStep(const StepReport& report) override {
    std::lock_guard<std::mutex> lock(mutex_);
    ++steps_[report.execution_id];
  }
  size_t steps(const std::string& id) {
    std::lock_guard<std::mutex> lock(mutex_);
    return steps_[id];
  }

 private:
  std::mutex mutex_;
  std::map<std::string, size_t> steps_;
};

class StepHistoryTest : public ::testing::Test {
 protected:
  std::unique_ptr<Engine> OpenEngine() {
    return testing::OpenEngineIn(temp_.path(), 1, connectors::MakeConnectors, &progress_);
  }

  std::string RunLoop(Engine& engine) {
    Result<std::shared_ptr<const lang::Workflow>> workflow = lang::LoadWorkflow("loop.yaml", kLoop);
    EXPECT_TRUE(workflow.ok()) << workflow.message();
    Result<std::string> id = engine.Start(std::move(workflow).value(), Value());
    EXPECT_TRUE(id.ok()) << id.message();
    store::ExecutionRecord record = engine.Wait(*id);
    EXPECT_EQ(record.state, "SUCCEEDED") << record.error;
    EXPECT_EQ(record.result, "45150");
    return *id;
  }

  std::vector<store::JournalEntry> Rows(Engine& engine, const std::string& id,
                                        const std::string& kind) {
    return engine.store()->ReadJournalKind(id, kind, 0, 0).value();
  }

  testing::TempDir temp_;
  StepCountingProgress progress_;
};

TEST_F(StepHistoryTest, StepsAreJournaledInBatchesAndReadBackInOrder) {
  std::unique_ptr<Engine> engine = OpenEngine();
  ASSERT_NE(engine, nullptr);
  std::string id = RunLoop(*engine);

  // 303 steps: one full batch, then the rest when the execution ends; no one-step records.
  std::vector<store::JournalEntry> batches = Rows(*engine, id, "steps");
  ASSERT_EQ(batches.size(), 2u);
  EXPECT_EQ(StepRecordKeys(batches[0].payload).size(), StepHistory::kBatch);
  EXPECT_TRUE(Rows(*engine, id, "step").empty());

  Result<std::vector<StepEntry>> entries = ReadStepEntries(*engine->store(), id, 0, 0, 0);
  ASSERT_TRUE(entries.ok()) << entries.message();
  EXPECT_EQ(StepNames(*entries), LoopSteps());
  const Json& tick = (*entries)[1].payload;
  EXPECT_EQ(tick.value("routine", ""), "main");
  EXPECT_EQ(tick.value("state", ""), "SUCCEEDED");
  EXPECT_EQ(tick.value("line", 0), 12);
  EXPECT_GT(tick.value("start_ms", int64_t{0}), 0);
  EXPECT_GE(tick.value("end_ms", int64_t{0}), tick.value("start_ms", int64_t{0}));

  // Paging across the batch boundary gives the same entries.
  std::vector<StepEntry> paged;
  int64_t seq = 0;
  int64_t offset = 0;
  for (int pages = 0; pages < 100; ++pages) {
    Result<std::vector<StepEntry>> page = ReadStepEntries(*engine->store(), id, seq, offset, 50);
    ASSERT_TRUE(page.ok()) << page.message();
    if (page->empty()) break;
    seq = page->back().seq;
    offset = page->back().offset;
    paged.insert(paged.end(), page->begin(), page->end());
  }
  EXPECT_EQ(StepNames(paged), LoopSteps());
}

// A step that follows the one before (next counter, same strand, succeeded, started when that
// one ended, no duration) is journaled in a short form; every other step in full. Both read
// back as the same entries and keys.
TEST(StepHistoryBatchTest, ShortAndFullStepsReadBackExactly) {
  const std::string step_a = "a", step_b = "b", routine = "main", prefix = "", branch = "p1.";
  struct Ended {
    const std::string* step;
    const std::string* prefix;
    int64_t counter, start_ms, end_ms;
    bool failed;
    const char* state;
  };
  const std::vector<Ended> ended = {
      {&step_a, &prefix, 7, 1000, 1000, false, "SUCCEEDED"},
      {&step_b, &prefix, 8, 1000, 1000, false, "SUCCEEDED"},   // short
      {&step_a, &prefix, 9, 1000, 1002, false, "SUCCEEDED"},   // lasted 2 ms: full
      {&step_b, &prefix, 10, 1002, 1002, false, "SUCCEEDED"},  // short
      {&step_a, &prefix, 12, 1002, 1002, false, "SUCCEEDED"},  // a record between: full
      {&step_b, &prefix, 13, 1002, 1002, true, "FAILED"},      // failed: full
      {&step_a, &branch, 1, 1002, 1002, false, "SUCCEEDED"},   // another strand: full
      {&step_b, &branch, 2, 1005, 1005, false, "SUCCEEDED"},   // a gap in time: full
      {&step_a, &branch, 3, 1005, 1005, false, "SUCCEEDED"},   // short
  };
  StepHistory history;
  for (const Ended& e : ended) {
    StepRecord record{e.step, &routine, e.prefix, e.counter, e.start_ms, e.end_ms, 4, e.failed};
    EXPECT_FALSE(history.Add(record));
  }
  store::JournalEntry entry = history.Take();
  entry.payload = Json::parse(entry.payload_text);
  EXPECT_EQ(entry.key, "sr7");
  EXPECT_EQ(entry.payload["steps"],
            "7 0 0 0 0 0 ~1 9 0 0 0 0 2 ~1 12 0 0 0 2 0 13 0 1 1 2 0 "
            "1 1 0 0 2 0 2 1 1 0 5 0 ~0");

  std::vector<StepEntry> entries;
  AppendStepEntries(entry, entries);
  ASSERT_EQ(entries.size(), ended.size());
  for (size_t i = 0; i < ended.size(); ++i) {
    const Json& payload = entries[i].payload;
    EXPECT_EQ(payload["step"], *ended[i].step) << i;
    EXPECT_EQ(payload["state"], ended[i].state) << i;
    EXPECT_EQ(payload["start_ms"], ended[i].start_ms) << i;
    EXPECT_EQ(payload["end_ms"], ended[i].end_ms) << i;
    EXPECT_EQ(entries[i].offset, static_cast<int64_t>(i));
  }
  EXPECT_EQ(
      StepRecordKeys(entry.payload),
      (std::vector<std::string>{"r7", "r8", "r9", "r10", "r12", "r13", "rp1.1", "rp1.2", "rp1.3"}));
}

// A short step with no step before it in the record is malformed: reading stops there.
TEST(StepHistoryBatchTest, AShortStepWithoutAStepBeforeItEndsTheRead) {
  store::JournalEntry entry;
  entry.kind = "steps";
  entry.payload = {{"base_ms", 10},
                   {"prefixes", {""}},
                   {"sites", {{"a", "main", 1}}},
                   {"steps", "~0 1 0 0 0 0 0"}};
  std::vector<StepEntry> entries;
  AppendStepEntries(entry, entries);
  EXPECT_TRUE(entries.empty());
  EXPECT_TRUE(StepRecordKeys(entry.payload).empty());
}

// The process died after the first batch was durable and before the second: the resumed
// execution records the lost steps again, and none of the journaled ones twice.
TEST_F(StepHistoryTest, AResumedExecutionRecordsTheLostStepsOnceEach) {
  std::unique_ptr<Engine> engine = OpenEngine();
  ASSERT_NE(engine, nullptr);
  std::string finished = RunLoop(*engine);
  store::ExecutionRecord record = engine->store()->GetExecution(finished).value();
  store::JournalEntry first_batch = Rows(*engine, finished, "steps").at(0);

  // The same execution as its process left it: ACTIVE, with only the first batch.
  record.id = "resumed-1";
  record.state = "ACTIVE";
  record.result.clear();
  record.end_time_ms = 0;
  record.owner.clear();
  ASSERT_TRUE(engine->store()->CreateExecution(record).ok());
  engine->store()->Append(record.id, first_batch, nullptr);
  ASSERT_TRUE(engine->store()->Flush().ok());

  Result<std::string> resumed = engine->Resume(record.id);
  ASSERT_TRUE(resumed.ok()) << resumed.message();
  store::ExecutionRecord done = engine->Wait(record.id);
  EXPECT_EQ(done.state, "SUCCEEDED") << done.error;
  EXPECT_EQ(done.result, "45150");

  Result<std::vector<StepEntry>> entries = ReadStepEntries(*engine->store(), record.id, 0, 0, 0);
  ASSERT_TRUE(entries.ok()) << entries.message();
  EXPECT_EQ(StepNames(*entries), LoopSteps());
  // The journaled batch is kept as it was; the resumed process wrote only the rest.
  std::vector<store::JournalEntry> batches = Rows(*engine, record.id, "steps");
  ASSERT_EQ(batches.size(), 2u);
  EXPECT_EQ(batches[0].payload, first_batch.payload);
  EXPECT_EQ(StepRecordKeys(batches[1].payload).size(), LoopSteps().size() - StepHistory::kBatch);
  // Only the steps the crash lost are shown again as they run; the replayed ones were shown
  // by the process that ran them (`executions resume` printed the whole loop again).
  EXPECT_EQ(progress_.steps(record.id), LoopSteps().size() - StepHistory::kBatch);
}

// Journals written before batching hold one "step" record per step; an execution resumed
// across the change has both kinds, read in journal order.
TEST_F(StepHistoryTest, OldOneStepRecordsAreReadWithBatchesInJournalOrder) {
  std::unique_ptr<Engine> engine = OpenEngine();
  ASSERT_NE(engine, nullptr);
  store::ExecutionRecord record;
  record.id = "old-1";
  record.workflow_name = "old";
  record.state = "SUCCEEDED";
  ASSERT_TRUE(engine->store()->CreateExecution(record).ok());
  auto append = [&](store::JournalEntry entry) {
    engine->store()->Append(record.id, std::move(entry), nullptr);
  };
  for (const char* name : {"a", "b"}) {
    append({0, "step", std::string("r") + name,
            Json{{"step", name},
                 {"routine", "main"},
                 {"state", "SUCCEEDED"},
                 {"start_ms", 1},
                 {"end_ms", 2},
                 {"line", 3}},
            0, ""});
  }
  append({0, "log", "r3", Json{{"step", "b"}, {"severity", "INFO"}, {"text", "hi"}}, 0, ""});
  StepHistory history;
  static const std::string kC = "c", kD = "d", kMain = "main", kMainStrand = "";
  history.Add({&kC, &kMain, &kMainStrand, 4, 10, 11, 7, false});
  history.Add({&kD, &kMain, &kMainStrand, 5, 11, 12, 8, true});
  store::JournalEntry batch = history.Take();
  EXPECT_TRUE(history.empty());
  EXPECT_EQ(batch.key, "sr4");
  EXPECT_EQ(StepRecordKeys(Json::parse(batch.payload_text)),
            (std::vector<std::string>{"r4", "r5"}));
  append(batch);
  ASSERT_TRUE(engine->store()->Flush().ok());

  Result<std::vector<StepEntry>> all = ReadStepEntries(*engine->store(), record.id, 0, 0, 0);
  ASSERT_TRUE(all.ok()) << all.message();
  EXPECT_EQ(StepNames(*all), (std::vector<std::string>{"a", "b", "c", "d"}));
  EXPECT_EQ((*all)[3].payload.value("state", ""), "FAILED");
  EXPECT_EQ((*all)[3].payload.value("line", 0), 8);

  // One entry per page, through both kinds.
  std::vector<std::string> paged;
  int64_t seq = 0;
  int64_t offset = 0;
  for (int pages = 0; pages < 10; ++pages) {
    Result<std::vector<StepEntry>> page =
        ReadStepEntries(*engine->store(), record.id, seq, offset, 1);
    ASSERT_TRUE(page.ok()) << page.message();
    if (page->empty()) break;
    seq = page->back().seq;
    offset = page->back().offset;
    paged.push_back(page->back().payload.value("step", ""));
  }
  EXPECT_EQ(paged, (std::vector<std::string>{"a", "b", "c", "d"}));
}

}  // namespace
}  // namespace atomflow::engine
