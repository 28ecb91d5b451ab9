// TCC branches (and compensable steps with an unknown outcome) through the real engine, against
// a GPU reservation participant that keeps its state in a real PostgreSQL behind the barrier:
// commit confirms once, abort cancels (an empty cancel when the try was refused), unknown
// answers are retried, and a process killed anywhere resumes with every effect applied once.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "connectors/connectors.h"
#include "lang/ast.h"
#include "store/store.h"
#include "support/gpu_participant.h"
#include "support/postgres_server.h"
#include "support/workflow_check.h"

namespace atomflow::engine {
namespace {

namespace fs = std::filesystem;
using testing::GpuParticipant;
using testing::json;

constexpr int kPool = 8;

// One transaction with one TCC branch, then a step that fails when args.fail is true.
constexpr char kReserveWorkflow[] = R"(
main:
  params: [args]
  steps:
    - reserve:
        transaction:
          steps:
            - reserve_gpus:
                tcc:
                  try:
                    call: http.post
                    args:
                      url: ${args.url + "/try"}
                      body:
                        gpus: ${args.gpus}
                      timeout: 1
                    result: reserved
                  confirm:
                    call: http.post
                    args:
                      url: ${args.url + "/confirm"}
                  cancel:
                    call: http.post
                    args:
                      url: ${args.url + "/cancel"}
            - evaluate:
                switch:
                  - condition: ${args.fail}
                    raise: "accuracy below threshold"
    - done:
        return: ${reserved.body}
)";

// Two TCC branches in parallel branches of one transaction.
constexpr char kParallelWorkflow[] = R"(
main:
  params: [args]
  steps:
    - reserve:
        transaction:
          steps:
            - both:
                parallel:
                  branches:
                    - first:
                        steps:
                          - reserve_a:
                              tcc:
                                try:
                                  call: http.post
                                  args:
                                    url: ${args.url + "/try"}
                                    body: {gpus: 2}
                                confirm:
                                  call: http.post
                                  args: {url: '${args.url + "/confirm"}'}
                                cancel:
                                  call: http.post
                                  args: {url: '${args.url + "/cancel"}'}
                    - second:
                        steps:
                          - reserve_b:
                              tcc:
                                try:
                                  call: http.post
                                  args:
                                    url: ${args.url + "/try"}
                                    body: {gpus: 3}
                                confirm:
                                  call: http.post
                                  args: {url: '${args.url + "/confirm"}'}
                                cancel:
                                  call: http.post
                                  args: {url: '${args.url + "/cancel"}'}
            - evaluate:
                switch:
                  - condition: ${args.fail}
                    raise: "accuracy below threshold"
    - done:
        return: "reserved"
)";

// A refused try handled inside the block: the transaction still commits.
constexpr char kCaughtWorkflow[] = R"(
main:
  params: [args]
  steps:
    - reserve:
        transaction:
          steps:
            - attempt:
                try:
                  steps:
                    - reserve_gpus:
                        tcc:
                          try:
                            call: http.post
                            args:
                              url: ${args.url + "/try"}
                              body: {gpus: '${args.gpus}'}
                          confirm:
                            call: http.post
                            args: {url: '${args.url + "/confirm"}'}
                          cancel:
                            call: http.post
                            args: {url: '${args.url + "/cancel"}'}
                except:
                  as: e
                  steps:
                    - note:
                        assign:
                          - refused: ${e.code}
    - done:
        return: ${refused}
)";

// A saga step: the action holds GPUs, the compensation gives them back.
constexpr char kSagaWorkflow[] = R"(
main:
  params: [args]
  steps:
    - reserve:
        transaction:
          steps:
            - hold:
                call: http.post
                args:
                  url: ${args.url + "/action"}
                  body:
                    gpus: ${args.gpus}
                compensate:
                  call: http.post
                  args:
                    url: ${args.url + "/compensate"}
    - done:
        return: "held"
)";

// A saga step whose compensation needs the action's result.
constexpr char kSagaResultWorkflow[] = R"(
main:
  params: [args]
  steps:
    - reserve:
        transaction:
          steps:
            - hold:
                call: http.post
                args:
                  url: ${args.url + "/action"}
                  body:
                    gpus: ${args.gpus}
                result: held
                compensate:
                  call: http.post
                  args:
                    url: ${args.url + "/compensate"}
                    body: ${held.body}
    - done:
        return: "held"
)";

