// Tests of JobRunner with real processes in a temp dir: streaming, outcomes, cancel, reattach.
#include "connectors/job_runner.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>

#include "connectors/job_supervisor.h"

namespace atomflow::connectors {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr auto kWaitLimit = std::chrono::seconds(60);

// Collects what one job reports; the waits block until the loop thread delivers it.
class JobRecorder {
 public:
  JobCallbacks Callbacks() {
    JobCallbacks callbacks;
    callbacks.on_log = [this](const std::string& line) { Update([&] { lines_.push_back(line); }); };
    callbacks.on_restart = [this] { Update([&] { ++restarts_; }); };
    callbacks.on_done = [this](JobResult result) { Update([&] { result_ = std::move(result); }); };
    return callbacks;
  }

  JobResult WaitForResult() {
    std::unique_lock<std::mutex> lock(mutex_);
    bool done = changed_.wait_for(lock, kWaitLimit, [&] { return result_.has_value(); });
    EXPECT_TRUE(done) << "the job did not end";
    return done ? *result_ : JobResult{};
  }

  void WaitForLine(const std::string& line) {
    std::unique_lock<std::mutex> lock(mutex_);
    bool seen = changed_.wait_for(lock, kWaitLimit, [&] {
      return std::find(lines_.begin(), lines_.end(), line) != lines_.end();
    });
    ASSERT_TRUE(seen) << "the job never printed " << line;
  }

  std::vector<std::string> lines() {
    std::lock_guard<std::mutex> lock(mutex_);
    return lines_;
  }

  int restarts() {
    std::lock_guard<std::mutex> lock(mutex_);
    return restarts_;
  }

 private:
  template <typename Fn>
  void Update(Fn fn) {
    std::lock_guard<std::mutex> lock(mutex_);
    fn();
    changed_.notify_all();
  }

  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<std::string> lines_;
  int restarts_ = 0;
  std::optional<JobResult> result_;
};

class JobRunnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/atomflow-jobs-XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    root_ = dir;
    loop_.Start();
  }

  void TearDown() override {
    loop_.Stop();
    fs::remove_all(root_);
  }

  // A job running script under /bin/sh in the temp dir.
  JobSpec ShellJob(const std::string& job_id, const std::string& script) {
    JobSpec spec;
    spec.job_id = job_id;
    spec.command = {"/bin/sh", "-c", script};
    spec.working_dir = root_;
    spec.jobs_root = root_ + "/jobs";
    return spec;
  }

  // Recorders live until after the loop has stopped, so no callback outlives its recorder.
  JobRecorder& NewRecorder() { return *recorders_.emplace_back(std::make_unique<JobRecorder>()); }

  std::string ReadFile(const std::string& name) {
    std::ifstream file(root_ + "/" + name);
    std::stringstream text;
    text << file.rdbuf();
    return text.str();
  }

  std::vector<std::unique_ptr<JobRecorder>> recorders_;
  engine::IoLoop loop_;
  std::string root_;
};

TEST_F(JobRunnerTest, StreamsLinesInOrderAndReadsOutputs) {
  JobRecorder& recorder = NewRecorder();
  JobRunner runner(&loop_);

  runner.Start(ShellJob("etl-1",
                        "echo one; echo two >&2; echo \"id=$ATOMFLOW_JOB_ID\"; "
                        "echo '{\"rows\": 3, \"path\": \"out/\"}' > \"$ATOMFLOW_OUTPUTS\"; "
                        "printf 'no newline'"),
               recorder.Callbacks());
  JobResult result = recorder.WaitForResult();

  EXPECT_EQ(result.state, kJobStateDone);
  EXPECT_EQ(result.exit_code, 0);
  EXPECT_THAT(recorder.lines(), ElementsAre("one", "two", "id=etl-1", "no newline"));
  EXPECT_EQ(result.outputs, Value(Map{{"rows", Value(3)}, {"path", Value("out/")}}));
  EXPECT_EQ(ReadFile("jobs/etl-1/status"), "exit 0\n");
}

TEST_F(JobRunnerTest, NonZeroExitFailsWithTheCodeAndTheLastLines) {
  JobRecorder& recorder = NewRecorder();
  JobRunner runner(&loop_);

  runner.Start(ShellJob("fails",
                        "i=1; while [ $i -le 30 ]; do echo line$i; i=$((i+1)); done; "
                        "exit 3"),
               recorder.Callbacks());
  JobResult result = recorder.WaitForResult();

  EXPECT_EQ(result.state, kJobStateFailed);
  EXPECT_EQ(result.exit_code, 3);
  EXPECT_EQ(result.message, "exited with code 3");
  EXPECT_THAT(result.last_log_lines, HasSubstr("line11\n"));
  EXPECT_THAT(result.last_log_lines, HasSubstr("line30"));
  EXPECT_THAT(result.last_log_lines, Not(HasSubstr("line10\n")));
  EXPECT_EQ(recorder.lines().size(), 30u);
}

