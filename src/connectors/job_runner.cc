// JobRunner: launching, following, reattaching and cancelling local jobs from the I/O loop.
#include "connectors/job_runner.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>

#include "common/log.h"
#include "connectors/job_supervisor.h"

extern char** environ;

namespace atomflow::connectors {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

constexpr milliseconds kPollInterval(100);
// A poll reads at most this much log, so a huge log cannot hold the loop thread.
constexpr size_t kMaxLogBytesPerPoll = 1 << 20;
// A longer line without a newline is streamed in pieces of this size.
constexpr size_t kMaxLineBytes = 64 << 10;
constexpr size_t kLastLinesKept = 20;
// Polls to wait, once the status is there, for the supervisor to exit (it exits right after
// writing the status; this only bounds a wait that should never be long).
constexpr int kPollsForSupervisorExit = 30;

bool FileExists(const std::string& path) { return access(path.c_str(), F_OK) == 0; }

Status ValidateSpec(const JobSpec& spec) {
  if (spec.job_id.empty() || spec.job_id == "." || spec.job_id == ".." ||
      spec.job_id.find('/') != std::string::npos) {
    return Status::Error("invalid job id '" + spec.job_id + "'");
  }
  if (spec.command.empty() || spec.command[0].empty()) {
    return Status::Error("job " + spec.job_id + " has no command");
  }
  if (spec.jobs_root.empty()) return Status::Error("job " + spec.job_id + " has no jobs root");
  return Status::Ok();
}

JobFolder FolderOf(const JobSpec& spec) {
  std::error_code error;
  fs::path root = fs::absolute(spec.jobs_root, error);
  return JobFolder((root / spec.job_id).string());
}

// Empties the folder so that nothing of an earlier run (log, outputs, status) is mistaken for
// this run's.
Status ResetFolder(const JobFolder& folder) {
  std::error_code error;
  fs::remove_all(folder.dir, error);
  if (!error) fs::create_directories(folder.dir, error);
  if (error)
    return Status::Error("cannot prepare job folder " + folder.dir + ": " + error.message());
  return Status::Ok();
}

void SetVariable(std::vector<std::string>* envp, const std::string& name,
                 const std::string& value) {
  std::string prefix = name + "=";
  for (std::string& entry : *envp) {
    if (entry.rfind(prefix, 0) == 0) {
      entry = prefix + value;
      return;
    }
  }
  envp->push_back(prefix + value);
}

std::vector<std::string> BuildEnvironment(const JobSpec& spec, const JobFolder& folder,
                                          const std::string& temp_location) {
  std::vector<std::string> envp;
  for (char** entry = environ; *entry != nullptr; ++entry) envp.emplace_back(*entry);
  for (const auto& [name, value] : spec.env) SetVariable(&envp, name, value);

  // Atomflow's own variables win over the spec's.
  SetVariable(&envp, "ATOMFLOW_JOB_ID", spec.job_id);
  SetVariable(&envp, "ATOMFLOW_OUTPUTS", folder.Outputs());
  SetVariable(&envp, "ATOMFLOW_TEMP_LOCATION", temp_location);
  if (!spec.name.empty()) SetVariable(&envp, "ATOMFLOW_JOB_NAME", spec.name);
  return envp;
}

Result<SupervisorLaunch> PrepareLaunch(const JobSpec& spec, const JobFolder& folder) {
  std::error_code error;
  std::string temp = spec.temp_location.empty() ? folder.DefaultTemp() : spec.temp_location;
  temp = fs::absolute(temp, error).string();
  fs::create_directories(temp, error);
  if (error) return Status::Error("cannot create temp location " + temp + ": " + error.message());

  SupervisorLaunch launch;
  launch.argv = spec.command;
  for (const auto& [name, value] : spec.parameters)
    launch.argv.push_back("--" + name + "=" + value);
  launch.envp = BuildEnvironment(spec, folder, temp);
  launch.exec_path = ResolveCommand(spec.command[0], launch.envp);
  launch.working_dir = spec.working_dir;
  launch.folder = folder.dir;
  return launch;
}

std::string SpawnErrorMessage(const JobExit& exit, const JobSpec& spec, const JobFolder& folder) {
  std::string reason = strerror(exit.code);
  if (exit.stage == "exec") return "cannot run '" + spec.command[0] + "': " + reason;
  if (exit.stage == "chdir") {
    return "cannot enter working directory '" + spec.working_dir + "': " + reason;
  }
  if (exit.stage == "log") return "cannot open the job log " + folder.Log() + ": " + reason;
  return "cannot start the job: " + reason;
}

// Fills exit_code, message and state (DONE or FAILED) from the status file's contents.
void DescribeExit(const JobExit& exit, const JobSpec& spec, const JobFolder& folder,
                  JobResult* result) {
  switch (exit.kind) {
    case JobExit::Kind::kExited:
      result->exit_code = exit.code;
      result->message = "exited with code " + std::to_string(exit.code);
      if (exit.code == 0) result->state = kJobStateDone;
      return;
    case JobExit::Kind::kSignaled:
      result->exit_code = 128 + exit.code;
      result->message = "killed by signal " + std::to_string(exit.code);
      return;
    case JobExit::Kind::kSpawnError:
      result->exit_code = 127;
      result->message = SpawnErrorMessage(exit, spec, folder);
      return;
  }
}

// outputs.json as a map; an empty map when the job wrote none.
Result<Value> ReadOutputs(const JobFolder& folder) {
  std::ifstream file(folder.Outputs());
  if (!file) return Value(Map{});
  std::stringstream text;
  text << file.rdbuf();

  Json json;
  try {
    json = Json::parse(text.str());
  } catch (const Json::exception& error) {
    return Status::Error("malformed " + folder.Outputs() + ": " + error.what());
  }
  if (!json.is_object()) {
    return Status::Error("malformed " + folder.Outputs() + ": it must hold a JSON object, not " +
                         json.type_name());
  }
  return FromJson(json);
}

std::string JoinLines(const std::deque<std::string>& lines) {
  std::string joined;
  for (const std::string& line : lines) {
    if (!joined.empty()) joined += '\n';
    joined += line;
  }
  return joined;
}

}  // namespace

