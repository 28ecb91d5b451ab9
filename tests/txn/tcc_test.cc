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

}  // namespace
}  // namespace atomflow::engine