// A saga step, then a step that fails when args.fail is true: the abort compensates it.
constexpr char kSagaFailWorkflow[] = R"(
main:
  params: [args]
  steps:
    - reserve:
        transaction:
          steps:
            - hold:
                call: http.post
                args:
                  url: ${args.url + "/action"}
                  body:
                    gpus: ${args.gpus}
                compensate:
                  call: http.post
                  args:
                    url: ${args.url + "/compensate"}
            - evaluate:
                switch:
                  - condition: ${args.fail}
                    raise: "accuracy below threshold"
    - done:
        return: "held"
)";

std::string Gid(const std::string& execution_id) { return execution_id + ":reserve#1"; }

// Progress that also keeps each transaction's final state, as "step STATE".
class TxnProgress : public testing::RecordingProgress {
 public:
  void OnTransaction(const std::string&, const std::string&, const std::string& step,
                     const std::string& state) override {
    std::lock_guard<std::mutex> lock(mutex_);
    states_.push_back(step + " " + state);
  }
  std::vector<std::string> states() {
    std::lock_guard<std::mutex> lock(mutex_);
    return states_;
  }

 private:
  std::mutex mutex_;
  std::vector<std::string> states_;
};

// One PostgreSQL server per test process (gtest_discover_tests runs each TEST alone), a
// database and a GPU participant per test, and workflows run in-process on a real engine.
class TccTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = &atomflow::testing::SharedPostgresServer();
    ASSERT_EQ(server_->start_error(), "");
    database_ = atomflow::testing::TestDatabaseName();
    ASSERT_EQ(server_->CreateDatabase(database_), "");
    participant_ = std::make_unique<GpuParticipant>(server_->Uri(database_), kPool);
    setenv("ATOMFLOW_SLEEP_SCALE", "0", 1);  // retry backoff runs at once
  }

  // Runs source in-process with {url, gpus, fail} and returns the durable record.
  store::ExecutionRecord Run(const char* source, int gpus, bool fail) {
    Result<std::shared_ptr<const lang::Workflow>> workflow = lang::LoadWorkflow("tcc.yaml", source);
    EXPECT_TRUE(workflow.ok()) << workflow.message();
    if (!workflow.ok()) return {};
    Value argument(Map{{"url", Value(participant_->Url(""))},
                       {"gpus", Value(int64_t{gpus})},
                       {"fail", Value(fail)}});
    return testing::RunToEnd(std::move(workflow).value(), std::move(argument), temp_.path(),
                             connectors::MakeConnectors, &progress_);
  }

  // The operations the participant received for gid, in order, as "op branch-suffix".
  std::vector<std::string> OpsOf(const std::string& gid) {
    std::vector<std::string> ops;
    for (const GpuParticipant::Seen& seen : participant_->seen()) {
      if (seen.gid != gid) continue;
      EXPECT_EQ(seen.branch.rfind(gid + "#", 0), 0u) << seen.branch;
      EXPECT_FALSE(seen.idempotency_key.empty()) << seen.op;
      ops.push_back(seen.op + " " + seen.branch.substr(gid.size()));
    }
    return ops;
  }

  static std::string ErrorTag(const store::ExecutionRecord& record) {
    json error = testing::ParseOrNull(record.error);
    return error.is_object() && error.contains("tags") ? error["tags"][0].get<std::string>() : "";
  }

  atomflow::testing::PostgresServer* server_ = nullptr;
  std::string database_;
  testing::TempDir temp_;
  TxnProgress progress_;
  std::unique_ptr<GpuParticipant> participant_;
};

TEST_F(TccTest, CommitConfirmsOnceWithBranchHeaders) {
  store::ExecutionRecord record = Run(kReserveWorkflow, 2, false);
  ASSERT_EQ(record.state, "SUCCEEDED") << record.error;
  EXPECT_EQ(testing::ParseOrNull(record.result), json({{"barrier", "applied"}}));
  std::string gid = Gid(record.id);
  EXPECT_EQ(OpsOf(gid), (std::vector<std::string>{"try #1", "confirm #1"}));
  EXPECT_EQ(participant_->Writes(gid, "try"), 1);
  EXPECT_EQ(participant_->Writes(gid, "confirm"), 1);
  EXPECT_EQ(participant_->ReservationState(gid), "confirmed");
  EXPECT_EQ(participant_->FreeGpus(), kPool - 2);

  // Inside parallel branches: both branches reserved and confirmed, in one transaction.
  record = Run(kParallelWorkflow, 0, false);
  ASSERT_EQ(record.state, "SUCCEEDED") << record.error;
  gid = Gid(record.id);
  EXPECT_EQ(participant_->Writes(gid, "try"), 2);
  EXPECT_EQ(participant_->Writes(gid, "confirm"), 2);
  EXPECT_EQ(participant_->FreeGpus(), kPool - 2 - 5);
}