// One followed job. Touched only on the loop thread once Follow has posted it.
struct JobRunner::Watch {
  Watch(JobSpec job_spec, JobCallbacks job_callbacks)
      : spec(std::move(job_spec)), callbacks(std::move(job_callbacks)), folder(FolderOf(spec)) {}
  ~Watch() {
    if (log_fd >= 0) close(log_fd);
  }

  JobSpec spec;
  JobCallbacks callbacks;
  JobFolder folder;
  ProcessIdentity supervisor;
  std::string early_error;  // set when the job could not be launched or attached
  bool restarted = false;
  bool supervisor_lost = false;
  int polls_since_end = 0;
  engine::IoLoop::TimerId timer = 0;

  int log_fd = -1;
  uint64_t log_offset = 0;
  std::string partial_line;
  std::deque<std::string> last_lines;

  bool cancel_requested = false;
  milliseconds grace{0};
  bool term_sent = false;
  bool kill_sent = false;
  std::chrono::steady_clock::time_point term_sent_at;
};

// The runner's state, shared with the loop's tasks and timers so that they stay valid after
// the runner is gone (they see `stopped` and do nothing). `mutex` guards stopped and watches;
// every loop task holds `callback_mutex` while it runs, so the destructor can wait for one in
// flight and no callback runs once the runner is gone.
struct JobRunner::Core : std::enable_shared_from_this<JobRunner::Core> {
  explicit Core(engine::IoLoop* io_loop) : loop(io_loop) {}

  std::shared_ptr<Watch> Claim(JobSpec spec, JobCallbacks callbacks);
  std::shared_ptr<Watch> Find(const std::string& job_id);
  bool Stopped();
  Status Launch(Watch& watch);
  Status LaunchNew(Watch& watch);
  Status Reattach(Watch& watch);
  void Follow(std::shared_ptr<Watch> watch);
  void Poll(const std::shared_ptr<Watch>& watch);
  bool PumpLog(Watch& watch);
  void AddLogBytes(Watch& watch, std::string_view bytes);
  void EmitLine(Watch& watch, std::string line);
  void SignalCancel(Watch& watch);
  void Finish(const std::shared_ptr<Watch>& watch);
  JobResult BuildResult(const Watch& watch);

