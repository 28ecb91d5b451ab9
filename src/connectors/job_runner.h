// Jobs run as local processes under a supervisor, followed from the I/O loop (the Dataflow job
// model: a command with parameters and a temp location, and job states).
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"
#include "engine/effect.h"
#include "engine/io_loop.h"
#include "value/value.h"

namespace atomflow::connectors {

// What to run. The job's folder is <jobs_root>/<job_id>/ (see job_supervisor.h for its files).
struct JobSpec {
  std::string job_id;
  std::string name;                  // for people; passed as ATOMFLOW_JOB_NAME when set
  std::vector<std::string> command;  // program and its arguments; searched on PATH
  std::vector<std::pair<std::string, std::string>> parameters;  // appended as --name=value
  std::string working_dir;    // empty: atomflow's working directory
  std::string temp_location;  // created if missing; empty: <job folder>/temp
  std::vector<std::pair<std::string, std::string>> env;  // added to atomflow's environment
  std::string jobs_root;
};

inline constexpr char kJobStateDone[] = "JOB_STATE_DONE";
inline constexpr char kJobStateFailed[] = "JOB_STATE_FAILED";
inline constexpr char kJobStateCancelled[] = "JOB_STATE_CANCELLED";

// How a job ended.
struct JobResult {
  std::string job_id;
  std::string state;             // kJobStateDone, kJobStateFailed or kJobStateCancelled
  int exit_code = -1;            // a signal N reads as 128 + N, a failure to start as 127
  std::string message;           // "exited with code 3", "killed by signal 9", ...
  Value outputs = Value(Map{});  // outputs.json as a map; an empty map when there is none
  std::string last_log_lines;    // the last lines of the log, for error messages
};

// What a job reports. Every callback runs on the loop thread; any may be empty.
struct JobCallbacks {
  std::function<void(const std::string& line)> on_log;  // each log line, in order, once
  std::function<void()> on_restart;        // Attach found the job lost and launched it again
  std::function<void(JobResult)> on_done;  // last call for this job
};

// Launches jobs and follows them to their end by polling their folders from the I/O loop, so
// no thread waits per job. A job outlives the atomflow process: after a crash, Attach picks it
// up by its id. All methods are thread safe. The loop must outlive the runner; destroying the
// runner stops following its jobs (it neither cancels them nor calls their callbacks again).
class JobRunner {
 public:
  explicit JobRunner(engine::IoLoop* loop);
  ~JobRunner();
  JobRunner(const JobRunner&) = delete;
  JobRunner& operator=(const JobRunner&) = delete;

  // Launches a new job. Its folder must not hold a status (that job already ran: Attach).
  void Start(JobSpec spec, JobCallbacks callbacks);

  // Follows a job launched earlier, maybe by another process: reports its end at once when it
  // has ended (streaming the whole log), follows it while its supervisor lives, and launches it
  // again (with on_restart) when the supervisor is gone without a status.
  void Attach(JobSpec spec, JobCallbacks callbacks);

  // Sends SIGTERM to the job's process group, then SIGKILL when it still runs after grace.
  // The job then ends as JOB_STATE_CANCELLED. Unknown ids are ignored.
  void Cancel(const std::string& job_id, std::chrono::milliseconds grace);

 private:
  struct Core;
  struct Watch;

  std::shared_ptr<Core> core_;
};

// Maps the args of atomflow.jobs.run to a JobSpec: command (a list of strings, or a string run
// by /bin/sh -c), name, parameters (a map; values become strings), working_dir, temp_location,
// env (a map).
Result<JobSpec> BuildJobSpec(const Value& args, std::string job_id, std::string jobs_root);

// The effect outcome of a finished job: {job_id, state, outputs, exit_code} when it is done, or
// an OperationError {message, tags, job_id, state, exit_code} otherwise.
engine::EffectOutcome JobOutcome(const JobResult& result);

}  // namespace atomflow::connectors