TEST_F(TccTest, AbortCancelsTheReservation) {
  store::ExecutionRecord record = Run(kReserveWorkflow, 3, true);
  ASSERT_EQ(record.state, "FAILED");
  EXPECT_EQ(ErrorTag(record), "TransactionAborted") << record.error;
  std::string gid = Gid(record.id);
  EXPECT_EQ(OpsOf(gid), (std::vector<std::string>{"try #1", "cancel #1"}));
  EXPECT_EQ(participant_->Writes(gid, "cancel"), 1);
  EXPECT_EQ(participant_->ReservationState(gid), "released");
  EXPECT_EQ(participant_->FreeGpus(), kPool);

  // Both parallel branches are cancelled, in reverse order of registration.
  record = Run(kParallelWorkflow, 0, true);
  ASSERT_EQ(record.state, "FAILED");
  gid = Gid(record.id);
  std::vector<std::string> ops = OpsOf(gid);
  ASSERT_EQ(ops.size(), 4u);
  EXPECT_EQ(ops[2], "cancel #2");
  EXPECT_EQ(ops[3], "cancel #1");
  EXPECT_EQ(participant_->Writes(gid, "cancel"), 2);
  EXPECT_EQ(participant_->FreeGpus(), kPool);
}

TEST_F(TccTest, RefusedTryAbortsWithAnEmptyCancel) {
  store::ExecutionRecord record = Run(kReserveWorkflow, kPool + 1, false);
  ASSERT_EQ(record.state, "FAILED");
  EXPECT_EQ(ErrorTag(record), "TransactionAborted") << record.error;
  EXPECT_NE(record.error.find("409"), std::string::npos) << record.error;
  std::string gid = Gid(record.id);
  // 409 is definite: no retry; the cancel is still sent, and the barrier makes it empty.
  EXPECT_EQ(OpsOf(gid), (std::vector<std::string>{"try #1", "cancel #1"}));
  EXPECT_EQ(participant_->Writes(gid, "try"), 0);
  EXPECT_EQ(participant_->Writes(gid, "cancel"), 0);
  EXPECT_EQ(participant_->BarrierReason(gid, "cancel"), "empty");
  EXPECT_EQ(participant_->FreeGpus(), kPool);

  // The block handles the refusal and commits: the refused branch is cancelled, not confirmed.
  record = Run(kCaughtWorkflow, kPool + 1, false);
  ASSERT_EQ(record.state, "SUCCEEDED") << record.error;
  EXPECT_EQ(record.result, "409");
  gid = Gid(record.id);
  EXPECT_EQ(OpsOf(gid), (std::vector<std::string>{"try #1", "cancel #1"}));
  EXPECT_EQ(participant_->BarrierReason(gid, "cancel"), "empty");
}