  engine::IoLoop* loop;
  std::mutex callback_mutex;
  std::mutex mutex;
  bool stopped = false;
  std::map<std::string, std::shared_ptr<Watch>> watches;
};

JobRunner::JobRunner(engine::IoLoop* loop) : core_(std::make_shared<Core>(loop)) {}

JobRunner::~JobRunner() {
  std::map<std::string, std::shared_ptr<Watch>> watches;
  {
    std::lock_guard<std::mutex> lock(core_->mutex);
    core_->stopped = true;
    watches.swap(core_->watches);
  }
  // A loop task in flight finishes first; later ones see `stopped`.
  if (!core_->loop->InLoopThread()) {
    std::lock_guard<std::mutex> wait_for_task_in_flight(core_->callback_mutex);
  }

  engine::IoLoop* loop = core_->loop;
  loop->Post([loop, watches = std::move(watches)] {
    for (const auto& [job_id, watch] : watches) loop->CancelTimer(watch->timer);
  });
}

void JobRunner::Start(JobSpec spec, JobCallbacks callbacks) {
  std::shared_ptr<Watch> watch = core_->Claim(std::move(spec), std::move(callbacks));
  Status launched = core_->LaunchNew(*watch);
  if (!launched.ok()) watch->early_error = launched.message();
  core_->Follow(watch);
}

void JobRunner::Attach(JobSpec spec, JobCallbacks callbacks) {
  std::shared_ptr<Watch> watch = core_->Claim(std::move(spec), std::move(callbacks));
  Status attached = core_->Reattach(*watch);
  if (!attached.ok()) watch->early_error = attached.message();
  core_->Follow(watch);
}

void JobRunner::Cancel(const std::string& job_id, milliseconds grace) {
  core_->loop->Post([core = core_, job_id, grace] {
    std::lock_guard<std::mutex> guard(core->callback_mutex);
    std::shared_ptr<Watch> watch = core->Find(job_id);
    if (watch == nullptr) {
      log::Warn("cancel of job {} ignored: this runner does not follow it", job_id);
      return;
    }
    watch->cancel_requested = true;
    watch->grace = grace;
    core->SignalCancel(*watch);
  });
}

// Registers a watch for the job. A second watch for an id already followed is not registered
// and fails at once: two followers would both launch or both report.
std::shared_ptr<JobRunner::Watch> JobRunner::Core::Claim(JobSpec spec, JobCallbacks callbacks) {
  auto watch = std::make_shared<Watch>(std::move(spec), std::move(callbacks));
  std::lock_guard<std::mutex> lock(mutex);
  if (!watches.emplace(watch->spec.job_id, watch).second) {
    watch->early_error = "job " + watch->spec.job_id + " is already followed by this runner";
  }
  return watch;
}

std::shared_ptr<JobRunner::Watch> JobRunner::Core::Find(const std::string& job_id) {
  std::lock_guard<std::mutex> lock(mutex);
  auto found = watches.find(job_id);
  return found == watches.end() ? nullptr : found->second;
}

bool JobRunner::Core::Stopped() {
  std::lock_guard<std::mutex> lock(mutex);
  return stopped;
}

Status JobRunner::Core::Launch(Watch& watch) {
  Status reset = ResetFolder(watch.folder);
  if (!reset.ok()) return reset;
  Result<SupervisorLaunch> launch = PrepareLaunch(watch.spec, watch.folder);
  if (!launch.ok()) return launch.status();

  Result<ProcessIdentity> supervisor = LaunchSupervisor(*launch);
  if (!supervisor.ok()) return supervisor.status();
  watch.supervisor = *supervisor;
  log::Info("job {} launched (supervisor pid {})", watch.spec.job_id, watch.supervisor.pid);
  return Status::Ok();
}