TEST_F(JobRunnerTest, MissingBinaryFailsWithAClearMessage) {
  JobRecorder& by_path = NewRecorder();
  JobRecorder& by_name = NewRecorder();
  JobRunner runner(&loop_);
  JobSpec absolute = ShellJob("absent-path", "");
  absolute.command = {root_ + "/no-such-binary", "--flag"};
  JobSpec bare = ShellJob("absent-name", "");
  bare.command = {"atomflow-no-such-binary"};

  runner.Start(absolute, by_path.Callbacks());
  runner.Start(bare, by_name.Callbacks());
  JobResult path_result = by_path.WaitForResult();
  JobResult name_result = by_name.WaitForResult();

  EXPECT_EQ(path_result.state, kJobStateFailed);
  EXPECT_EQ(path_result.message,
            "cannot run '" + root_ + "/no-such-binary': No such file or directory");
  EXPECT_EQ(name_result.state, kJobStateFailed);
  EXPECT_EQ(name_result.message, "cannot run 'atomflow-no-such-binary': No such file or directory");
}

TEST_F(JobRunnerTest, MissingWorkingDirFailsWithAClearMessage) {
  JobRecorder& recorder = NewRecorder();
  JobRunner runner(&loop_);
  JobSpec spec = ShellJob("nowhere", "echo never");
  spec.working_dir = root_ + "/missing";

  runner.Start(spec, recorder.Callbacks());
  JobResult result = recorder.WaitForResult();

  EXPECT_EQ(result.state, kJobStateFailed);
  EXPECT_THAT(result.message, HasSubstr("cannot enter working directory '" + spec.working_dir));
  EXPECT_TRUE(recorder.lines().empty());
}

TEST_F(JobRunnerTest, CancelEndsAJobAsCancelled) {
  JobRecorder& recorder = NewRecorder();
  JobRunner runner(&loop_);

  runner.Start(ShellJob("long", "echo started; sleep 60; echo not reached"), recorder.Callbacks());
  recorder.WaitForLine("started");
  runner.Cancel("long", milliseconds(10000));
  JobResult result = recorder.WaitForResult();

  EXPECT_EQ(result.state, kJobStateCancelled);
  EXPECT_EQ(result.message, "cancelled, killed by signal 15");
  EXPECT_THAT(recorder.lines(), ElementsAre("started"));
}

TEST_F(JobRunnerTest, CancelKillsAJobThatTrapsTermOnceTheGraceHasPassed) {
  JobRecorder& recorder = NewRecorder();
  JobRunner runner(&loop_);

  runner.Start(ShellJob("stubborn",
                        "trap 'echo got TERM' TERM; echo started; "
                        "while true; do sleep 0.05; done"),
               recorder.Callbacks());
  recorder.WaitForLine("started");
  runner.Cancel("stubborn", milliseconds(300));
  JobResult result = recorder.WaitForResult();

  EXPECT_EQ(result.state, kJobStateCancelled);
  EXPECT_EQ(result.message, "cancelled, killed by signal 9");
  EXPECT_EQ(result.exit_code, 128 + 9);
  // The shell may also report its sleep terminated; the trap ran, and then SIGKILL came.
  EXPECT_THAT(recorder.lines(), Contains("got TERM"));
}

TEST_F(JobRunnerTest, ParametersArriveAsFlagsAfterTheCommand) {
  JobRecorder& recorder = NewRecorder();
  JobRunner runner(&loop_);
  JobSpec spec = ShellJob("params", "for a in \"$@\"; do echo \"$a\"; done");
  spec.command.push_back("job-name");  // $0 of the script
  spec.command.push_back("positional");
  spec.parameters = {{"input", "gs://bucket/in"}, {"count", "3"}, {"empty", ""}};

  runner.Start(spec, recorder.Callbacks());
  recorder.WaitForResult();

  EXPECT_THAT(recorder.lines(),
              ElementsAre("positional", "--input=gs://bucket/in", "--count=3", "--empty="));
}

TEST_F(JobRunnerTest, JobRunsInItsWorkingDirWithItsEnvironmentAndTempLocation) {
  JobRecorder& recorder = NewRecorder();
  JobRunner runner(&loop_);
  fs::create_directories(root_ + "/work");
  JobSpec spec = ShellJob("env",
                          "pwd; echo \"$MODE\"; test -d \"$ATOMFLOW_TEMP_LOCATION\" && "
                          "echo \"$ATOMFLOW_TEMP_LOCATION\"");
  spec.working_dir = root_ + "/work";
  spec.env = {{"MODE", "train"}};
  spec.temp_location = root_ + "/scratch/tmp";

  runner.Start(spec, recorder.Callbacks());
  JobResult result = recorder.WaitForResult();

  EXPECT_EQ(result.state, kJobStateDone);
  EXPECT_THAT(recorder.lines(), ElementsAre(root_ + "/work", "train", root_ + "/scratch/tmp"));
}