TEST_F(TccTest, UnknownTryAnswersAreRetried) {
  // Two 500s, then success: three tries sent, one applied.
  participant_->fail_tries = 2;
  store::ExecutionRecord record = Run(kReserveWorkflow, 1, false);
  ASSERT_EQ(record.state, "SUCCEEDED") << record.error;
  std::string gid = Gid(record.id);
  EXPECT_EQ(OpsOf(gid), (std::vector<std::string>{"try #1", "try #1", "try #1", "confirm #1"}));
  EXPECT_EQ(participant_->Writes(gid, "try"), 1);

  // The first try is applied but answers after the client's timeout: the retry is a barrier
  // duplicate, answered as success, and nothing is reserved twice.
  participant_->slow_tries = 1;
  record = Run(kReserveWorkflow, 1, false);
  ASSERT_EQ(record.state, "SUCCEEDED") << record.error;
  gid = Gid(record.id);
  EXPECT_EQ(testing::ParseOrNull(record.result), json({{"barrier", "duplicate"}}));
  EXPECT_EQ(OpsOf(gid), (std::vector<std::string>{"try #1", "try #1", "confirm #1"}));
  EXPECT_EQ(participant_->Writes(gid, "try"), 1);
  EXPECT_EQ(participant_->FreeGpus(), kPool - 2);

  // No definite answer within the budget: the transaction aborts and cancels the branch.
  participant_->fail_tries = 100;
  record = Run(kReserveWorkflow, 1, false);
  ASSERT_EQ(record.state, "FAILED");
  EXPECT_NE(record.error.find("no definite answer"), std::string::npos) << record.error;
  gid = Gid(record.id);
  std::vector<std::string> ops = OpsOf(gid);
  ASSERT_FALSE(ops.empty());
  EXPECT_EQ(ops.back(), "cancel #1");
  EXPECT_EQ(participant_->BarrierReason(gid, "cancel"), "empty");
  participant_->fail_tries = 0;

  // A confirm that never succeeds cannot turn the commit back: the execution succeeds and the
  // transaction is left COMPENSATION_FAILED for an operator.
  participant_->fail_confirms = 100;
  record = Run(kReserveWorkflow, 1, false);
  ASSERT_EQ(record.state, "SUCCEEDED") << record.error;
  gid = Gid(record.id);
  EXPECT_EQ(participant_->Writes(gid, "try"), 1);
  EXPECT_EQ(participant_->Writes(gid, "confirm"), 0);
  EXPECT_EQ(participant_->Writes(gid, "cancel"), 0);
  ASSERT_FALSE(progress_.states().empty());
  EXPECT_EQ(progress_.states().back(), "reserve COMPENSATION_FAILED");
  participant_->fail_confirms = 0;
}

TEST_F(TccTest, CompensableActionWithUnknownOutcomeIsCompensated) {
  // The action runs but its answer is lost (500): it may have run, so the abort compensates
  // it under the same branch, and the barrier lets the compensation find it.
  participant_->lost_actions = 1;
  store::ExecutionRecord record = Run(kSagaWorkflow, 2, false);
  ASSERT_EQ(record.state, "FAILED");
  std::string gid = Gid(record.id);
  EXPECT_EQ(OpsOf(gid), (std::vector<std::string>{"action #1", "compensate #1"}));
  EXPECT_EQ(participant_->Writes(gid, "action"), 1);
  EXPECT_EQ(participant_->Writes(gid, "compensate"), 1);
  EXPECT_EQ(participant_->FreeGpus(), kPool);

  // A refused action (409) definitely did not run: no compensation is sent.
  record = Run(kSagaWorkflow, kPool + 1, false);
  ASSERT_EQ(record.state, "FAILED");
  gid = Gid(record.id);
  EXPECT_EQ(OpsOf(gid), (std::vector<std::string>{"action #1"}));

  // Unknown outcome, and the compensation needs the result it never got: it cannot be sent,
  // and the transaction is left COMPENSATION_FAILED rather than reported undone.
  participant_->lost_actions = 1;
  record = Run(kSagaResultWorkflow, 1, false);
  ASSERT_EQ(record.state, "FAILED");
  gid = Gid(record.id);
  EXPECT_EQ(OpsOf(gid), (std::vector<std::string>{"action #1"}));
  EXPECT_NE(record.error.find("COMPENSATION_FAILED"), std::string::npos) << record.error;
  EXPECT_EQ(progress_.states().back(), "reserve COMPENSATION_FAILED");
  Run(kSagaResultWorkflow, 0, true);  // no fault: nothing is held afterwards

  // And the plain saga commit still works.
  record = Run(kSagaWorkflow, 2, false);
  ASSERT_EQ(record.state, "SUCCEEDED") << record.error;
  EXPECT_EQ(participant_->FreeGpus(), kPool - 2 - 1 - 0);
}