Status JobRunner::Core::LaunchNew(Watch& watch) {
  if (!watch.early_error.empty()) return Status::Ok();
  Status valid = ValidateSpec(watch.spec);
  if (!valid.ok()) return valid;

  if (FileExists(watch.folder.Status())) {
    return Status::Error("job " + watch.spec.job_id + " already ran: its folder " +
                         watch.folder.dir + " holds a status (attach to it instead)");
  }
  std::optional<ProcessIdentity> running = ReadSupervisorPid(watch.folder);
  if (running && IsProcessAlive(*running)) {
    return Status::Error("job " + watch.spec.job_id + " is already running");
  }
  return Launch(watch);
}

// Liveness is checked before the status: a supervisor writes the status before it exits, so
// a dead supervisor seen first and then no status means the status will never come.
Status JobRunner::Core::Reattach(Watch& watch) {
  if (!watch.early_error.empty()) return Status::Ok();
  Status valid = ValidateSpec(watch.spec);
  if (!valid.ok()) return valid;

  std::optional<ProcessIdentity> supervisor = ReadSupervisorPid(watch.folder);
  bool alive = supervisor && IsProcessAlive(*supervisor);
  if (supervisor) watch.supervisor = *supervisor;
  if (alive || FileExists(watch.folder.Status())) return Status::Ok();

  log::Warn("job {} lost its supervisor before it ended; running it again", watch.spec.job_id);
  watch.restarted = true;
  return Launch(watch);
}

void JobRunner::Core::Follow(std::shared_ptr<Watch> watch) {
  loop->Post([core = shared_from_this(), watch = std::move(watch)] {
    std::lock_guard<std::mutex> guard(core->callback_mutex);
    if (core->Stopped()) return;
    if (watch->restarted && watch->callbacks.on_restart) watch->callbacks.on_restart();
    core->Poll(watch);
  });
}

// One look at the job: stream new log lines, push a pending cancel along, and finish once the
// job has ended, its log is read to the end and its supervisor is gone (reaped).
void JobRunner::Core::Poll(const std::shared_ptr<Watch>& watch) {
  if (Stopped()) return;
  if (!watch->early_error.empty()) return Finish(watch);

  bool ended = watch->supervisor_lost || FileExists(watch->folder.Status());
  bool drained = PumpLog(*watch);
  if (ended && drained &&
      (!IsProcessAlive(watch->supervisor) || ++watch->polls_since_end > kPollsForSupervisorExit)) {
    return Finish(watch);
  }

  // The status is checked again after the liveness: it may have been written in between.
  if (!ended && !IsProcessAlive(watch->supervisor) && !FileExists(watch->folder.Status())) {
    watch->supervisor_lost = true;
  }
  SignalCancel(*watch);

  milliseconds delay = drained && !watch->supervisor_lost ? kPollInterval : milliseconds(0);
  watch->timer = loop->AddTimer(delay, [core = shared_from_this(), watch] {
    std::lock_guard<std::mutex> guard(core->callback_mutex);
    core->Poll(watch);
  });
}

// Reads what the log gained since the last poll; true when it reached the end of the file.
bool JobRunner::Core::PumpLog(Watch& watch) {
  if (watch.log_fd < 0) watch.log_fd = open(watch.folder.Log().c_str(), O_RDONLY | O_CLOEXEC);
  if (watch.log_fd < 0) return true;

  char buffer[64 << 10];
  size_t total = 0;
  while (total < kMaxLogBytesPerPoll) {
    ssize_t size =
        pread(watch.log_fd, buffer, sizeof(buffer), static_cast<off_t>(watch.log_offset));
    if (size < 0 && errno == EINTR) continue;
    if (size <= 0) return true;
    watch.log_offset += static_cast<uint64_t>(size);
    total += static_cast<size_t>(size);
    AddLogBytes(watch, std::string_view(buffer, static_cast<size_t>(size)));
  }
  return false;
}