TEST_F(JobRunnerTest, MalformedOutputsFailNamingTheFile) {
  JobRecorder& recorder = NewRecorder();
  JobRunner runner(&loop_);

  runner.Start(ShellJob("bad-out", "echo '{\"rows\": ' > \"$ATOMFLOW_OUTPUTS\""),
               recorder.Callbacks());
  JobResult result = recorder.WaitForResult();

  EXPECT_EQ(result.state, kJobStateFailed);
  EXPECT_THAT(result.message, HasSubstr("malformed " + root_ + "/jobs/bad-out/outputs.json: "));
  EXPECT_THAT(result.message, HasSubstr("parse error"));
}

TEST_F(JobRunnerTest, StartRefusesAJobThatAlreadyRan) {
  JobRecorder& first = NewRecorder();
  JobRecorder& second = NewRecorder();
  JobRunner runner(&loop_);
  JobSpec spec = ShellJob("once", "echo run >> counter");

  runner.Start(spec, first.Callbacks());
  first.WaitForResult();
  runner.Start(spec, second.Callbacks());
  JobResult result = second.WaitForResult();

  EXPECT_EQ(result.state, kJobStateFailed);
  EXPECT_THAT(result.message, HasSubstr("already ran"));
  EXPECT_EQ(ReadFile("counter"), "run\n");
}

TEST_F(JobRunnerTest, AttachToAFinishedJobReportsItsEndWithoutRunningItAgain) {
  JobRecorder& first = NewRecorder();
  JobRecorder& attached = NewRecorder();
  JobSpec spec = ShellJob("finished",
                          "echo run >> counter; echo hello; "
                          "echo '{\"model\": \"m1\"}' > \"$ATOMFLOW_OUTPUTS\"");
  {
    JobRunner runner(&loop_);
    runner.Start(spec, first.Callbacks());
    first.WaitForResult();
  }

  JobRunner after_crash(&loop_);
  after_crash.Attach(spec, attached.Callbacks());
  JobResult result = attached.WaitForResult();

  EXPECT_EQ(result.state, kJobStateDone);
  EXPECT_EQ(result.outputs, Value(Map{{"model", Value("m1")}}));
  EXPECT_THAT(attached.lines(), ElementsAre("hello"));
  EXPECT_EQ(attached.restarts(), 0);
  EXPECT_EQ(ReadFile("counter"), "run\n");
}

TEST_F(JobRunnerTest, AttachFollowsARunningJobStartedByAnotherRunner) {
  JobRecorder& first = NewRecorder();
  JobRecorder& attached = NewRecorder();
  JobSpec spec = ShellJob("running",
                          "echo run >> counter; echo started; "
                          "while [ ! -e go ]; do sleep 0.05; done; echo finished");
  auto crashed = std::make_unique<JobRunner>(&loop_);
  crashed->Start(spec, first.Callbacks());
  first.WaitForLine("started");
  crashed.reset();

  JobRunner after_crash(&loop_);
  after_crash.Attach(spec, attached.Callbacks());
  std::ofstream(root_ + "/go").close();
  JobResult result = attached.WaitForResult();

  EXPECT_EQ(result.state, kJobStateDone);
  EXPECT_THAT(attached.lines(), ElementsAre("started", "finished"));
  EXPECT_EQ(attached.restarts(), 0);
  EXPECT_EQ(ReadFile("counter"), "run\n");
}

TEST_F(JobRunnerTest, AttachRunsAJobAgainWhenItsSupervisorDiedWithoutAStatus) {
  JobRecorder& first = NewRecorder();
  JobRecorder& attached = NewRecorder();
  JobSpec spec = ShellJob("orphan",
                          "echo $$ > job-self.pid; echo run >> counter; echo started; "
                          "if [ \"$(wc -l < counter)\" -ge 2 ]; then echo again; exit 0; "
                          "fi; while true; do sleep 0.05; done");
  auto crashed = std::make_unique<JobRunner>(&loop_);
  crashed->Start(spec, first.Callbacks());
  first.WaitForLine("started");
  crashed.reset();

  // The supervisor is this test's child: kill it, reap it, then kill the job's group.
  std::optional<ProcessIdentity> supervisor = ReadSupervisorPid(JobFolder(root_ + "/jobs/orphan"));
  ASSERT_TRUE(supervisor.has_value());
  ASSERT_EQ(kill(supervisor->pid, SIGKILL), 0);
  ASSERT_EQ(waitpid(supervisor->pid, nullptr, 0), supervisor->pid);
  ASSERT_EQ(kill(-std::stoi(ReadFile("job-self.pid")), SIGKILL), 0);

  JobRunner after_crash(&loop_);
  after_crash.Attach(spec, attached.Callbacks());
  JobResult result = attached.WaitForResult();

  EXPECT_EQ(result.state, kJobStateDone);
  EXPECT_EQ(attached.restarts(), 1);
  EXPECT_THAT(attached.lines(), ElementsAre("started", "again"));
  EXPECT_EQ(ReadFile("counter"), "run\nrun\n");
}