// The atomflow command, run as a child process with its own environment.
class AtomflowProcess {
 public:
  // Starts `atomflow args...` with extra environment entries; stdout goes to out_path.
  AtomflowProcess(const std::vector<std::string>& args, const std::vector<std::string>& env,
                  const fs::path& out_path) {
    // Everything is built before fork: the test process has threads, so the child may only
    // make async-signal-safe calls.
    std::vector<std::string> argv_storage = {ATOMFLOW_BINARY};
    argv_storage.insert(argv_storage.end(), args.begin(), args.end());
    std::vector<std::string> env_storage = env;
    for (char** entry = environ; *entry != nullptr; ++entry) env_storage.push_back(*entry);
    std::vector<char*> argv;
    for (std::string& arg : argv_storage) argv.push_back(arg.data());
    argv.push_back(nullptr);
    std::vector<char*> envp;
    for (std::string& entry : env_storage) envp.push_back(entry.data());
    envp.push_back(nullptr);
    std::string out = out_path.string();
    pid_ = fork();
    if (pid_ == 0) {
      int out_fd = open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      dup2(out_fd, STDOUT_FILENO);
      int null_fd = open("/dev/null", O_WRONLY);
      dup2(null_fd, STDERR_FILENO);
      execve(argv[0], argv.data(), envp.data());
      _exit(127);
    }
  }
  pid_t pid() const { return pid_; }
  // The wait status.
  int Wait() {
    int status = 0;
    waitpid(pid_, &status, 0);
    return status;
  }

 private:
  pid_t pid_ = -1;
};

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