void JobRunner::Core::AddLogBytes(Watch& watch, std::string_view bytes) {
  while (!bytes.empty()) {
    size_t newline = bytes.find('\n');
    watch.partial_line.append(bytes.substr(0, newline));
    if (newline == std::string_view::npos) break;
    EmitLine(watch, std::move(watch.partial_line));
    watch.partial_line.clear();
    bytes.remove_prefix(newline + 1);
  }
  if (watch.partial_line.size() >= kMaxLineBytes) {
    EmitLine(watch, std::move(watch.partial_line));
    watch.partial_line.clear();
  }
}

void JobRunner::Core::EmitLine(Watch& watch, std::string line) {
  if (!line.empty() && line.back() == '\r') line.pop_back();
  watch.last_lines.push_back(line);
  if (watch.last_lines.size() > kLastLinesKept) watch.last_lines.pop_front();
  if (watch.callbacks.on_log) watch.callbacks.on_log(line);
}

// SIGTERM once the job's group is known, SIGKILL once the grace has passed. Nothing is sent
// after the status exists: the group is gone and its id may belong to someone else.
void JobRunner::Core::SignalCancel(Watch& watch) {
  if (!watch.cancel_requested || watch.kill_sent || FileExists(watch.folder.Status())) return;
  std::optional<pid_t> group = ReadJobGroup(watch.folder);
  if (!group) return;

  auto now = std::chrono::steady_clock::now();
  if (!watch.term_sent) {
    log::Info("job {} cancelling: SIGTERM to process group {}", watch.spec.job_id, *group);
    kill(-*group, SIGTERM);
    watch.term_sent = true;
    watch.term_sent_at = now;
  } else if (now - watch.term_sent_at >= watch.grace) {
    log::Info("job {} still runs after its grace: SIGKILL to group {}", watch.spec.job_id, *group);
    kill(-*group, SIGKILL);
    watch.kill_sent = true;
  }
}

void JobRunner::Core::Finish(const std::shared_ptr<Watch>& watch) {
  if (!watch->partial_line.empty()) EmitLine(*watch, std::move(watch->partial_line));
  JobResult result = BuildResult(*watch);
  {
    std::lock_guard<std::mutex> lock(mutex);
    auto found = watches.find(watch->spec.job_id);
    if (found != watches.end() && found->second == watch) watches.erase(found);
  }
  log::Info("job {} ended: {} ({})", result.job_id, result.state, result.message);
  if (watch->callbacks.on_done) watch->callbacks.on_done(std::move(result));
}

JobResult JobRunner::Core::BuildResult(const Watch& watch) {
  JobResult result;
  result.job_id = watch.spec.job_id;
  result.state = kJobStateFailed;
  result.last_log_lines = JoinLines(watch.last_lines);
  Result<std::optional<JobExit>> exit = ReadJobExit(watch.folder);
  if (!watch.early_error.empty() || !exit.ok() || !exit->has_value()) {
    result.message = !watch.early_error.empty() ? watch.early_error
                     : !exit.ok()               ? exit.message()
                                                : "its supervisor ended without recording how "
                                                  "the job ended";
    return result;
  }

  DescribeExit(**exit, watch.spec, watch.folder, &result);
  if (watch.term_sent) {
    result.state = kJobStateCancelled;
    result.message = "cancelled, " + result.message;
  }
  Result<Value> outputs = ReadOutputs(watch.folder);
  if (outputs.ok()) {
    result.outputs = std::move(*outputs);
  } else if (result.state == kJobStateDone) {
    result.state = kJobStateFailed;
    result.message = outputs.message();
  }
  return result;
}

// ---- The language mapping of atomflow.jobs.run. ----