TEST(BuildJobSpecTest, MapsTheArgsOfJobsRun) {
  Value args(Map{{"command", Value(List{Value("python3"), Value("train.py")})},
                 {"name", Value("train")},
                 {"parameters", Value(Map{{"epochs", Value(5)},
                                          {"lr", Value(0.5)},
                                          {"data", Value("gs://d")},
                                          {"shuffle", Value(true)}})},
                 {"working_dir", Value("/srv")},
                 {"temp_location", Value("/tmp/t")},
                 {"env", Value(Map{{"SEED", Value(7)}})}});

  Result<JobSpec> spec = BuildJobSpec(args, "exec-1-train", "/var/jobs");

  ASSERT_TRUE(spec.ok()) << spec.message();
  EXPECT_THAT(spec->command, ElementsAre("python3", "train.py"));
  EXPECT_EQ(spec->name, "train");
  using Pair = std::pair<std::string, std::string>;
  EXPECT_THAT(spec->parameters, ElementsAre(Pair("epochs", "5"), Pair("lr", "0.5"),
                                            Pair("data", "gs://d"), Pair("shuffle", "true")));
  EXPECT_EQ(spec->working_dir, "/srv");
  EXPECT_EQ(spec->temp_location, "/tmp/t");
  EXPECT_THAT(spec->env, ElementsAre(Pair("SEED", "7")));
  EXPECT_EQ(spec->job_id, "exec-1-train");
  EXPECT_EQ(spec->jobs_root, "/var/jobs");
}

TEST(BuildJobSpecTest, AStringCommandRunsUnderTheShell) {
  Result<JobSpec> spec = BuildJobSpec(Value(Map{{"command", Value("echo hi | wc -c")}}), "j", "r");

  ASSERT_TRUE(spec.ok()) << spec.message();
  EXPECT_THAT(spec->command, ElementsAre("/bin/sh", "-c", "echo hi | wc -c"));
}

TEST(BuildJobSpecTest, ReportsWhatIsWrongWithTheArgs) {
  auto error = [](Value args) { return BuildJobSpec(args, "j", "r").message(); };

  EXPECT_EQ(error(Value(Map{})), "atomflow.jobs.run: 'command' is required");
  EXPECT_EQ(error(Value(Map{{"command", Value(List{Value("a"), Value(1)})}})),
            "atomflow.jobs.run: 'command' must be a list of strings; item 1 is of type integer");
  EXPECT_EQ(error(Value(Map{{"command", Value("x")}, {"parameters", Value(List{})}})),
            "atomflow.jobs.run: 'parameters' must be a map, not list");
  EXPECT_EQ(error(Value(Map{{"command", Value("x")}, {"image", Value("y")}})),
            "atomflow.jobs.run: unknown argument 'image' (expected command, name, parameters, "
            "working_dir, temp_location, env)");
  EXPECT_EQ(error(Value("x")), "atomflow.jobs.run: args must be a map, not string");
}

TEST(JobOutcomeTest, ADoneJobSucceedsWithItsOutputs) {
  JobResult result{"j1", kJobStateDone, 0, "exited with code 0", Value(Map{{"n", Value(1)}}), ""};

  engine::EffectOutcome outcome = JobOutcome(result);

  EXPECT_TRUE(outcome.ok);
  EXPECT_EQ(outcome.value, Value(Map{{"job_id", Value("j1")},
                                     {"state", Value(kJobStateDone)},
                                     {"outputs", Value(Map{{"n", Value(1)}})},
                                     {"exit_code", Value(0)}}));
}

TEST(JobOutcomeTest, AFailedJobRaisesAnOperationErrorWithItsLastLines) {
  JobResult result{"j1", kJobStateFailed, 3, "exited with code 3", Value(Map{}), "oops\nbad"};

  engine::EffectOutcome outcome = JobOutcome(result);

  EXPECT_FALSE(outcome.ok);
  EXPECT_EQ(outcome.value, Value(Map{{"message", Value("job j1 failed: exited with code 3\n"
                                                       "oops\nbad")},
                                     {"tags", Value(List{Value("OperationError")})},
                                     {"job_id", Value("j1")},
                                     {"state", Value(kJobStateFailed)},
                                     {"exit_code", Value(3)}}));
}

}  // namespace
}  // namespace atomflow::connectors