TEST_F(TccTest, CrashAnywhereThenResumeAppliesEachEffectOnce) {
  fs::path workflow = temp_.path() / "reserve.yaml";
  std::ofstream(workflow) << kReserveWorkflow;
  // "participant": the participant kills atomflow after applying the try, before answering,
  // so the try's result never reaches the journal and the resumed process sends it again.
  // A fault point, and whether the block fails after the try.
  struct Case {
    std::string point;
    bool fail;  // the block fails after the try: the resumed process must cancel
  };
  for (const Case& crash :
       {Case{"branch:reserve_gpus", false}, Case{"effect:reserve_gpus", false},
        Case{"decision", false}, Case{"participant", false}, Case{"decision", true}}) {
    const std::string& point = crash.point;
    SCOPED_TRACE(point + (crash.fail ? " (abort)" : ""));
    fs::path store_path = temp_.path() / ("store-" + point + (crash.fail ? "-abort" : "") + ".db");
    json data = {{"url", participant_->Url("")}, {"gpus", 1}, {"fail", crash.fail}};
    std::atomic<pid_t> child{0};
    if (point == "participant") {
      participant_->on_try_applied = [&child] {
        while (child.load() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
        kill(child.load(), SIGKILL);
        // Let the kill land before the answer could reach the process.
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      };
    }
    std::vector<std::string> env = {"ATOMFLOW_SLEEP_SCALE=0"};
    if (point != "participant") env.push_back("ATOMFLOW_CRASH_AT=" + point);
    AtomflowProcess crashed(
        {"run", workflow.string(), "--data", data.dump(), "--store", store_path.string(), "--json"},
        env, temp_.path() / "run.out");
    child = crashed.pid();
    int status = crashed.Wait();
    participant_->on_try_applied = nullptr;
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;

    AtomflowProcess list({"executions", "list", "--json", "--store", store_path.string()}, {},
                         temp_.path() / "list.out");
    ASSERT_EQ(list.Wait(), 0);
    json listed = json::parse(ReadFile(temp_.path() / "list.out"));
    ASSERT_EQ(listed.size(), 1u) << listed.dump();
    std::string id = listed[0]["id"].get<std::string>();
    EXPECT_EQ(listed[0]["state"], "ACTIVE");
    // The fault point is where it claims to be: before the try left, or after it was applied.
    int tries_before_resume = point == "branch:reserve_gpus" ? 0 : 1;
    EXPECT_EQ(participant_->Writes(Gid(id), "try"), tries_before_resume);
    EXPECT_EQ(participant_->Writes(Gid(id), "confirm"), 0);

    AtomflowProcess resumed({"executions", "resume", id, "--json", "--store", store_path.string()},
                            {"ATOMFLOW_SLEEP_SCALE=0"}, temp_.path() / "resume.out");
    int exit_code = resumed.Wait();
    std::string gid = Gid(id);
    EXPECT_EQ(participant_->Writes(gid, "try"), 1);
    if (crash.fail) {
      EXPECT_NE(exit_code, 0) << "the execution fails with TransactionAborted";
      EXPECT_EQ(participant_->Writes(gid, "confirm"), 0);
      EXPECT_EQ(participant_->Writes(gid, "cancel"), 1);
      EXPECT_EQ(participant_->ReservationState(gid), "released");
      continue;
    }
    ASSERT_EQ(exit_code, 0) << ReadFile(temp_.path() / "resume.out");
    EXPECT_EQ(participant_->Writes(gid, "confirm"), 1);
    EXPECT_EQ(participant_->Writes(gid, "cancel"), 0);
    EXPECT_EQ(participant_->ReservationState(gid), "confirmed");
  }
  EXPECT_EQ(participant_->FreeGpus(), kPool - 4);
}

// The journal of the execution in the store at store_path, read by the Store itself.
std::vector<store::JournalEntry> JournalOf(const fs::path& store_path, const std::string& id) {
  Result<std::unique_ptr<store::Store>> store = store::OpenSqliteStore(store_path.string());
  EXPECT_TRUE(store.ok()) << store.message();
  if (!store.ok()) return {};
  Result<std::vector<store::JournalEntry>> journal = (*store)->ReadJournal(id);
  EXPECT_TRUE(journal.ok()) << journal.message();
  return journal.ok() ? std::move(journal).value() : std::vector<store::JournalEntry>{};
}

int CountKind(const std::vector<store::JournalEntry>& journal, const std::string& kind) {
  int count = 0;
  for (const store::JournalEntry& entry : journal) count += entry.kind == kind ? 1 : 0;
  return count;
}

// `atomflow txn describe gid --json` on the store at store_path.
json Describe(const fs::path& folder, const fs::path& store_path, const std::string& gid) {
  AtomflowProcess describe({"txn", "describe", gid, "--json", "--store", store_path.string()}, {},
                           folder / "describe.out");
  EXPECT_EQ(describe.Wait(), 0);
  return testing::ParseOrNull(ReadFile(folder / "describe.out"));
}

// The compensable branch's pending record is folded into its action's intent: killed right
// after that intent is durable (fault point branch:hold), the journal has no branch record, the
// transaction view still shows the pending branch, and the resume sends the action once and,
// on abort, compensates it.
TEST_F(TccTest, CrashAfterTheFoldedBranchIntentResumesOnce) {
  fs::path workflow = temp_.path() / "saga.yaml";
  std::ofstream(workflow) << kSagaFailWorkflow;
  for (bool fail : {false, true}) {
    SCOPED_TRACE(fail ? "abort" : "commit");
    fs::path store_path = temp_.path() / (fail ? "fold-abort.db" : "fold-commit.db");
    json data = {{"url", participant_->Url("")}, {"gpus", 1}, {"fail", fail}};
    AtomflowProcess crashed(
        {"run", workflow.string(), "--data", data.dump(), "--store", store_path.string(), "--json"},
        {"ATOMFLOW_SLEEP_SCALE=0", "ATOMFLOW_CRASH_AT=branch:hold"}, temp_.path() / "run.out");
    int status = crashed.Wait();
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;

    AtomflowProcess list({"executions", "list", "--json", "--store", store_path.string()}, {},
                         temp_.path() / "list.out");
    ASSERT_EQ(list.Wait(), 0);
    json listed = json::parse(ReadFile(temp_.path() / "list.out"));
    ASSERT_EQ(listed.size(), 1u) << listed.dump();
    std::string id = listed[0]["id"].get<std::string>();
    std::string gid = Gid(id);
    std::vector<store::JournalEntry> journal = JournalOf(store_path, id);
    EXPECT_EQ(CountKind(journal, "branch"), 0);
    ASSERT_EQ(CountKind(journal, "intent"), 1);
    for (const store::JournalEntry& entry : journal) {
      if (entry.kind != "intent") continue;
      EXPECT_EQ(entry.payload.value("compensate", ""), "http.post");
      EXPECT_EQ(entry.payload.value("branch", ""), gid + "#1");
    }
    EXPECT_EQ(participant_->Writes(gid, "action"), 0) << "killed before the action was sent";
    json described = Describe(temp_.path(), store_path, gid);
    ASSERT_EQ(described["branches"].size(), 1u) << described.dump();
    EXPECT_EQ(described["state"], "ACTIVE");
    EXPECT_EQ(described["branches"][0]["outcome"], "unknown");
    EXPECT_EQ(described["branches"][0]["step"], "hold");

    AtomflowProcess resumed({"executions", "resume", id, "--json", "--store", store_path.string()},
                            {"ATOMFLOW_SLEEP_SCALE=0"}, temp_.path() / "resume.out");
    int exit_code = resumed.Wait();
    EXPECT_EQ(participant_->Writes(gid, "action"), 1);
    EXPECT_EQ(participant_->Writes(gid, "compensate"), fail ? 1 : 0);
    EXPECT_EQ(exit_code != 0, fail) << ReadFile(temp_.path() / "resume.out");
    described = Describe(temp_.path(), store_path, gid);
    EXPECT_EQ(described["state"], fail ? "ABORTED" : "COMMITTED") << described.dump();
    ASSERT_EQ(described["branches"].size(), 1u) << described.dump();
    EXPECT_FALSE(described["branches"][0].contains("outcome")) << described.dump();
    EXPECT_EQ(described["branches"][0]["compensated"], fail);
    // A saga's commit has nothing to finish: its decision carries its end.
    journal = JournalOf(store_path, id);
    EXPECT_EQ(CountKind(journal, "txn_end"), fail ? 1 : 0);
    EXPECT_EQ(CountKind(journal, "decision"), 1);
  }
  EXPECT_EQ(participant_->FreeGpus(), kPool - 1);
}

// Journals written before the fold have the pending branch as a record of its own before the
// intent. Such a journal, cut off after the intent (or before it), resumes on this build: the
// keys line up, the action is sent once, and the abort still compensates it.
TEST_F(TccTest, OldShapeJournalWithAPendingBranchRecordResumes) {
  int n = 0;
  for (bool with_intent : {true, false}) {
    for (bool fail : {false, true}) {
      SCOPED_TRACE(std::string(fail ? "abort" : "commit") + (with_intent ? "" : ", no intent"));
      fs::path store_path = temp_.path() / ("old-" + std::to_string(++n) + ".db");
      std::string id = "0190a000-0000-7000-8000-00000000000" + std::to_string(n);
      std::string gid = Gid(id);
      json data = {{"url", participant_->Url("")}, {"gpus", 1}, {"fail", fail}};
      {
        Result<std::unique_ptr<store::Store>> store = store::OpenSqliteStore(store_path.string());
        ASSERT_TRUE(store.ok()) << store.message();
        store::ExecutionRecord record;
        record.id = id;
        record.workflow_name = "saga";
        record.source_file = "saga.yaml";
        record.source = kSagaFailWorkflow;
        record.argument = data.dump();
        record.state = "ACTIVE";
        record.start_time_ms = 1000;
        ASSERT_TRUE((*store)->CreateExecution(record).ok());
        // What the build before the fold wrote, record for record.
        std::vector<store::JournalEntry> old = {
            {0, "txn_begin", "r1", {{"gid", gid}, {"step", "reserve"}}, 1001, ""},
            {0,
             "branch",
             "r2",
             {{"gid", gid},
              {"branch", gid + "#1"},
              {"kind", "compensable"},
              {"step", "hold"},
              {"undo",
               {{"function", "http.post"},
                {"render_error", "the outcome of the action was never learned"}}},
              {"staged", nullptr},
              {"outcome", "unknown"}},
             1002,
             ""}};
        if (with_intent) {
          old.push_back(
              {0,
               "intent",
               "1",
               {{"function", "http.post"},
                {"step", "hold"},
                {"args", {{"url", participant_->Url("") + "/action"}, {"body", {{"gpus", 1}}}}},
                {"gid", gid},
                {"branch", gid + "#1"},
                {"op", "action"}},
               1003,
               ""});
        }
        for (store::JournalEntry& entry : old) (*store)->Append(id, std::move(entry), nullptr);
        ASSERT_TRUE((*store)->Flush().ok());
      }
      json described = Describe(temp_.path(), store_path, gid);
      ASSERT_EQ(described["branches"].size(), 1u) << described.dump();
      EXPECT_EQ(described["branches"][0]["outcome"], "unknown");

      AtomflowProcess resumed(
          {"executions", "resume", id, "--json", "--store", store_path.string()},
          {"ATOMFLOW_SLEEP_SCALE=0"}, temp_.path() / "resume.out");
      int exit_code = resumed.Wait();
      EXPECT_EQ(exit_code != 0, fail) << ReadFile(temp_.path() / "resume.out");
      EXPECT_EQ(participant_->Writes(gid, "action"), 1);
      EXPECT_EQ(participant_->Writes(gid, "compensate"), fail ? 1 : 0);
      std::vector<store::JournalEntry> journal = JournalOf(store_path, id);
      EXPECT_EQ(CountKind(journal, "intent"), fail ? 2 : 1);  // the compensation's own intent
      described = Describe(temp_.path(), store_path, gid);
      EXPECT_EQ(described["state"], fail ? "ABORTED" : "COMMITTED") << described.dump();
      ASSERT_EQ(described["branches"].size(), 1u) << described.dump();
      EXPECT_EQ(described["branches"][0]["compensated"], fail);
    }
  }
  EXPECT_EQ(participant_->FreeGpus(), kPool - 2);
}

// A journal written before the decision carried a saga commit's end, cut off after the
// decision and before its txn_end: the resume finds the commit decided, sends nothing, and
// writes the txn_end that the older process never did.
TEST_F(TccTest, OldShapeDecisionWithoutItsEndGetsItsEndOnResume) {
  fs::path store_path = temp_.path() / "old-decision.db";
  std::string id = "0190a000-0000-7000-8000-0000000000d1";
  std::string gid = Gid(id);
  std::string url = participant_->Url("");
  json data = {{"url", url}, {"gpus", 1}, {"fail", false}};
  {
    Result<std::unique_ptr<store::Store>> store = store::OpenSqliteStore(store_path.string());
    ASSERT_TRUE(store.ok()) << store.message();
    store::ExecutionRecord record;
    record.id = id;
    record.workflow_name = "saga";
    record.source_file = "saga.yaml";
    record.source = kSagaFailWorkflow;
    record.argument = data.dump();
    record.state = "ACTIVE";
    record.start_time_ms = 1000;
    ASSERT_TRUE((*store)->CreateExecution(record).ok());
    json pending_undo = {{"function", "http.post"},
                         {"render_error", "the outcome of the action was never learned"}};
    json undo = {{"function", "http.post"}, {"args", {{"url", url + "/compensate"}}}};
    json branch = {{"gid", gid},          {"branch", gid + "#1"}, {"kind", "compensable"},
                   {"step", "hold"},      {"undo", pending_undo}, {"staged", nullptr},
                   {"outcome", "unknown"}};
    json completed = branch;
    completed["undo"] = undo;
    completed.erase("outcome");
    std::vector<store::JournalEntry> old = {
        {0, "txn_begin", "r1", {{"gid", gid}, {"step", "reserve"}}, 1001, ""},
        {0, "branch", "r2", branch, 1002, ""},
        {0,
         "intent",
         "1",
         {{"function", "http.post"},
          {"step", "hold"},
          {"args", {{"url", url + "/action"}, {"body", {{"gpus", 1}}}}},
          {"gid", gid},
          {"branch", gid + "#1"},
          {"op", "action"}},
         1003,
         ""},
        {0,
         "result",
         "1",
         {{"function", "http.post"}, {"step", "hold"}, {"ok", true}, {"value", {{"code", 200}}}},
         1004,
         ""},
        {0, "branch", "r3", completed, 1005, ""},
        {0,
         "decision",
         "d2",
         {{"gid", gid},
          {"step", "reserve"},
          {"decision", "COMMIT"},
          {"branches", 1},
          {"cause", nullptr}},
         1006,
         ""}};
    for (store::JournalEntry& entry : old) (*store)->Append(id, std::move(entry), nullptr);
    ASSERT_TRUE((*store)->Flush().ok());
  }
  EXPECT_EQ(Describe(temp_.path(), store_path, gid)["state"], "DECIDED");

  AtomflowProcess resumed({"executions", "resume", id, "--json", "--store", store_path.string()},
                          {"ATOMFLOW_SLEEP_SCALE=0"}, temp_.path() / "resume.out");
  ASSERT_EQ(resumed.Wait(), 0) << ReadFile(temp_.path() / "resume.out");
  EXPECT_EQ(participant_->Writes(gid, "action"), 0) << "answered from the journal";
  EXPECT_EQ(participant_->Writes(gid, "compensate"), 0);
  std::vector<store::JournalEntry> journal = JournalOf(store_path, id);
  EXPECT_EQ(CountKind(journal, "txn_end"), 1);
  EXPECT_EQ(CountKind(journal, "decision"), 1);
  EXPECT_EQ(Describe(temp_.path(), store_path, gid)["state"], "COMMITTED");
}

}  // namespace
}  // namespace atomflow::engine