namespace {

constexpr char kJobsRun[] = "atomflow.jobs.run";

Status ArgError(const std::string& message) {
  return Status::Error(std::string(kJobsRun) + ": " + message);
}

// A parameter or environment value as the text a process receives.
std::string ArgText(const Value& value) {
  if (value.is_string()) return value.AsString();
  if (value.is_null()) return "";
  return DebugString(value);
}

Result<std::vector<std::string>> CommandArg(const Value& command) {
  if (command.is_string()) return std::vector<std::string>{"/bin/sh", "-c", command.AsString()};
  if (!command.is_list() || command.AsList().empty()) {
    return ArgError("'command' must be a string or a non-empty list of strings, not " +
                    (command.is_list() ? std::string("an empty list") : command.TypeName()));
  }
  std::vector<std::string> words;
  for (const Value& word : command.AsList()) {
    if (!word.is_string()) {
      return ArgError("'command' must be a list of strings; item " + std::to_string(words.size()) +
                      " is of type " + word.TypeName());
    }
    words.push_back(word.AsString());
  }
  return words;
}

Result<std::vector<std::pair<std::string, std::string>>> PairsArg(const Map& args,
                                                                  const char* name) {
  std::vector<std::pair<std::string, std::string>> pairs;
  const Value* value = args.Find(name);
  if (value == nullptr || value->is_null()) return pairs;
  if (!value->is_map()) {
    return ArgError("'" + std::string(name) + "' must be a map, not " + value->TypeName());
  }
  for (const auto& [key, item] : value->AsMap()) pairs.emplace_back(key, ArgText(item));
  return pairs;
}

Result<std::string> StringArg(const Map& args, const char* name) {
  const Value* value = args.Find(name);
  if (value == nullptr || value->is_null()) return std::string();
  if (!value->is_string()) {
    return ArgError("'" + std::string(name) + "' must be a string, not " + value->TypeName());
  }
  return value->AsString();
}

Status CheckArgNames(const Map& args) {
  static const char* const kKnown[] = {"command",     "name",          "parameters",
                                       "working_dir", "temp_location", "env"};
  for (const auto& [key, value] : args) {
    bool known = false;
    for (const char* name : kKnown) known = known || key == name;
    if (!known) {
      return ArgError("unknown argument '" + key +
                      "' (expected command, name, parameters, working_dir, temp_location, env)");
    }
  }
  return Status::Ok();
}

}  // namespace

Result<JobSpec> BuildJobSpec(const Value& args, std::string job_id, std::string jobs_root) {
  if (!args.is_map()) return ArgError(std::string("args must be a map, not ") + args.TypeName());
  const Map& map = args.AsMap();
  Status names = CheckArgNames(map);
  if (!names.ok()) return names;
  const Value* command_value = map.Find("command");
  if (command_value == nullptr || command_value->is_null()) {
    return ArgError("'command' is required");
  }

  Result<std::vector<std::string>> command = CommandArg(*command_value);
  Result<std::string> name = StringArg(map, "name");
  Result<std::string> working_dir = StringArg(map, "working_dir");
  Result<std::string> temp_location = StringArg(map, "temp_location");
  Result<std::vector<std::pair<std::string, std::string>>> parameters = PairsArg(map, "parameters");
  Result<std::vector<std::pair<std::string, std::string>>> env = PairsArg(map, "env");
  for (const Status& status : {command.status(), name.status(), working_dir.status(),
                               temp_location.status(), parameters.status(), env.status()}) {
    if (!status.ok()) return status;
  }

  return JobSpec{std::move(job_id),      std::move(*name),        std::move(*command),
                 std::move(*parameters), std::move(*working_dir), std::move(*temp_location),
                 std::move(*env),        std::move(jobs_root)};
}

engine::EffectOutcome JobOutcome(const JobResult& result) {
  if (result.state == kJobStateDone) {
    return engine::EffectOutcome::Success(Value(Map{{"job_id", Value(result.job_id)},
                                                    {"state", Value(result.state)},
                                                    {"outputs", result.outputs},
                                                    {"exit_code", Value(result.exit_code)}}));
  }

  std::string verb = result.state == kJobStateCancelled ? " was cancelled: " : " failed: ";
  std::string message = "job " + result.job_id + verb + result.message;
  if (!result.last_log_lines.empty()) message += "\n" + result.last_log_lines;
  Map error{{"message", Value(message)},
            {"tags", Value(List{Value("OperationError")})},
            {"job_id", Value(result.job_id)},
            {"state", Value(result.state)},
            {"exit_code", Value(result.exit_code)}};
  return engine::EffectOutcome::Failure(Value(std::move(error)));
}

}  // namespace atomflow::connectors
